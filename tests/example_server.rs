//! The example app as people run it: a child process with its command-line flags.

mod common;
#[path = "common/example.rs"]
mod example;

use common::*;
use example::*;

#[tokio::test]
async fn the_example_serves_uploads_stops_on_ctrl_c_and_keeps_its_secret() {
    let root = tempfile::tempdir().unwrap();
    let media = root.path().join("media");
    let (server, url) = start(&media);
    assert!(url.ends_with("/resumable_upload/"), "{url}");
    let mut upload = Site::visit(&url)
        .await
        .upload(random_bytes(300_000, 1), 100_000);
    let token = upload.send_ok(1).await["token"].clone();
    interrupt(server);
    assert!(
        root.path().join("data/secret").is_file(),
        "secret kept beside the media root"
    );

    let (server, url) = start(&media);
    upload.url = url;
    let (status, body) = upload.test(1).await;
    assert_eq!(status, 200);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["token"], token, "tokens stay valid across restarts");
    upload.send_all(vec![2, 3], 2).await;
    upload.assert_stored(&media);
    interrupt(server);
}

/// Upload → form → row → page → file, with the sha256 of what `/media/` serves.
async fn upload_form_row_file_round_trip(extra: &[&str]) {
    let root = tempfile::tempdir().unwrap();
    let media = root.path().join("media");
    let (server, url) = start_with(&media, extra);
    let site = Site::visit(&url).await;

    let data = random_bytes(1_000_000, 42);
    let upload = site.upload(data.clone(), 256 * 1024);
    upload.send_all(vec![3, 1, 2], 3).await;
    let token = upload.send_ok(1).await["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let created = site.post_document("Quarterly <report>", &token).await;
    assert_eq!(created.status(), 303);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/documents/"), "{location}");

    let page = site.get(&location).await.text().await.unwrap();
    assert_eq!(element(&page, "title"), "Quarterly &lt;report&gt;");
    let path = element(&page, "path");
    assert!(
        path.starts_with("documents/") && path.ends_with("test_file.bin"),
        "{path}"
    );
    let href = element(&page, "file");
    assert_eq!(href, format!("/media/{path}"));
    let served = site.get(&href).await;
    assert_eq!(served.status(), 200);
    for (name, value) in [
        ("content-disposition", "attachment"),
        ("x-content-type-options", "nosniff"),
        ("content-security-policy", "sandbox"),
    ] {
        assert_eq!(
            served.headers()[name],
            value,
            "uploads are never rendered on our origin"
        );
    }
    assert_eq!(sha256(&served.bytes().await.unwrap()), sha256(&data));
    assert_eq!(sha256_file(&media.join(&path)), sha256(&data));

    // The same token again, a forged one, none: 422 with the reason on the page.
    for (token, reason) in [
        (token.as_str(), "this upload no longer exists"),
        ("0123.abc", "the upload token is not valid"),
        ("", "please upload a file"),
    ] {
        let refused = site.post_document("Again", token).await;
        assert_eq!(refused.status(), 422, "{token:?}");
        let page = refused.text().await.unwrap();
        assert!(page.contains(reason), "{reason:?} not in {page}");
    }
    // Chunk directories are not media: an unfinished upload's files are there, unserved.
    let partial = site.upload(random_bytes(300_000, 43), 100_000);
    let token = partial.send_ok(1).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = token.split('.').next().unwrap();
    let meta = format!("resumable_chunks/{key}.meta");
    assert!(media.join(&meta).is_file());
    for path in [
        meta.clone(),
        format!("./{meta}"),
        format!("resumable_chunks//{key}.part"),
    ] {
        let response = site.get(&format!("/media/{path}")).await;
        assert_eq!(response.status(), 404, "{path}");
    }
    let escape = site.get("/media/..%2F..%2Fetc%2Fpasswd").await;
    assert_eq!(escape.status(), 404);
    interrupt(server);
}

#[tokio::test]
async fn upload_form_row_file_round_trip_on_sqlite_by_default() {
    upload_form_row_file_round_trip(&[]).await;
}

#[tokio::test]
async fn upload_form_row_file_round_trip_without_a_flush_per_chunk() {
    upload_form_row_file_round_trip(&["--no-sync-data"]).await;
}

#[tokio::test]
async fn upload_form_row_file_round_trip_on_postgres() {
    let Some(database) = PostgresDatabase::create().await else {
        return;
    };
    upload_form_row_file_round_trip(&["--database-url", &database.url]).await;
    database.drop_database().await;
}

/// The signal handlers are in place before the server says where it listens: a Ctrl-C
/// that comes at once stops it cleanly (it used to kill it now and then, 3 in 60).
#[test]
fn a_ctrl_c_right_after_start_stops_the_server_cleanly() {
    let root = tempfile::tempdir().unwrap();
    for round in 0..40 {
        let media = root.path().join(format!("media-{round}"));
        let (server, _url) = start(&media);
        interrupt_at_once(server);
    }
}
