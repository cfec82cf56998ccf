//! Storage trouble answers 503 and the upload stays resumable. The faults are real: the
//! chunk directory is a small tmpfs, filled up or remounted read-only. Mounting needs root
//! (CI runs as root); elsewhere these tests say so and pass without checking.

mod common;
#[path = "common/tmpfs.rs"]
mod tmpfs;

use common::*;
use tmpfs::Tmpfs;

const CHUNK: u64 = 64 * 1024;

#[tokio::test]
async fn a_full_disk_answers_503_and_the_upload_finishes_once_space_is_back() {
    let root = tempfile::tempdir().unwrap();
    let media = root.path().join("media");
    let chunks = media.join("resumable_chunks");
    let Some(_disk) = Tmpfs::mount(&chunks, "2m") else {
        return;
    };
    let server = TestServer::start(&media).await;
    let upload = FileUpload::new(&server.url, random_bytes(16 * CHUNK as usize, 1), CHUNK);
    // The upload fits when it starts; then something else fills the disk.
    upload.send_ok(1).await;
    let filler = chunks.join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 1900 * 1024]);

    let mut refused = None;
    for n in 2..=upload.chunk_count() {
        let response = upload.send(n).await;
        if response.status() != 200 {
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap();
            refused = Some((n, status, body));
            break;
        }
    }
    let (first_refused, status, body) = refused.expect("the small disk filled up");
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("try again"),
        "{body}"
    );

    std::fs::remove_file(&filler).unwrap();
    for n in 1..=upload.chunk_count() {
        if upload.test(n).await.0 == 204 {
            assert!(
                n >= first_refused,
                "chunk {n} was stored before the disk filled"
            );
            upload.send_ok(n).await;
        }
    }
    upload.assert_stored(&media);
    assert_eq!(server.completed().len(), 1);
}

#[tokio::test]
async fn a_file_larger_than_the_free_space_is_refused_at_its_first_chunk() {
    let root = tempfile::tempdir().unwrap();
    let media = root.path().join("media");
    let chunks = media.join("resumable_chunks");
    let Some(_disk) = Tmpfs::mount(&chunks, "256k") else {
        return;
    };
    let server = TestServer::start(&media).await;
    let upload = FileUpload::new(&server.url, random_bytes(16 * CHUNK as usize, 2), CHUNK);
    let response = upload.send(1).await;
    assert_eq!(response.status(), 400, "final: waiting would not help soon");
    let body: serde_json::Value = response.json().await.unwrap();
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("not enough free space"), "{message}");
    assert!(message.contains("1048576 bytes"), "{message}");
    assert_eq!(
        std::fs::read_dir(&chunks).unwrap().count(),
        0,
        "nothing kept"
    );
    // A file that fits is taken.
    let small = FileUpload::new(&server.url, random_bytes(2 * CHUNK as usize, 3), CHUNK);
    small.send_ok(1).await;
    small.send_ok(2).await;
    small.assert_stored(&media);
}

#[tokio::test]
async fn a_read_only_chunk_directory_answers_503_and_the_upload_resumes_when_writable() {
    let root = tempfile::tempdir().unwrap();
    let media = root.path().join("media");
    let Some(disk) = Tmpfs::mount(&media.join("resumable_chunks"), "4m") else {
        return;
    };
    let server = TestServer::start(&media).await;
    let upload = FileUpload::new(&server.url, random_bytes(4 * CHUNK as usize, 2), CHUNK);
    upload.send_ok(1).await;

    disk.remount("ro");
    let response = upload.send(2).await;
    assert_eq!(response.status(), 503);
    let other = FileUpload::new(&server.url, random_bytes(CHUNK as usize, 3), CHUNK);
    assert_eq!(
        other.send(1).await.status(),
        503,
        "creating an upload fails too"
    );
    assert_eq!(upload.test(1).await.0, 200, "test requests still work");

    disk.remount("rw");
    upload.send_all(vec![2, 3, 4], 2).await;
    upload.assert_stored(&media);
}
