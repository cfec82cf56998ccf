//! Kill -9: the example server, a child process, is killed with SIGKILL at points of an
//! upload and of a save (held there by a crash point, see src/faults.rs, or mid-body),
//! started again on the same directories, and the client goes on. Nothing stored is lost
//! or corrupted, and no orphan rows, files or reservations remain.

mod common;
#[path = "common/example.rs"]
mod example;

use common::*;
use example::*;
use std::{path::Path, time::Duration};

const CHUNK: u64 = 256 * 1024;

/// Sends the chunks the server does not have (asking first, as the clients do), one at a
/// time; returns the last answer's token.
async fn resume(upload: &FileUpload) -> String {
    let mut token = None;
    for n in 1..=upload.chunk_count() {
        let (status, body) = upload.test(n).await;
        let body = match status {
            200 => body,
            204 => {
                let answer = upload.send_ok(n).await;
                answer.to_string()
            }
            other => panic!("test of chunk {n}: {other} {body}"),
        };
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        if let Some(t) = body["token"].as_str() {
            token = Some(t.to_owned());
        }
    }
    token.expect("the upload completes")
}

/// Only the expected files are left in the chunk directory: the complete upload's.
fn assert_chunk_dir_holds_only(media: &Path, upload: &FileUpload, expected: &[&str]) {
    let mut names: Vec<String> = files_under(&media.join("resumable_chunks"))
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    names.sort();
    let key = upload
        .stored_path(media)
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut wanted: Vec<String> = expected.iter().map(|ext| format!("{key}.{ext}")).collect();
    wanted.sort();
    assert_eq!(names, wanted);
}

#[tokio::test]
async fn killed_mid_chunk_body_the_upload_resumes_intact() {
    let root = tempfile::tempdir().unwrap();
    let media = root.path().join("media");
    let (server, url) = start(&media);
    let mut upload = Site::visit(&url)
        .await
        .upload(random_bytes(4 * CHUNK as usize, 1), CHUNK);
    upload.body = Body::Octet;
    upload.send_all(vec![1, 2], 2).await;

    // Chunk 3: half its bytes, then the client goes quiet; the server is killed while it
    // waits for the rest.
    let half = upload.data[upload.range(3)][..CHUNK as usize / 2].to_vec();
    let body = futures_util::StreamExt::chain(
        futures_util::stream::iter([Ok::<_, std::io::Error>(half)]),
        futures_util::stream::pending(),
    );
    let request = upload
        .http
        .post(&upload.url)
        .query(&upload.params(3))
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(body))
        .send();
    let cut = tokio::time::timeout(Duration::from_millis(500), request).await;
    assert!(cut.is_err(), "the request is still being received");
    kill_9(server);

    let (server, url) = start(&media);
    upload.url = url;
    assert_eq!(upload.test(2).await.0, 200, "chunk 2 was kept");
    assert_eq!(upload.test(3).await.0, 204, "half a chunk is no chunk");
    resume(&upload).await;
    upload.assert_stored(&media);
    assert_chunk_dir_holds_only(&media, &upload, &["data", "meta", "ranges"]);
    interrupt(server);
}

/// Kills the server held at `point` on the `hit`-th pass (0 = first), resumes, checks.
async fn killed_at(point: &str, hit: u32) {
    let root = tempfile::tempdir().unwrap();
    let media = root.path().join("media");
    let armed = format!("{point}={hit}*off->pause");
    let (server, url) = start_armed(&media, &[], &armed);
    let mut upload = Site::visit(&url)
        .await
        .upload(random_bytes(4 * CHUNK as usize + 7, 2), CHUNK);
    let mut held = false;
    for n in 1..=upload.chunk_count() {
        match tokio::time::timeout(Duration::from_millis(700), upload.send(n)).await {
            Ok(response) => assert_eq!(response.status(), 200, "{point} chunk {n}"),
            Err(_) => {
                held = true;
                break;
            }
        }
    }
    assert!(held, "the server stopped at {armed}");
    kill_9(server);

    let (server, url) = start(&media);
    upload.url = url;
    let token = resume(&upload).await;
    assert!(token.contains('.'), "{token}");
    upload.assert_stored(&media);
    assert_chunk_dir_holds_only(&media, &upload, &["data", "meta", "ranges"]);
    interrupt(server);
}

#[tokio::test]
async fn killed_between_chunk_bytes_and_their_mark_the_chunk_is_sent_again() {
    killed_at("chunk-written", 0).await;
    killed_at("chunk-written", 3).await;
}

#[tokio::test]
async fn killed_after_a_chunk_is_marked_but_not_answered_the_upload_goes_on() {
    killed_at("chunk-marked", 1).await;
    killed_at("chunk-marked", 3).await;
}

#[tokio::test]
async fn killed_right_at_completion_the_upload_completes_after_restart() {
    killed_at("upload-finishing", 0).await;
}

/// Uploads a file, posts the document form, kills the server held at `point` of the save,
/// starts it again (which recovers interrupted saves), and checks what the user sees and
/// what is on disk.
async fn killed_during_save_at(point: &str, extra: &[&str]) {
    killed_during_save_with(point, extra, None).await;
}

/// [`killed_during_save_at`], on local files or, with `s3 = (endpoint, chunk prefix)`,
/// with chunks and files in the test bucket (`extra` names the bucket and database).
async fn killed_during_save_with(point: &str, extra: &[&str], s3: Option<(&str, &str)>) {
    let root = tempfile::tempdir().unwrap();
    let media = root.path().join("media");
    let env: &[(&str, &str)] = if s3.is_some() { &TEST_S3_ENV } else { &[] };
    let start_with = |media: &Path, extra: &[&str]| start_armed_env(media, extra, "", env);
    let (server, url) = start_armed_env(&media, extra, &format!("{point}=pause"), env);
    let data = random_bytes(700_000, 3);
    let site = Site::visit(&url).await;
    let upload = site.upload(data.clone(), CHUNK);
    let token = resume(&upload).await;
    let save = site.post_document("Crash", &token);
    let held = tokio::time::timeout(Duration::from_millis(700), save).await;
    assert!(held.is_err(), "the save is held at {point}");
    kill_9(server);

    let (server, url) = start_with(&media, extra);
    let site = site.at(&url);
    let listed = |page: String| page.matches("<li>").count();
    let rows = listed(site.get("/").await.text().await.unwrap());
    let again = site.post_document("Crash", &token).await;
    if point == "save-reserved" {
        assert_eq!(rows, 0, "{point}: the row was never written");
        assert_eq!(
            again.status(),
            303,
            "{point}: the upload can be saved again"
        );
    } else {
        assert_eq!(rows, 1, "{point}: the row was written");
        assert_eq!(
            again.status(),
            422,
            "{point}: the upload is in that row now"
        );
        assert!(again.text().await.unwrap().contains("no longer exists"));
    }
    let home = site.get("/").await.text().await.unwrap();
    assert_eq!(listed(home.clone()), 1, "{point}: one document");
    let id = home
        .split("/documents/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let page = site
        .get(&format!("/documents/{id}"))
        .await
        .text()
        .await
        .unwrap();
    let path = element(&page, "path");
    match s3 {
        None => {
            assert_eq!(sha256_file(&media.join(&path)), sha256(&data), "{point}");
            assert_eq!(
                files_under(&media),
                vec![std::path::PathBuf::from(&path)],
                "{point}: the stored file and nothing else (no chunks, reservations, copies)"
            );
        }
        Some((endpoint, prefix)) => {
            let bucket = test_bucket(endpoint);
            assert_eq!(
                object_sha256(&bucket, &path).await,
                sha256(&data),
                "{point}"
            );
            let left = objects_under(&bucket, prefix).await;
            assert!(left.is_empty(), "{point}: no chunk objects left: {left:?}");
            assert!(
                !media.exists() || files_under(&media).is_empty(),
                "{point}: nothing kept locally"
            );
        }
    }
    interrupt(server);
}

const SAVE_POINTS: [&str; 4] = [
    "save-reserved",
    "save-stored",
    "save-linked",
    "save-released",
];

#[tokio::test]
async fn killed_during_the_move_on_save_no_row_or_file_is_lost_or_orphaned_on_sqlite() {
    for point in SAVE_POINTS {
        killed_during_save_at(point, &[]).await;
    }
}

#[tokio::test]
async fn killed_during_the_move_on_save_no_row_or_file_is_lost_or_orphaned_on_postgres() {
    for point in SAVE_POINTS {
        let Some(database) = PostgresDatabase::create().await else {
            return;
        };
        killed_during_save_at(point, &["--database-url", &database.url]).await;
        database.drop_database().await;
    }
}

#[tokio::test]
async fn killed_during_a_save_on_object_storage_no_row_or_file_is_lost_or_orphaned() {
    let Ok(endpoint) = std::env::var("RESUMABLE_TEST_S3") else {
        eprintln!("SKIPPED: RESUMABLE_TEST_S3 is not set (tests/setup/s3.sh)");
        return;
    };
    for point in SAVE_POINTS {
        let Some(database) = PostgresDatabase::create().await else {
            return;
        };
        let prefix = format!("kill-nine-{}", uuid::Uuid::new_v4().simple());
        let flags = [
            "--database-url",
            &database.url,
            "--s3-bucket",
            TEST_BUCKET,
            "--s3-endpoint",
            &endpoint,
            "--chunk-subdir",
            &prefix,
        ];
        killed_during_save_with(point, &flags, Some((&endpoint, &prefix))).await;
        database.drop_database().await;
    }
}

#[tokio::test]
async fn a_reservation_without_a_row_is_kept_while_fresh_and_dropped_once_stale() {
    let root = tempfile::tempdir().unwrap();
    let media = root.path().join("media");
    let (server, url) = start_armed(&media, &[], "save-reserved=pause");
    let site = Site::visit(&url).await;
    let upload = site.upload(random_bytes(300_000, 4), CHUNK);
    let token = resume(&upload).await;
    let held = tokio::time::timeout(
        Duration::from_millis(700),
        site.post_document("Crash", &token),
    )
    .await;
    assert!(held.is_err());
    kill_9(server);
    let saving = media.join("resumable_chunks/saving");
    let reservations = || files_under(&saving);
    assert_eq!(reservations().len(), 1, "the crashed save's reservation");

    // Restarted at once: the save might still be under way in another process.
    let (server, _) = start(&media);
    assert_eq!(reservations().len(), 1, "a fresh reservation is left alone");
    interrupt(server);

    // Older than a save may take: dropped at start; the upload is intact and saves.
    let reservation = saving.join(&reservations()[0]);
    let old = std::time::SystemTime::now() - Duration::from_secs(11 * 60);
    std::fs::File::options()
        .write(true)
        .open(&reservation)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let (server, url) = start(&media);
    assert_eq!(reservations().len(), 0, "a stale reservation is dropped");
    let saved = site.at(&url).post_document("Saved", &token).await;
    assert_eq!(saved.status(), 303);
    assert_eq!(files_under(&media).len(), 1, "{:?}", files_under(&media));
    interrupt(server);
}
