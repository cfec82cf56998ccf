//! Uploads are keyed by (scope, identifier), named by a derived key on disk, and survive
//! a server restart.

mod common;

use common::*;

const CHUNK: u64 = 32 * 1024;

#[tokio::test]
async fn two_scopes_using_the_same_identifier_do_not_collide() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start(media.path()).await;
    let mut alice = FileUpload::new(&server.url, random_bytes(4 * CHUNK as usize, 1), CHUNK);
    alice.user = Some("alice".into());
    let mut bob = FileUpload::new(&server.url, random_bytes(4 * CHUNK as usize, 2), CHUNK);
    bob.user = Some("bob".into());
    bob.identifier = alice.identifier.clone();

    alice.send_ok(1).await;
    assert_eq!(bob.test(1).await.0, 204, "bob does not see alice's chunk");
    let (a, b) = tokio::join!(
        alice.send_all((1..=4).collect(), 4),
        bob.send_all((1..=4).collect(), 4)
    );
    let _ = (a, b);
    assert_ne!(
        alice.stored_path(media.path()),
        bob.stored_path(media.path())
    );
    alice.assert_stored(media.path());
    bob.assert_stored(media.path());
    let tokens: Vec<_> = server.completed().iter().map(|c| c.token.clone()).collect();
    assert_eq!(tokens.len(), 2);
    assert_ne!(tokens[0], tokens[1]);
}

#[tokio::test]
async fn on_disk_names_are_derived_and_the_file_name_is_kept_as_metadata() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start(media.path()).await;
    let mut upload = FileUpload::new(&server.url, random_bytes(CHUNK as usize, 3), CHUNK);
    upload.filename = "../../etc/passwd".into();
    upload.identifier = "../../../tmp/evil".into();
    upload.send_ok(1).await;
    let files = files_under(media.path());
    assert_eq!(files.len(), 3, "{files:?}");
    for file in &files {
        let name = file
            .strip_prefix("resumable_chunks")
            .unwrap()
            .to_str()
            .unwrap();
        let (stem, ext) = name.split_once('.').unwrap();
        assert!(
            stem.len() == 32 && stem.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}"
        );
        assert!(["data", "meta", "ranges"].contains(&ext), "{name}");
    }
    let meta_path = upload.stored_path(media.path()).with_extension("meta");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(meta_path).unwrap()).unwrap();
    assert_eq!(meta["file_name"], "../../etc/passwd");
    assert_eq!(meta["identifier"], "../../../tmp/evil");
    assert_eq!(server.completed()[0].meta.file_name, "../../etc/passwd");
}

#[tokio::test]
async fn a_new_server_on_the_same_directory_resumes_the_upload() {
    let media = tempfile::tempdir().unwrap();
    let first = TestServer::start(media.path()).await;
    let mut upload = FileUpload::new(&first.url, random_bytes(10 * CHUNK as usize + 17, 4), CHUNK);
    upload.cut = Cut::Forced;
    let sent = [1, 3, 5, 11, 7];
    upload.send_all(sent.to_vec(), 3).await;
    let token = upload.send_ok(2).await["token"].clone();
    first.stop().await;

    let second = TestServer::start(media.path()).await;
    upload.url = second.url.clone();
    for n in 1..=upload.chunk_count() {
        let (status, body) = upload.test(n).await;
        let expected = if sent.contains(&n) || n == 2 {
            200
        } else {
            204
        };
        assert_eq!(status, expected, "chunk {n}");
        if status == 200 {
            let body: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["token"], token, "the token survives the restart");
            assert_eq!(body["chunks_received"], 6);
        }
    }
    upload.send_all(vec![4, 6, 8, 9, 10], 3).await;
    upload.assert_stored(media.path());
    assert_eq!(second.completed().len(), 1);
}

#[tokio::test]
async fn a_restart_after_the_last_chunk_reports_the_upload_complete() {
    let media = tempfile::tempdir().unwrap();
    let first = TestServer::start(media.path()).await;
    let mut upload = FileUpload::new(&first.url, random_bytes(3 * CHUNK as usize, 5), CHUNK);
    upload.send_all(vec![1, 2, 3], 3).await;
    first.stop().await;
    let second = TestServer::start(media.path()).await;
    upload.url = second.url.clone();
    let (status, body) = upload.test(1).await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""complete":true"#), "{body}");
    assert_eq!(
        second.completed().len(),
        0,
        "completed once, by the first server"
    );
}

#[tokio::test]
async fn a_completion_cut_short_by_a_crash_is_finished_by_the_next_server() {
    let media = tempfile::tempdir().unwrap();
    let first = TestServer::start(media.path()).await;
    let mut upload = FileUpload::new(&first.url, random_bytes(3 * CHUNK as usize, 6), CHUNK);
    upload.send_all(vec![1, 2, 3], 3).await;
    first.stop().await;
    // As if the process died after recording the last chunk, before marking completion.
    let data = upload.stored_path(media.path());
    std::fs::rename(&data, data.with_extension("part")).unwrap();

    let second = TestServer::start(media.path()).await;
    upload.url = second.url.clone();
    let (status, body) = upload.test(2).await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""complete":true"#), "{body}");
    assert_eq!(second.completed().len(), 1, "the hooks hear of it once");
    assert_eq!(upload.test(3).await.0, 200);
    assert_eq!(second.completed().len(), 1);
    assert_eq!(sha256_file(&data), sha256(&upload.data));
}
