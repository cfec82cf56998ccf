//! The upload-store suite: the same tests against every backend through the
//! [`UploadStore`] trait — `local` files, `object` storage on a directory store with a
//! SQLite ledger, and S3 (the s3s-fs server of `tests/setup/s3.sh`) with a PostgreSQL
//! ledger when `RESUMABLE_TEST_S3` and `DATABASE_URL` are set.

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use object_store::{ObjectStore, local::LocalFileSystem};
use sea_orm::{ConnectionTrait, Database};
use std::{
    io,
    ops::Range,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use super::{
    local::LocalUploads,
    object::ObjectUploads,
    upload_store::{Body, Commit, Finish, StoreError, UploadMeta, UploadStore, Write},
};
use crate::{
    UploadKey, storage::ledger::ChunkLedger, storage::object::chunks::ObjectChunks,
    storage::quotas::Quotas,
};

#[derive(Clone, Copy, Debug)]
enum Backend {
    Local,
    ObjectFs,
    S3,
}

/// A store of `backend` and what must live as long as it (its directory).
async fn store(backend: Backend) -> Option<(Arc<dyn UploadStore>, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let many = (u64::MAX, u64::MAX);
    let quotas = Arc::new(Quotas::new(many, many, many));
    let ledger = |db: sea_orm::DatabaseConnection| async move {
        for table in crate::storage::ledger::create_tables() {
            db.execute(&table).await.unwrap();
        }
        ChunkLedger::new(db)
    };
    let prefix = format!("suite-{}", uuid::Uuid::new_v4().simple());
    let store: Arc<dyn UploadStore> = match backend {
        Backend::Local => Arc::new(
            LocalUploads::open(
                dir.path().to_owned(),
                None,
                true,
                quotas,
                Duration::from_secs(5),
            )
            .await
            .unwrap(),
        ),
        Backend::ObjectFs => {
            let objects: Arc<dyn ObjectStore> =
                Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
            let db = Database::connect("sqlite::memory:").await.unwrap();
            let chunks = ObjectChunks::new(objects, ledger(db).await).with_prefix(&prefix);
            Arc::new(ObjectUploads::new(chunks, quotas))
        }
        Backend::S3 => {
            let (Ok(endpoint), Ok(url)) = (
                std::env::var("RESUMABLE_TEST_S3"),
                std::env::var("DATABASE_URL"),
            ) else {
                eprintln!("SKIPPED: RESUMABLE_TEST_S3 or DATABASE_URL is not set (tests/setup)");
                return None;
            };
            let s3 = object_store::aws::AmazonS3Builder::new()
                .with_endpoint(endpoint)
                .with_allow_http(true)
                .with_bucket_name("resumable-test")
                .with_region("us-east-1")
                .with_access_key_id("resumable-test")
                .with_secret_access_key("resumable-test-secret")
                .with_virtual_hosted_style_request(false)
                .build()
                .unwrap();
            let db = Database::connect(url).await.unwrap();
            let chunks = ObjectChunks::new(Arc::new(s3), ledger(db).await).with_prefix(&prefix);
            Arc::new(ObjectUploads::new(chunks, quotas))
        }
    };
    Some((store, dir))
}

/// A new upload of `bytes` in chunks of `chunk_size`, its key and metadata.
fn upload(bytes: &[u8], chunk_size: u64) -> (UploadKey, UploadMeta) {
    let identifier = uuid::Uuid::new_v4().simple().to_string();
    let meta = UploadMeta {
        scope: "suite".into(),
        identifier: identifier.clone(),
        file_name: "suite.bin".into(),
        relative_path: None,
        content_type: None,
        total_size: bytes.len() as u64,
        chunk_size,
        created_at: 0,
        instance: identifier.clone(),
        client: None,
    };
    (UploadKey::from_hex(&identifier).unwrap(), meta)
}

/// `bytes` as a body of pieces of at most `piece` bytes.
fn body(bytes: &[u8], piece: usize) -> Body<'static> {
    let pieces: Vec<io::Result<Bytes>> = bytes
        .chunks(piece.max(1))
        .map(|p| Ok(Bytes::copy_from_slice(p)))
        .collect();
    if pieces.is_empty() {
        return stream::empty().boxed();
    }
    stream::iter(pieces).boxed()
}

/// A body that breaks off (as a dropped connection) after `bytes`.
fn cut_body(bytes: &[u8]) -> Body<'static> {
    let pieces = vec![
        Ok(Bytes::copy_from_slice(bytes)),
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "connection reset",
        )),
    ];
    stream::iter(pieces).boxed()
}

/// A body that must not be read.
fn untouchable() -> Body<'static> {
    stream::once(async { panic!("a stored range's body was read") }).boxed()
}

/// Deterministic pseudo-random bytes.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn write(
    store: &dyn UploadStore,
    key: &UploadKey,
    bytes: &[u8],
    range: Range<u64>,
) -> Result<Write, StoreError> {
    let part = &bytes[range.start as usize..range.end as usize];
    store
        .write(key, range, &mut body(part, 4096), Commit::Whole)
        .await
}

async fn assert_complete_with(store: &dyn UploadStore, key: &UploadKey, bytes: &[u8]) {
    assert!(store.progress(key).await.unwrap().complete);
    let head = store.head(key, bytes.len() + 10).await.unwrap();
    assert!(head == bytes, "the stored file differs");
}

/// Runs `test` on every backend.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Local).await })*
        }
        mod object_fs {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::ObjectFs).await })*
        }
        mod s3 {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::S3).await })*
        }
    };
}

on_every_backend!(
    ranges_that_tile_the_file_complete_it_exactly_once,
    a_write_of_any_length_at_any_offset_lands_in_place,
    a_cut_off_body_commits_the_prefix_it_received,
    overlapping_writes_are_refused_and_exact_repeats_write_nothing,
    a_whole_write_with_a_short_or_long_body_records_nothing,
    a_zero_byte_file_is_one_empty_range,
);

async fn ranges_that_tile_the_file_complete_it_exactly_once(backend: Backend) {
    let Some((store, _dir)) = store(backend).await else {
        return;
    };
    let bytes = Arc::new(data(200_000, 7));
    let (key, meta) = upload(&bytes, 1);
    store.open(&key, &meta).await.unwrap();
    // Ranges of uneven lengths, sent in a shuffled order, each twice, 8 at a time; every
    // request asks to complete the upload, as the endpoint does.
    let mut ranges = Vec::new();
    let (mut at, mut x) = (0u64, 12345u64);
    while at < bytes.len() as u64 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = 1 + (x >> 33) % 20_000;
        let end = (at + len).min(bytes.len() as u64);
        ranges.push(at..end);
        at = end;
    }
    let mut sends: Vec<Range<u64>> = ranges.iter().chain(&ranges).cloned().collect();
    sends.sort_by_key(|r| (r.start.wrapping_mul(2654435761)) % 1_000_003);
    let completed = Arc::new(AtomicUsize::new(0));
    let writes = sends.into_iter().map(|range| {
        let (store, bytes, completed) = (store.clone(), bytes.clone(), completed.clone());
        async move {
            match write(&*store, &key, &bytes, range.clone()).await {
                Ok(_) => {}
                // A repeat while the first copy is written waits for it; a repeat racing
                // past it is told to try again.
                Err(StoreError::Busy(_)) => {
                    write(&*store, &key, &bytes, range).await.unwrap();
                }
                Err(e) => panic!("{range:?}: {e}"),
            }
            if store.complete(&key).await.unwrap() == Finish::JustCompleted {
                completed.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let tasks: Vec<_> = writes.map(tokio::spawn).collect();
    for task in tasks {
        task.await.unwrap();
    }
    // Late callers find it complete.
    for _ in 0..3 {
        assert_ne!(store.complete(&key).await.unwrap(), Finish::JustCompleted);
    }
    assert_eq!(
        completed.load(Ordering::SeqCst),
        1,
        "completed exactly once"
    );
    assert_complete_with(&*store, &key, &bytes).await;
}

async fn a_write_of_any_length_at_any_offset_lands_in_place(backend: Backend) {
    let Some((store, _dir)) = store(backend).await else {
        return;
    };
    let bytes = data(10_000, 3);
    let (key, meta) = upload(&bytes, 1);
    store.open(&key, &meta).await.unwrap();
    for range in [37..1_037, 9_999..10_000, 0..37, 1_037..9_999] {
        assert_eq!(
            write(&*store, &key, &bytes, range.clone()).await.unwrap(),
            Write::Wrote(range.end - range.start)
        );
        let done = store.complete(&key).await.unwrap();
        assert_eq!(done == Finish::JustCompleted, range == (1_037..9_999));
    }
    assert_eq!(
        store.received(&key).await.unwrap(),
        vec![0..37, 37..1_037, 1_037..9_999, 9_999..10_000]
    );
    assert_complete_with(&*store, &key, &bytes).await;
}

async fn a_cut_off_body_commits_the_prefix_it_received(backend: Backend) {
    let Some((store, _dir)) = store(backend).await else {
        return;
    };
    let bytes = data(3_000, 5);
    let (key, meta) = upload(&bytes, 1);
    store.open(&key, &meta).await.unwrap();
    if !matches!(backend, Backend::Local) {
        // Object storage keeps whole writes only, for now (see ObjectUploads::write).
        let refused = store
            .write(
                &key,
                0..3_000,
                &mut cut_body(&bytes[..1_200]),
                Commit::Prefix,
            )
            .await;
        assert!(
            matches!(refused, Err(StoreError::Refused(_))),
            "{refused:?}"
        );
        assert!(store.received(&key).await.unwrap().is_empty());
        return;
    }
    // All or nothing: a cut-off body records nothing.
    let whole = store
        .write(
            &key,
            0..3_000,
            &mut cut_body(&bytes[..1_000]),
            Commit::Whole,
        )
        .await;
    assert!(matches!(whole, Err(StoreError::Body(_))), "{whole:?}");
    assert!(store.received(&key).await.unwrap().is_empty());
    // An append keeps what arrived, and goes on from there.
    let prefix = store
        .write(
            &key,
            0..3_000,
            &mut cut_body(&bytes[..1_200]),
            Commit::Prefix,
        )
        .await
        .unwrap();
    assert_eq!(prefix, Write::Wrote(1_200));
    assert_eq!(store.received(&key).await.unwrap(), vec![0..1_200]);
    assert_eq!(store.complete(&key).await.unwrap(), Finish::NotYet);
    let nothing = store
        .write(&key, 1_200..3_000, &mut cut_body(&[]), Commit::Prefix)
        .await
        .unwrap();
    assert_eq!(nothing, Write::Wrote(0));
    let rest = store
        .write(
            &key,
            1_200..3_000,
            &mut body(&bytes[1_200..], 500),
            Commit::Prefix,
        )
        .await
        .unwrap();
    assert_eq!(rest, Write::Wrote(1_800));
    assert_eq!(store.complete(&key).await.unwrap(), Finish::JustCompleted);
    assert_complete_with(&*store, &key, &bytes).await;
}

async fn overlapping_writes_are_refused_and_exact_repeats_write_nothing(backend: Backend) {
    let Some((store, _dir)) = store(backend).await else {
        return;
    };
    let bytes = data(30, 9);
    let (key, meta) = upload(&bytes, 10);
    store.open(&key, &meta).await.unwrap();
    write(&*store, &key, &bytes, 0..10).await.unwrap();
    let repeat = store
        .write(&key, 0..10, &mut untouchable(), Commit::Whole)
        .await
        .unwrap();
    assert_eq!(repeat, Write::Stored);
    assert!(store.has(&key, 0..10).await.unwrap());
    assert!(!store.has(&key, 10..20).await.unwrap());
    // Bytes 0..20 from the same offset: overlaps 0..10 otherwise than exactly.
    let overlap = write(&*store, &key, &bytes, 0..20).await;
    assert!(
        matches!(overlap, Err(StoreError::Overlap(_))),
        "{overlap:?}"
    );
    assert!(matches!(
        store.has(&key, 0..20).await,
        Err(StoreError::Overlap(_))
    ));
    write(&*store, &key, &bytes, 10..30).await.unwrap();
    let over_the_end = write(&*store, &key, &bytes, 20..30).await;
    assert!(matches!(over_the_end, Err(StoreError::Overlap(_))));
    assert_eq!(store.complete(&key).await.unwrap(), Finish::JustCompleted);
    assert_complete_with(&*store, &key, &bytes).await;
}

async fn a_whole_write_with_a_short_or_long_body_records_nothing(backend: Backend) {
    let Some((store, _dir)) = store(backend).await else {
        return;
    };
    let bytes = data(20, 11);
    let (key, meta) = upload(&bytes, 10);
    store.open(&key, &meta).await.unwrap();
    let short = store
        .write(&key, 0..10, &mut body(&bytes[..5], 2), Commit::Whole)
        .await;
    assert!(matches!(
        short,
        Err(StoreError::TooShort {
            got: 5,
            expected: 10
        })
    ));
    let long = store
        .write(&key, 0..10, &mut body(&bytes[..12], 4), Commit::Whole)
        .await;
    assert!(matches!(long, Err(StoreError::TooLong { expected: 10 })));
    assert!(store.received(&key).await.unwrap().is_empty());
    assert!(!store.has(&key, 0..10).await.unwrap());
}

async fn a_zero_byte_file_is_one_empty_range(backend: Backend) {
    let Some((store, _dir)) = store(backend).await else {
        return;
    };
    let (key, meta) = upload(&[], 1024);
    store.open(&key, &meta).await.unwrap();
    assert_eq!(store.complete(&key).await.unwrap(), Finish::NotYet);
    assert!(!store.has(&key, 0..0).await.unwrap());
    let empty = store
        .write(&key, 0..0, &mut body(&[], 1), Commit::Whole)
        .await
        .unwrap();
    assert_eq!(empty, Write::Wrote(0));
    assert!(store.has(&key, 0..0).await.unwrap());
    assert_eq!(store.complete(&key).await.unwrap(), Finish::JustCompleted);
    assert_complete_with(&*store, &key, &[]).await;
}
