//! Chunks on object storage, shared by servers through the database ledger: on a local
//! directory (`object_store`'s LocalFileSystem) and on a real S3-compatible server
//! (s3s-fs, started by tests/setup/s3.sh, named by `RESUMABLE_TEST_S3`), each with the
//! ledger on an SQLite file and on PostgreSQL.

mod common;
#[macro_use]
#[path = "common/db.rs"]
mod db;

use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt, local::LocalFileSystem};
use rand::{Rng, SeedableRng, seq::SliceRandom};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use sea_orm_resumable::{
    Scope, UploadKey, UploadMeta,
    ledger::create_tables,
    testing::{ChunkLedger, ChunkOutcome, ObjectChunks, ObjectChunksError, StoreError},
};
use sha2::{Digest, Sha256};
use std::{collections::HashMap, path::Path, sync::Arc};

/// Where the objects go.
#[derive(Clone, Copy, Debug)]
enum Store {
    Local,
    S3,
}

/// A client of `store` (a new one per call, as each server has its own), or `None` when
/// the S3 server is not configured.
fn store(kind: Store, dir: &Path) -> Option<Arc<dyn ObjectStore>> {
    match kind {
        Store::Local => {
            std::fs::create_dir_all(dir.join("objects")).unwrap();
            Some(Arc::new(
                LocalFileSystem::new_with_prefix(dir.join("objects")).unwrap(),
            ))
        }
        Store::S3 => {
            let Ok(endpoint) = std::env::var("RESUMABLE_TEST_S3") else {
                eprintln!("SKIPPED: RESUMABLE_TEST_S3 is not set (tests/setup/s3.sh)");
                return None;
            };
            Some(Arc::new(common::test_bucket(&endpoint)))
        }
    }
}

/// Why a test case cannot run here.
enum Skip {
    /// PostgreSQL is not configured: skip the whole test.
    Database,
    /// The S3 server is not configured: skip this store.
    Store,
}

/// A temporary directory, a database of `backend` with the ledger's tables, and a client
/// of a `kind` store.
async fn fixture(
    backend: db::Backend,
    kind: Store,
) -> Result<(tempfile::TempDir, DatabaseConnection, Arc<dyn ObjectStore>), Skip> {
    let dir = tempfile::tempdir().unwrap();
    let db = db::connect(backend, dir.path())
        .await
        .ok_or(Skip::Database)?;
    let objects = store(kind, dir.path()).ok_or(Skip::Store)?;
    tables(&db).await;
    Ok((dir, db, objects))
}

/// Object chunks over `store` and `db`, under a prefix of their own in the bucket.
fn chunks(store: Arc<dyn ObjectStore>, db: DatabaseConnection, prefix: &str) -> ObjectChunks {
    ObjectChunks::new(store, ChunkLedger::new(db)).with_prefix(prefix)
}

async fn tables(db: &DatabaseConnection) {
    for table in create_tables() {
        db.execute(&table).await.unwrap();
    }
}

fn unique_prefix() -> String {
    format!("test-{}", uuid::Uuid::new_v4().simple())
}

/// A file cut into chunks of `chunk` bytes (the last one takes the rest).
#[derive(Clone)]
struct File {
    key: UploadKey,
    meta: UploadMeta,
    bytes: Vec<u8>,
    chunk: usize,
}

impl File {
    fn new(identifier: &str, len: usize, chunk: usize, seed: u64) -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        Self {
            key: UploadKey::derive(&Scope::anonymous(), identifier),
            meta: UploadMeta {
                scope: String::new(),
                identifier: identifier.into(),
                file_name: format!("{identifier}.bin"),
                relative_path: None,
                content_type: None,
                total_size: len as u64,
                chunk_size: chunk as u64,
                created_at: 0,
                instance: "test".into(),
                client: None,
            },
            bytes,
            chunk,
        }
    }

    fn count(&self) -> u64 {
        (self.bytes.len() / self.chunk).max(1) as u64
    }

    fn piece(&self, number: u64) -> &[u8] {
        let start = (number as usize - 1) * self.chunk;
        let end = if number == self.count() {
            self.bytes.len()
        } else {
            start + self.chunk
        };
        &self.bytes[start..end]
    }

    /// Sends chunk `number` in pieces of at most 64 KiB, as a request body arrives.
    async fn send(
        &self,
        to: &ObjectChunks,
        number: u64,
    ) -> Result<ChunkOutcome, ObjectChunksError> {
        let piece = Bytes::copy_from_slice(self.piece(number));
        let len = piece.len() as u64;
        let pieces: Vec<Result<Bytes, std::io::Error>> = (0..piece.len())
            .step_by(64 << 10)
            .map(|at| Ok(piece.slice(at..(at + (64 << 10)).min(piece.len()))))
            .collect();
        to.put_chunk(
            &self.key,
            &self.meta,
            number,
            len,
            futures_util::stream::iter(pieces),
        )
        .await
    }
}

/// The assembled file of `file` is there, byte for byte.
async fn assert_complete(chunks: &ObjectChunks, file: &File, kind: Store) {
    let stored = chunks.read_complete(&file.key).await.unwrap();
    assert_eq!(sha256(&stored), sha256(&file.bytes), "{kind:?}");
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn chunk_objects_left(store: &Arc<dyn ObjectStore>, prefix: &str) -> usize {
    use futures_util::TryStreamExt;
    let under = object_store::path::Path::from(format!("{prefix}/chunks"));
    store
        .list(Some(&under))
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .len()
}

async fn chunks_in_any_order_with_duplicates_are_assembled_once_byte_for_byte(
    backend: db::Backend,
) {
    for kind in [Store::Local, Store::S3] {
        let (_dir, db, objects) = match fixture(backend, kind).await {
            Ok(fixture) => fixture,
            Err(Skip::Database) => return,
            Err(Skip::Store) => continue,
        };
        let prefix = unique_prefix();
        let chunks = chunks(objects.clone(), db, &prefix);
        // 23 chunks of 100 000 bytes, the last one 150 000.
        let file = File::new("any-order", 2_350_000, 100_000, 1);
        let mut order: Vec<u64> = (1..=file.count()).chain([3, 17, 23, 1]).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(7));
        let mut completed = 0;
        for number in order {
            if file.send(&chunks, number).await.unwrap() == ChunkOutcome::Completed {
                completed += 1;
            }
        }
        assert_eq!(completed, 1, "{kind:?}: completed once");
        assert_complete(&chunks, &file, kind).await;
        assert_eq!(chunk_objects_left(&objects, &prefix).await, 0, "{kind:?}");
        // A late duplicate neither stores a chunk again nor assembles again.
        assert_eq!(
            file.send(&chunks, 5).await.unwrap(),
            ChunkOutcome::AlreadyComplete
        );
        assert_eq!(chunk_objects_left(&objects, &prefix).await, 0, "{kind:?}");
        chunks.remove(&file.key).await.unwrap();
        assert!(chunks.read_complete(&file.key).await.is_err());
        assert!(!chunks.has_chunk(&file.key, 1).await.unwrap());
    }
}

/// Two servers (each its own store client and database pool) share 20 uploads: every
/// chunk goes to one of them, some to both, 16 at a time, shuffled.
async fn two_servers_sharing_twenty_uploads_complete_each_exactly_once(backend: db::Backend) {
    for kind in [Store::Local, Store::S3] {
        let dir = tempfile::tempdir().unwrap();
        let Some((db_a, db_b)) = db::connect_twice(backend, dir.path()).await else {
            return;
        };
        let (Some(store_a), Some(store_b)) = (store(kind, dir.path()), store(kind, dir.path()))
        else {
            continue;
        };
        tables(&db_a).await;
        let prefix = unique_prefix();
        let servers = [
            chunks(store_a.clone(), db_a, &prefix),
            chunks(store_b, db_b, &prefix),
        ];
        let files: Arc<Vec<File>> = Arc::new(
            (0..20)
                .map(|i| {
                    File::new(
                        &format!("shared-{i}"),
                        8 * 40_000 + i * 1000,
                        40_000,
                        i as u64,
                    )
                })
                .collect(),
        );
        let mut jobs = Vec::new();
        for (f, file) in files.iter().enumerate() {
            for number in 1..=file.count() {
                jobs.push((f, number, (f as u64 + number) % 2));
                if (f as u64 * 7 + number).is_multiple_of(4) {
                    jobs.push((f, number, (f as u64 + number + 1) % 2)); // to the other one
                }
            }
        }
        jobs.shuffle(&mut rand::rng());
        let queue = Arc::new(tokio::sync::Mutex::new(jobs.into_iter()));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (queue, servers, files) = (queue.clone(), servers.clone(), files.clone());
            tasks.push(tokio::spawn(async move {
                let mut completions = Vec::new();
                loop {
                    let Some((f, number, server)) = queue.lock().await.next() else {
                        return completions;
                    };
                    let outcome = files[f]
                        .send(&servers[server as usize], number)
                        .await
                        .unwrap();
                    if outcome == ChunkOutcome::Completed {
                        completions.push(f);
                    }
                }
            }));
        }
        let mut completions: HashMap<usize, u32> = HashMap::new();
        for task in tasks {
            for f in task.await.unwrap() {
                *completions.entry(f).or_default() += 1;
            }
        }
        for (f, file) in files.iter().enumerate() {
            assert_eq!(
                completions.get(&f),
                Some(&1),
                "{kind:?}: upload {f} completed once"
            );
            let stored = servers[f % 2].read_complete(&file.key).await.unwrap();
            assert_eq!(sha256(&stored), sha256(&file.bytes), "{kind:?}: upload {f}");
        }
        assert_eq!(chunk_objects_left(&store_a, &prefix).await, 0, "{kind:?}");
    }
}

/// A chunk larger than SMALL_CHUNK goes as a multipart upload of its own (on S3: parts
/// of at least 5 MiB), and the file as 8 MiB assembly parts.
async fn a_large_chunk_is_streamed_and_assembled_in_parts(backend: db::Backend) {
    for kind in [Store::Local, Store::S3] {
        let (_dir, db, objects) = match fixture(backend, kind).await {
            Ok(fixture) => fixture,
            Err(Skip::Database) => return,
            Err(Skip::Store) => continue,
        };
        let chunks = chunks(objects, db, &unique_prefix());
        let file = File::new("large", 2 * (20 << 20) + 12_345, 20 << 20, 3);
        assert_eq!(file.send(&chunks, 2).await.unwrap(), ChunkOutcome::Recorded);
        assert_eq!(
            file.send(&chunks, 1).await.unwrap(),
            ChunkOutcome::Completed
        );
        assert_complete(&chunks, &file, kind).await;
    }
}

async fn a_short_or_long_body_is_refused_and_not_recorded(backend: db::Backend) {
    for kind in [Store::Local, Store::S3] {
        let (_dir, db, objects) = match fixture(backend, kind).await {
            Ok(fixture) => fixture,
            Err(Skip::Database) => return,
            Err(Skip::Store) => continue,
        };
        let chunks = chunks(objects, db, &unique_prefix());
        let file = File::new("cut", 30, 10, 4);
        let body = |text: &'static [u8]| {
            futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(text))])
        };
        let short = chunks
            .put_chunk(&file.key, &file.meta, 1, 10, body(b"12345"))
            .await;
        assert!(matches!(
            short,
            Err(ObjectChunksError::Body(StoreError::TooShort {
                got: 5,
                expected: 10
            }))
        ));
        let long = chunks
            .put_chunk(&file.key, &file.meta, 1, 10, body(b"0123456789ab"))
            .await;
        assert!(matches!(
            long,
            Err(ObjectChunksError::Body(StoreError::TooLong {
                expected: 10
            }))
        ));
        let broken = futures_util::stream::iter([
            Ok(Bytes::from_static(b"0123")),
            Err(std::io::Error::other("connection reset")),
        ]);
        let cut = chunks.put_chunk(&file.key, &file.meta, 1, 10, broken).await;
        assert!(matches!(
            cut,
            Err(ObjectChunksError::Body(StoreError::Body(_)))
        ));
        assert!(!chunks.has_chunk(&file.key, 1).await.unwrap(), "{kind:?}");
        for number in [0, 4, u64::MAX] {
            let outside = chunks
                .put_chunk(&file.key, &file.meta, number, 10, body(b"0123456789"))
                .await;
            assert!(
                matches!(outside, Err(ObjectChunksError::BadNumber { most: 3, .. })),
                "{number}"
            );
        }
        // Chunks whose sizes do not add up to the file's are never assembled; chunks that
        // add up with a gap (sizes the caller did not check) are refused at assembly.
        let odd = File::new("odd-sizes", 30, 10, 12);
        let send = |number: u64, text: &'static [u8]| {
            chunks.put_chunk(&odd.key, &odd.meta, number, text.len() as u64, body(text))
        };
        assert_eq!(
            send(1, b"0123456789").await.unwrap(),
            ChunkOutcome::Recorded
        );
        assert_eq!(send(2, b"01234").await.unwrap(), ChunkOutcome::Recorded);
        let gap = File::new("gap", 30, 10, 13);
        let outcome = chunks
            .put_chunk(&gap.key, &gap.meta, 1, 10, body(b"0123456789"))
            .await;
        assert_eq!(outcome.unwrap(), ChunkOutcome::Recorded);
        let outcome = chunks
            .put_chunk(&gap.key, &gap.meta, 3, 20, body(b"01234567890123456789"))
            .await;
        assert!(
            matches!(outcome, Err(ObjectChunksError::MissingChunk(2))),
            "{kind:?}: {outcome:?}"
        );
        assert!(chunks.read_complete(&gap.key).await.is_err(), "{kind:?}");
        assert!(chunks.read_complete(&odd.key).await.is_err(), "{kind:?}");
        // Another upload under the same key with other sizes is refused.
        let mut other = file.meta.clone();
        other.total_size = 31;
        let mismatch = chunks
            .put_chunk(&file.key, &other, 1, 10, body(b"0123456789"))
            .await;
        assert!(matches!(mismatch, Err(ObjectChunksError::Mismatch)));
    }
}

async fn expiry_removes_an_abandoned_upload_and_its_chunk_objects(backend: db::Backend) {
    for kind in [Store::Local, Store::S3] {
        let (_dir, db, objects) = match fixture(backend, kind).await {
            Ok(fixture) => fixture,
            Err(Skip::Database) => return,
            Err(Skip::Store) => continue,
        };
        let prefix = unique_prefix();
        let chunks = chunks(objects.clone(), db, &prefix);
        let abandoned = File::new("abandoned", 50, 10, 5);
        for number in [1, 4] {
            abandoned.send(&chunks, number).await.unwrap();
        }
        assert_eq!(chunk_objects_left(&objects, &prefix).await, 2);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        // Expiry right after the active upload's chunk (a slow listing in between could
        // make it look idle for the 200 ms expiry).
        let active = File::new("active", 50, 10, 6);
        active.send(&chunks, 2).await.unwrap();
        let day = std::time::Duration::from_secs(24 * 60 * 60);
        let removed = chunks
            .expire(std::time::Duration::from_millis(200), day)
            .await
            .unwrap();
        assert_eq!((removed.incomplete, removed.complete), (1, 0), "{kind:?}");
        assert_eq!(chunk_objects_left(&objects, &prefix).await, 1, "{kind:?}");
        assert!(
            chunks
                .ledger()
                .meta(&abandoned.key)
                .await
                .unwrap()
                .is_none()
        );
        assert!(chunks.has_chunk(&active.key, 2).await.unwrap());
    }
}

/// With a multipart store, chunks of 5 MiB or more go straight in as parts of one
/// multipart upload, from two servers, in any order, with duplicates; completion is one
/// request and no chunk object is ever written. Smaller chunks still go one object each.
async fn large_chunks_go_straight_in_as_parts_from_either_server(backend: db::Backend) {
    use object_store::{memory::InMemory, multipart::MultipartStore};
    for kind in ["memory", "s3"] {
        let dir = tempfile::tempdir().unwrap();
        let Some((db_a, db_b)) = db::connect_twice(backend, dir.path()).await else {
            return;
        };
        // Each server its own client of one store (InMemory: one shared instance).
        let (a, b): (Arc<dyn ObjectStore>, Arc<dyn ObjectStore>);
        let (parts_a, parts_b): (Arc<dyn MultipartStore>, Arc<dyn MultipartStore>);
        if kind == "memory" {
            let memory = Arc::new(InMemory::new());
            (a, b, parts_a, parts_b) = (memory.clone(), memory.clone(), memory.clone(), memory);
        } else {
            let Ok(endpoint) = std::env::var("RESUMABLE_TEST_S3") else {
                eprintln!("SKIPPED: RESUMABLE_TEST_S3 is not set (tests/setup/s3.sh)");
                continue;
            };
            let client = || Arc::new(common::test_bucket(&endpoint));
            let (one, two) = (client(), client());
            (a, b, parts_a, parts_b) = (one.clone(), two.clone(), one, two);
        }
        tables(&db_a).await;
        let prefix = unique_prefix();
        let servers = [
            chunks(a.clone(), db_a, &prefix).with_parts(parts_a),
            chunks(b, db_b, &prefix).with_parts(parts_b),
        ];
        // 4 chunks of 5 MiB, the last one 5 MiB + 4321 bytes.
        let file = File::new("parts", 4 * (5 << 20) + 4321, 5 << 20, 8);
        let mut jobs: Vec<(u64, usize)> = vec![(3, 0), (1, 1), (4, 0), (3, 1), (2, 1), (1, 0)];
        jobs.shuffle(&mut rand::rng());
        let sends = jobs
            .into_iter()
            .map(|(number, server)| file.send(&servers[server], number));
        let outcomes = futures_util::future::join_all(sends).await;
        let completed = outcomes
            .iter()
            .filter(|o| matches!(o, Ok(ChunkOutcome::Completed)))
            .count();
        assert!(outcomes.iter().all(Result::is_ok), "{kind}: {outcomes:?}");
        assert_eq!(completed, 1, "{kind}: {outcomes:?}");
        let stored = servers[1].read_complete(&file.key).await.unwrap();
        assert_eq!(sha256(&stored), sha256(&file.bytes), "{kind}");
        assert_eq!(
            chunk_objects_left(&a, &prefix).await,
            0,
            "{kind}: no chunk objects"
        );
        assert!(
            servers[0]
                .ledger()
                .multipart_id(&file.key)
                .await
                .unwrap()
                .is_some()
        );
        // A late duplicate changes nothing.
        assert_eq!(
            file.send(&servers[0], 2).await.unwrap(),
            ChunkOutcome::AlreadyComplete
        );
        // Small chunks on the same servers still go one object per chunk.
        let small = File::new("small-with-parts", 300_000, 100_000, 9);
        for number in 1..=3 {
            small
                .send(&servers[(number % 2) as usize], number)
                .await
                .unwrap();
        }
        let stored = servers[0].read_complete(&small.key).await.unwrap();
        assert_eq!(sha256(&stored), sha256(&small.bytes), "{kind}");
        assert!(
            servers[0]
                .ledger()
                .multipart_id(&small.key)
                .await
                .unwrap()
                .is_none()
        );
    }
}

/// A chunk object that disappears before assembly (a bucket rule, an operator) makes the
/// completing request fail; the chunk is then missing for the client's test request, and
/// once it is sent again the file completes.
async fn a_lost_chunk_object_is_asked_for_again_and_the_upload_completes(backend: db::Backend) {
    for kind in [Store::Local, Store::S3] {
        let (_dir, db, objects) = match fixture(backend, kind).await {
            Ok(fixture) => fixture,
            Err(Skip::Database) => return,
            Err(Skip::Store) => continue,
        };
        let prefix = unique_prefix();
        let chunks = chunks(objects.clone(), db, &prefix);
        let file = File::new("lost", 300, 100, 10);
        file.send(&chunks, 1).await.unwrap();
        file.send(&chunks, 2).await.unwrap();
        let lost = object_store::path::Path::from(format!("{prefix}/chunks/{}/2", file.key));
        objects.delete(&lost).await.unwrap();
        let failed = file.send(&chunks, 3).await;
        assert!(
            matches!(failed, Err(ObjectChunksError::MissingChunk(2))),
            "{kind:?}: {failed:?}"
        );
        assert!(!chunks.has_chunk(&file.key, 2).await.unwrap(), "{kind:?}");
        assert!(chunks.has_chunk(&file.key, 3).await.unwrap(), "{kind:?}");
        assert_eq!(
            file.send(&chunks, 2).await.unwrap(),
            ChunkOutcome::Completed
        );
        assert_complete(&chunks, &file, kind).await;
    }
}

/// A server that recorded the last chunk and claimed the assembly, then died: the upload
/// stays unassembled while the claim's lease holds; after it, `finish` (what a test
/// request calls once every chunk is in) assembles it.
async fn a_dead_assemblers_upload_is_finished_after_its_lease(backend: db::Backend) {
    use object_store::{ObjectStoreExt, PutPayload};
    use sea_orm_resumable::testing::Claim;
    for kind in [Store::Local, Store::S3] {
        let (_dir, db, objects) = match fixture(backend, kind).await {
            Ok(fixture) => fixture,
            Err(Skip::Database) => return,
            Err(Skip::Store) => continue,
        };
        let prefix = unique_prefix();
        let lease = std::time::Duration::from_millis(300);
        let ledger = ChunkLedger::new(db).with_lease(lease);
        let chunks = ObjectChunks::new(objects.clone(), ledger.clone()).with_prefix(&prefix);
        let file = File::new("orphaned", 300, 100, 11);
        file.send(&chunks, 1).await.unwrap();
        file.send(&chunks, 2).await.unwrap();
        // The dead server: chunk 3 stored and recorded, the claim won, nothing more.
        let third = object_store::path::Path::from(format!("{prefix}/chunks/{}/3", file.key));
        objects
            .put(&third, PutPayload::from(file.piece(3).to_vec()))
            .await
            .unwrap();
        ledger.record(&file.key, 3, 100, None).await.unwrap();
        assert!(matches!(
            ledger.claim(&file.key).await.unwrap(),
            Claim::Won(_)
        ));
        assert_eq!(
            chunks.finish(&file.key).await.unwrap(),
            ChunkOutcome::Assembling
        );
        assert!(chunks.read_complete(&file.key).await.is_err(), "{kind:?}");
        tokio::time::sleep(lease + std::time::Duration::from_millis(100)).await;
        assert_eq!(
            chunks.finish(&file.key).await.unwrap(),
            ChunkOutcome::Completed
        );
        assert_complete(&chunks, &file, kind).await;
        assert_eq!(
            chunks.finish(&file.key).await.unwrap(),
            ChunkOutcome::AlreadyComplete
        );
    }
}

/// An assembly that takes longer than the lease renews its claim: another server asking
/// meanwhile finds it assembling (and does not assemble it a second time), and the first
/// completes it.
async fn a_long_assembly_keeps_its_claim_past_the_lease(backend: db::Backend) {
    use object_store::throttle::{ThrottleConfig, ThrottledStore};
    let Ok((_dir, db, _)) = fixture(backend, Store::Local).await else {
        return;
    };
    // Every GET waits 250 ms: the assembly of 8 chunks (4 requested at a time) takes
    // about 500 ms, against a lease of 300 ms.
    let slow: Arc<dyn ObjectStore> = Arc::new(ThrottledStore::new(
        object_store::memory::InMemory::new(),
        ThrottleConfig {
            wait_get_per_call: std::time::Duration::from_millis(250),
            ..ThrottleConfig::default()
        },
    ));
    let lease = std::time::Duration::from_millis(300);
    let ledger = ChunkLedger::new(db).with_lease(lease);
    let prefix = unique_prefix();
    let first = ObjectChunks::new(slow.clone(), ledger.clone()).with_prefix(&prefix);
    let second = ObjectChunks::new(slow, ledger).with_prefix(&prefix);
    let file = File::new("long", 800, 100, 21);
    for number in 1..=7 {
        file.send(&first, number).await.unwrap();
    }
    let assembling = tokio::spawn({
        let (first, file) = (first.clone(), file.clone());
        async move { file.send(&first, 8).await }
    });
    tokio::time::sleep(lease + std::time::Duration::from_millis(150)).await;
    assert_eq!(
        second.finish(&file.key).await.unwrap(),
        ChunkOutcome::Assembling,
        "the claim was renewed"
    );
    assert_eq!(assembling.await.unwrap().unwrap(), ChunkOutcome::Completed);
    assert_complete(&first, &file, Store::Local).await;
}

/// resumable.js cuts 25 bytes in chunks of 10 as 10 + 15 by default and as 10 + 10 + 5
/// with `forceChunkSize`; both complete (no chunk count needed), and so does a zero-byte
/// file (one empty chunk).
async fn both_chunking_modes_and_an_empty_file_complete(backend: db::Backend) {
    for kind in [Store::Local, Store::S3] {
        let (_dir, db, objects) = match fixture(backend, kind).await {
            Ok(fixture) => fixture,
            Err(Skip::Database) => return,
            Err(Skip::Store) => continue,
        };
        let chunks = chunks(objects, db, &unique_prefix());
        let bytes = b"abcdefghijklmnopqrstuvwxy";
        for (identifier, cuts) in [
            ("standard", &[(1, 0..10), (2, 10..25)][..]),
            ("forced", &[(3, 20..25), (1, 0..10), (2, 10..20)][..]),
        ] {
            let mut file = File::new(identifier, 25, 10, 0);
            file.bytes = bytes.to_vec();
            let mut outcomes = Vec::new();
            for (number, range) in cuts {
                let piece = Bytes::copy_from_slice(&bytes[range.clone()]);
                let len = piece.len() as u64;
                let body = futures_util::stream::iter([Ok::<_, std::io::Error>(piece)]);
                outcomes.push(
                    chunks
                        .put_chunk(&file.key, &file.meta, *number, len, body)
                        .await
                        .unwrap(),
                );
            }
            assert_eq!(
                outcomes.last(),
                Some(&ChunkOutcome::Completed),
                "{kind:?} {identifier}"
            );
            assert_complete(&chunks, &file, kind).await;
        }
        let mut empty = File::new("empty", 0, 10, 0);
        empty.bytes.clear();
        let nothing = futures_util::stream::iter(Vec::<Result<Bytes, std::io::Error>>::new());
        let outcome = chunks
            .put_chunk(&empty.key, &empty.meta, 1, 0, nothing)
            .await
            .unwrap();
        assert_eq!(outcome, ChunkOutcome::Completed, "{kind:?}");
        assert_complete(&chunks, &empty, kind).await;
    }
}

on_both_databases!(
    a_long_assembly_keeps_its_claim_past_the_lease,
    both_chunking_modes_and_an_empty_file_complete,
    a_dead_assemblers_upload_is_finished_after_its_lease,
    a_lost_chunk_object_is_asked_for_again_and_the_upload_completes,
    large_chunks_go_straight_in_as_parts_from_either_server,
    expiry_removes_an_abandoned_upload_and_its_chunk_objects,
    chunks_in_any_order_with_duplicates_are_assembled_once_byte_for_byte,
    two_servers_sharing_twenty_uploads_complete_each_exactly_once,
    a_large_chunk_is_streamed_and_assembled_in_parts,
    a_short_or_long_body_is_refused_and_not_recorded,
);
