//! The chunk ledger in the database: duplicates, exactly-once completion across two
//! connection pools (two servers) under parallel, shuffled, duplicated chunks, and claim
//! leases — on an SQLite file and on PostgreSQL.

#[macro_use]
#[path = "common/db.rs"]
mod db;

use db::Backend;
use rand::seq::SliceRandom;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use sea_orm_resumable::{
    Scope, UploadKey, UploadMeta,
    ledger::create_tables,
    testing::{ChunkLedger, Claim},
};
use std::{collections::HashMap, time::Duration};

async fn tables(db: &DatabaseConnection) {
    for table in create_tables() {
        db.execute(&table).await.unwrap();
    }
}

fn meta(identifier: &str, instance: &str, chunks: u64) -> UploadMeta {
    UploadMeta {
        scope: String::new(),
        identifier: identifier.into(),
        file_name: format!("{identifier}.bin"),
        relative_path: None,
        content_type: None,
        total_size: chunks * 10,
        chunk_size: 10,
        created_at: 0,
        instance: instance.into(),
        client: None,
    }
}

fn key(identifier: &str) -> UploadKey {
    UploadKey::derive(&Scope::anonymous(), identifier)
}

async fn duplicates_are_recorded_once_and_the_first_metadata_wins(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some((a, b)) = db::connect_twice(backend, dir.path()).await else {
        return;
    };
    tables(&a).await;
    tables(&b).await; // IF NOT EXISTS: a second server may run it too
    let (a, b) = (ChunkLedger::new(a), ChunkLedger::new(b));
    let k = key("dup");
    let first = a.open(&k, &meta("dup", "first", 3)).await.unwrap();
    let second = b.open(&k, &meta("dup", "second", 3)).await.unwrap();
    assert_eq!(first.instance, "first");
    assert_eq!(
        second.instance, "first",
        "the ledger keeps the first server's upload"
    );
    assert!(a.record(&k, 2, 10, Some("etag-2")).await.unwrap());
    assert!(
        !b.record(&k, 2, 10, Some("other")).await.unwrap(),
        "a retry is not new"
    );
    assert!(b.has(&k, 2).await.unwrap());
    assert!(!b.has(&k, 1).await.unwrap());
    let chunks = b.chunks(&k).await.unwrap();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].part.as_deref(), Some("etag-2"));
    assert_eq!(b.claim(&k).await.unwrap(), Claim::NotAllIn);
    assert_eq!(b.claim(&key("never")).await.unwrap(), Claim::Unknown);
    a.remove(&k).await.unwrap();
    assert!(b.meta(&k).await.unwrap().is_none());
    assert!(!b.has(&k, 2).await.unwrap());
}

/// A path is reserved for one upload at a time and an upload has one reservation; a
/// dropped reservation must be unchanged (its time is its fence); an upload being saved
/// is not removed by expiry; chunks of an unknown upload are not recorded.
async fn save_reservations_are_unique_fenced_and_keep_their_upload_from_expiry(backend: Backend) {
    use sea_orm_resumable::testing::{Reserved, SaveDestination};
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = db::connect(backend, dir.path()).await else {
        return;
    };
    tables(&db).await;
    let ledger = ChunkLedger::new(db);
    let row = SaveDestination {
        schema: None,
        table: "document".into(),
        column: "file".into(),
    };
    let (one, two) = (key("one"), key("two"));
    for k in [one, two] {
        ledger.open(&k, &meta("x", "i", 1)).await.unwrap();
        assert!(ledger.record(&k, 1, 10, None).await.unwrap());
    }
    assert!(
        !ledger.record(&key("unknown"), 1, 10, None).await.unwrap(),
        "no chunk row without its upload"
    );
    let Reserved::Yes(first) = ledger
        .reserve_save((&one, "i"), "docs/a.pdf", "docs/a.pdf", &row)
        .await
        .unwrap()
    else {
        panic!("a free path is reserved");
    };
    assert_eq!(
        ledger
            .reserve_save((&two, "i"), "docs/a.pdf", "docs/a.pdf", &row)
            .await
            .unwrap(),
        Reserved::PathTaken
    );
    assert_eq!(
        ledger
            .reserve_save((&one, "i"), "docs/b.pdf", "docs/b.pdf", &row)
            .await
            .unwrap(),
        Reserved::UploadTaken
    );
    assert!(ledger.path_reserved("docs/a.pdf").await.unwrap());
    // Being saved: expiry leaves it (and its chunks) alone.
    assert!(!ledger.remove_unless_saving(&one).await.unwrap());
    assert!(ledger.has(&one, 1).await.unwrap());
    // Renewed by a retry: the old copy no longer drops it.
    let renewed = ledger.renew_save(&first).await.unwrap().expect("renewed");
    assert!(
        !ledger.drop_save(&first).await.unwrap(),
        "fenced by its time"
    );
    assert_eq!(
        ledger.save_reservation(&one).await.unwrap(),
        Some(renewed.clone())
    );
    assert!(ledger.drop_save(&renewed).await.unwrap());
    assert!(ledger.remove_unless_saving(&one).await.unwrap());
    assert!(ledger.meta(&one).await.unwrap().is_none() && !ledger.has(&one, 1).await.unwrap());
    // end_save ends whatever reservation names the path.
    let Reserved::Yes(_) = ledger
        .reserve_save((&two, "i"), "docs/a.pdf", "docs/a.pdf", &row)
        .await
        .unwrap()
    else {
        panic!("free again");
    };
    assert!(ledger.end_save(&two, "docs/a.pdf").await.unwrap());
    assert!(!ledger.path_reserved("docs/a.pdf").await.unwrap());
}

/// 20 uploads of 16 chunks; every chunk recorded once or twice, through either of two
/// pools, 16 tasks at a time, in a shuffled order; after each record the task claims.
async fn parallel_chunks_through_two_pools_complete_each_upload_exactly_once(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some((a, b)) = db::connect_twice(backend, dir.path()).await else {
        return;
    };
    tables(&a).await;
    let ledgers = [ChunkLedger::new(a), ChunkLedger::new(b)];
    const UPLOADS: usize = 20;
    const CHUNKS: u64 = 16;
    let mut jobs = Vec::new();
    for upload in 0..UPLOADS {
        for number in 1..=CHUNKS {
            jobs.push((upload, number));
            if (upload as u64 + number).is_multiple_of(3) {
                jobs.push((upload, number)); // a duplicate
            }
        }
    }
    jobs.shuffle(&mut rand::rng());
    let queue = std::sync::Arc::new(tokio::sync::Mutex::new(jobs.into_iter().enumerate()));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (queue, ledgers) = (queue.clone(), ledgers.clone());
        tasks.push(tokio::spawn(async move {
            let mut wins = Vec::new();
            loop {
                let Some((i, (upload, number))) = queue.lock().await.next() else {
                    return wins;
                };
                let ledger = &ledgers[i % 2];
                let id = format!("upload-{upload}");
                let k = key(&id);
                ledger
                    .open(&k, &meta(&id, &format!("{i}"), CHUNKS))
                    .await
                    .unwrap();
                ledger.record(&k, number, 10, None).await.unwrap();
                if let Claim::Won(token) = ledger.claim(&k).await.unwrap() {
                    let seen = ledger.chunks(&k).await.unwrap().len() as u64;
                    assert!(ledger.complete(&k, token).await.unwrap());
                    wins.push((upload, seen));
                }
            }
        }));
    }
    let mut wins: HashMap<usize, Vec<u64>> = HashMap::new();
    for task in tasks {
        for (upload, seen) in task.await.unwrap() {
            wins.entry(upload).or_default().push(seen);
        }
    }
    for upload in 0..UPLOADS {
        assert_eq!(
            wins.get(&upload).map(Vec::as_slice),
            Some(&[CHUNKS][..]),
            "upload {upload}: one win, with every chunk in"
        );
        let k = key(&format!("upload-{upload}"));
        for ledger in &ledgers {
            assert_eq!(ledger.claim(&k).await.unwrap(), Claim::Complete);
        }
    }
}

async fn a_claim_past_its_lease_is_taken_over_and_the_old_token_is_refused(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some((a, b)) = db::connect_twice(backend, dir.path()).await else {
        return;
    };
    tables(&a).await;
    let lease = Duration::from_millis(300);
    let (a, b) = (
        ChunkLedger::new(a).with_lease(lease),
        ChunkLedger::new(b).with_lease(lease),
    );
    let k = key("lease");
    a.open(&k, &meta("lease", "x", 1)).await.unwrap();
    a.record(&k, 1, 10, None).await.unwrap();
    let Claim::Won(old) = a.claim(&k).await.unwrap() else {
        panic!("all chunks are in")
    };
    assert_eq!(
        b.claim(&k).await.unwrap(),
        Claim::Assembling,
        "a live claim holds"
    );
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    let Claim::Won(new) = b.claim(&k).await.unwrap() else {
        panic!("the lease ran out: the claim is taken over")
    };
    assert_ne!(old, new);
    assert!(
        !a.complete(&k, old).await.unwrap(),
        "the old claim no longer completes"
    );
    assert!(b.complete(&k, new).await.unwrap());
    assert_eq!(a.claim(&k).await.unwrap(), Claim::Complete);
    assert!(!b.complete(&k, new).await.unwrap(), "complete happens once");
    assert!(
        !b.release(&k, new).await.unwrap(),
        "a complete upload is not released"
    );

    // A claim given back (its assembly failed) can be won again at once, and only by
    // its holder's token.
    let k = key("released");
    a.open(&k, &meta("released", "r", 1)).await.unwrap();
    a.record(&k, 1, 10, None).await.unwrap();
    let Claim::Won(first) = a.claim(&k).await.unwrap() else {
        panic!("all in")
    };
    assert!(!b.release(&k, old).await.unwrap(), "another claim's token");
    assert_eq!(b.claim(&k).await.unwrap(), Claim::Assembling);
    assert!(a.release(&k, first).await.unwrap());
    let Claim::Won(second) = b.claim(&k).await.unwrap() else {
        panic!("released: won again without waiting for the lease")
    };
    assert!(!a.complete(&k, first).await.unwrap());
    assert!(b.complete(&k, second).await.unwrap());
}

async fn the_migration_crate_creates_the_ledger_and_can_undo_it(backend: Backend) {
    use migration::{Migrator, MigratorTrait};
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = db::connect(backend, dir.path()).await else {
        return;
    };
    Migrator::up(&db, None).await.unwrap();
    let ledger = ChunkLedger::new(db.clone());
    let k = key("migrated");
    ledger.open(&k, &meta("migrated", "m", 1)).await.unwrap();
    assert!(ledger.record(&k, 1, 10, None).await.unwrap());
    Migrator::down(&db, None).await.unwrap();
    assert!(ledger.has(&k, 1).await.is_err(), "the tables are gone");
    Migrator::up(&db, None).await.unwrap();
    assert!(!ledger.has(&k, 1).await.unwrap());
}

async fn stale_uploads_are_the_idle_unfinished_and_the_long_complete(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = db::connect(backend, dir.path()).await else {
        return;
    };
    tables(&db).await;
    let ledger = ChunkLedger::new(db);
    let (idle, busy, done, fresh) = (key("idle"), key("busy"), key("done"), key("fresh"));
    ledger.open(&idle, &meta("idle", "i", 2)).await.unwrap();
    ledger.record(&idle, 1, 10, None).await.unwrap();
    ledger.open(&busy, &meta("busy", "b", 2)).await.unwrap();
    ledger.open(&done, &meta("done", "d", 1)).await.unwrap();
    ledger.record(&done, 1, 10, None).await.unwrap();
    let Claim::Won(token) = ledger.claim(&done).await.unwrap() else {
        panic!("all in")
    };
    assert!(ledger.complete(&done, token).await.unwrap());
    // Ages 0 and ≥ 1.5 s apart, judged by a 1 s expiry: room for a slow machine's
    // queries between them (a 300 ms / 200 ms version failed once on a loaded CI run).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    ledger.record(&busy, 2, 10, None).await.unwrap();
    ledger.open(&fresh, &meta("fresh", "f", 2)).await.unwrap();
    let long = Duration::from_secs(3600);
    let short = Duration::from_secs(1);
    let mut found = ledger.stale(short, long).await.unwrap();
    found.sort_by_key(|k| k.to_string());
    assert_eq!(found, vec![idle], "idle past the expiry, no recent chunk");
    let found = ledger.stale(long, short).await.unwrap();
    assert_eq!(found, vec![done], "complete and claimed past the expiry");
    assert!(ledger.stale(long, long).await.unwrap().is_empty());
}

on_both_databases!(
    save_reservations_are_unique_fenced_and_keep_their_upload_from_expiry,
    stale_uploads_are_the_idle_unfinished_and_the_long_complete,
    the_migration_crate_creates_the_ledger_and_can_undo_it,
    duplicates_are_recorded_once_and_the_first_metadata_wins,
    parallel_chunks_through_two_pools_complete_each_upload_exactly_once,
    a_claim_past_its_lease_is_taken_over_and_the_old_token_is_refused,
);
