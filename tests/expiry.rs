//! Expiry of abandoned uploads: by idle time, never while a chunk is being written, and
//! from a background task that stops when told.

mod common;

use bytes::Bytes;
use common::{files_under, secret, settings, upload_direct};
use sea_orm_resumable::{
    ChunkParams, ExpiryReport, FileFieldError, ResumableFileField, Scope, Uploads,
};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

sea_orm_resumable::file_field! { struct Docs {} }

const HOUR: Duration = Duration::from_secs(3600);
const CHUNK: u64 = 1024;

async fn service(
    configure: impl FnOnce(&mut sea_orm_resumable::Settings),
) -> (tempfile::TempDir, Uploads) {
    let media = tempfile::tempdir().unwrap();
    let mut settings = settings(media.path());
    configure(&mut settings);
    let uploads = Uploads::builder(settings, secret()).build().await.unwrap();
    (media, uploads)
}

fn first_of_two(identifier: &str) -> ChunkParams {
    ChunkParams {
        chunk_number: 1,
        chunk_size: CHUNK,
        current_chunk_size: CHUNK,
        total_size: 2 * CHUNK,
        identifier: identifier.into(),
        filename: "half.bin".into(),
        relative_path: None,
        content_type: None,
        file_part: "file".into(),
        field: None,
    }
}

/// Sends the first of two chunks: an unfinished upload.
async fn half_upload(uploads: &Uploads, identifier: &str) {
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(vec![
        7u8;
        CHUNK
            as usize
    ]))]);
    let status = uploads
        .receive_chunk(&Scope::anonymous(), &first_of_two(identifier), body)
        .await
        .unwrap();
    assert!(!status.complete);
}

fn chunk_files(media: &tempfile::TempDir) -> usize {
    files_under(&media.path().join("resumable_chunks")).len()
}

#[tokio::test]
async fn an_unfinished_upload_idle_past_its_limit_is_removed_and_starts_anew() {
    let (media, uploads) = service(|_| {}).await;
    half_upload(&uploads, "idle").await;
    assert_eq!(chunk_files(&media), 3, "meta, ranges, part");
    let now = SystemTime::now();

    let early = uploads.expire_as_of(now + 23 * HOUR).await.unwrap();
    assert_eq!(early, ExpiryReport::default(), "kept within 24 h");
    let late = uploads.expire_as_of(now + 25 * HOUR).await.unwrap();
    assert_eq!((late.incomplete, late.complete), (1, 0));
    assert_eq!(chunk_files(&media), 0);

    let params = first_of_two("idle");
    assert!(
        uploads
            .test_chunk(&Scope::anonymous(), &params)
            .await
            .unwrap()
            .is_none()
    );
    half_upload(&uploads, "idle").await;
}

#[tokio::test]
async fn a_complete_upload_never_saved_expires_after_the_longer_limit() {
    let (media, uploads) = service(|_| {}).await;
    let scope = Scope::anonymous();
    let token = upload_direct(&uploads, &scope, None, "done.bin", b"all of it").await;
    let now = SystemTime::now();
    assert_eq!(
        uploads
            .expire_as_of(now + 25 * HOUR)
            .await
            .unwrap()
            .complete,
        0
    );
    let report = uploads.expire_as_of(now + 8 * 24 * HOUR).await.unwrap();
    assert_eq!((report.incomplete, report.complete), (0, 1));
    assert_eq!(chunk_files(&media), 0);
    let gone = ResumableFileField::<Docs>::from_token(&uploads, &scope, token.as_str()).await;
    assert!(matches!(gone, Err(FileFieldError::UnknownUpload)));
}

#[tokio::test]
async fn an_upload_whose_chunk_is_being_written_is_not_expired() {
    let (media, uploads) = service(|_| {}).await;
    half_upload(&uploads, "busy").await;
    // Chunk 2 arrives slowly: half now, half later.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let body = tokio_stream_from(rx);
    let writer = {
        let uploads = uploads.clone();
        tokio::spawn(async move {
            let mut params = first_of_two("busy");
            params.chunk_number = 2;
            uploads
                .receive_chunk(&Scope::anonymous(), &params, body)
                .await
        })
    };
    tx.send(Ok(Bytes::from(vec![8u8; 512]))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let report = uploads
        .expire_as_of(SystemTime::now() + 30 * 24 * HOUR)
        .await
        .unwrap();
    assert_eq!(report, ExpiryReport::default(), "a chunk is being written");

    tx.send(Ok(Bytes::from(vec![8u8; 512]))).await.unwrap();
    drop(tx);
    let status = writer.await.unwrap().unwrap();
    assert!(status.complete, "the write finished normally");
    assert!(chunk_files(&media) >= 3);
}

/// A body stream fed by a channel.
fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn the_background_task_expires_uploads_and_stops_when_cancelled() {
    let (media, uploads) = service(|s| s.incomplete_expiry = Duration::ZERO).await;
    half_upload(&uploads, "soon").await;
    let stop = CancellationToken::new();
    let task = uploads.spawn_expiry(Duration::from_millis(50), stop.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while chunk_files(&media) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "expired by the task"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("the task stops when cancelled")
        .unwrap();
}

#[tokio::test]
async fn leftovers_of_interrupted_saves_go_once_old() {
    let (media, uploads) = service(|_| {}).await;
    let saving = media.path().join("resumable_chunks/saving");
    std::fs::create_dir_all(&saving).unwrap();
    let old = saving.join("old.json");
    let fresh = saving.join("fresh.json");
    for path in [&old, &fresh] {
        std::fs::write(path, b"{}").unwrap();
    }
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(SystemTime::now() - 8 * 24 * HOUR)
        .unwrap();
    let report = uploads.expire().await.unwrap();
    assert_eq!(report.leftovers, 1);
    assert!(!old.exists() && fresh.exists());
}

#[tokio::test]
async fn files_of_an_upload_whose_metadata_is_gone_expire_like_an_unfinished_upload() {
    // What a removal cut short by a crash leaves: the metadata goes first, the rest stays.
    let (media, uploads) = service(|_| {}).await;
    half_upload(&uploads, "cut-short").await;
    let chunks = media.path().join("resumable_chunks");
    let meta = files_under(&chunks)
        .into_iter()
        .find(|f| f.extension().is_some_and(|e| e == "meta"))
        .unwrap();
    std::fs::remove_file(chunks.join(meta)).unwrap();
    assert_eq!(chunk_files(&media), 2, "ranges and part left");

    let soon = uploads
        .expire_as_of(SystemTime::now() + HOUR)
        .await
        .unwrap();
    assert_eq!(soon, ExpiryReport::default(), "not idle long enough yet");
    let later = uploads
        .expire_as_of(SystemTime::now() + 25 * HOUR)
        .await
        .unwrap();
    assert_eq!(later.incomplete, 1);
    assert_eq!(chunk_files(&media), 0);
}
