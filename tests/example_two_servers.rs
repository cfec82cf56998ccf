//! Two example servers behind an imaginary load balancer: separate processes on
//! different ports sharing one PostgreSQL database and one S3 bucket (s3s-fs, a real
//! S3-compatible server). The chunks of 20 uploads go alternately to both, shuffled, in
//! parallel and with duplicates; every upload must complete exactly once with the right
//! bytes, and models are then saved through either server.

mod common;
#[path = "common/example.rs"]
mod example;

use common::*;
use example::*;
use rand::seq::SliceRandom;
use sea_orm::ConnectionTrait;
use std::sync::Arc;

const SECRET: &str = "two-servers-share-this-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_share_uploads_complete_each_once_and_save_through_either() {
    let Ok(endpoint) = std::env::var("RESUMABLE_TEST_S3") else {
        eprintln!("SKIPPED: RESUMABLE_TEST_S3 is not set (tests/setup/s3.sh)");
        return;
    };
    let Some(database) = PostgresDatabase::create().await else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let prefix = format!("two-servers-{}", uuid::Uuid::new_v4().simple());
    let flags = [
        "--database-url",
        &database.url,
        "--secret",
        SECRET,
        "--s3-bucket",
        TEST_BUCKET,
        "--s3-endpoint",
        &endpoint,
        "--chunk-subdir",
        &prefix,
    ];
    let env = TEST_S3_ENV;
    let logs = [root.path().join("a.log"), root.path().join("b.log")];
    // Each has a media root of its own: nothing may be kept there.
    let (server_a, url_a) = start_logged(&root.path().join("a/media"), &flags, &env, &logs[0]);
    let (server_b, url_b) = start_logged(&root.path().join("b/media"), &flags, &env, &logs[1]);
    let urls = [url_a.clone(), url_b.clone()];

    // One browser (its scope cookie, signed with the shared secret, good on both).
    let browser = Site::visit(&url_a).await;
    // 20 files of different sizes in 64 KiB chunks (5..=12 chunks each).
    let uploads: Vec<FileUpload> = (0..20u64)
        .map(|i| {
            let len = 64 * 1024 * (5 + (i % 8)) as usize + 1000 * i as usize;
            let mut upload = browser.upload(random_bytes(len, 100 + i), 64 * 1024);
            upload.filename = format!("file {i}.bin");
            upload
        })
        .collect();
    assert_eq!(uploads[0].test(1).await.0, 204, "nothing is known yet");

    // Every chunk once, alternating servers, plus 2 duplicates per upload sent to the
    // other server; all shuffled and sent 12 at a time.
    let mut requests = Vec::new();
    for (u, upload) in uploads.iter().enumerate() {
        for n in 1..=upload.chunk_count() {
            requests.push((u, n, (u + n as usize) % 2));
        }
        for n in [1, upload.chunk_count()] {
            requests.push((u, n, (u + n as usize + 1) % 2));
        }
    }
    requests.shuffle(&mut rand::rng());
    let uploads = Arc::new(uploads);
    let statuses =
        futures_util::StreamExt::collect::<Vec<_>>(futures_util::StreamExt::buffer_unordered(
            futures_util::stream::iter(requests.into_iter().map(|(u, n, server)| {
                let (uploads, url) = (uploads.clone(), urls[server].clone());
                async move {
                    let mut upload = uploads[u].clone();
                    upload.url = url;
                    let response = upload.send(n).await;
                    (response.status().as_u16(), response.text().await.unwrap())
                }
            })),
            12,
        ))
        .await;
    for (status, body) in &statuses {
        assert_eq!(*status, 200, "{body}");
    }

    // Each upload is complete, asked of either server, with one token for both.
    let s3 = test_bucket(&endpoint);
    let mut tokens = Vec::new();
    for (u, upload) in uploads.iter().enumerate() {
        let mut answers = Vec::new();
        for url in &urls {
            let mut upload = upload.clone();
            upload.url = url.clone();
            let (status, body) = upload.test(1).await;
            assert_eq!(status, 200, "{body}");
            answers.push(serde_json::from_str::<serde_json::Value>(&body).unwrap());
        }
        assert_eq!(answers[0]["complete"], true, "upload {u}: {}", answers[0]);
        assert_eq!(answers[0]["token"], answers[1]["token"]);
        tokens.push(answers[0]["token"].as_str().unwrap().to_owned());
        // The token is `<upload key>.<signature>`.
        let key = tokens[u].split('.').next().unwrap().to_owned();
        let assembled = format!("{prefix}/complete/{key}");
        assert_eq!(
            object_sha256(&s3, &assembled).await,
            sha256(&upload.data),
            "upload {u}"
        );
    }

    // Exactly once: one "upload complete" per upload in the two servers' logs together.
    let logged = format!(
        "{}{}",
        std::fs::read_to_string(&logs[0]).unwrap(),
        std::fs::read_to_string(&logs[1]).unwrap()
    );
    for (u, token) in tokens.iter().enumerate() {
        let key = token.split('.').next().unwrap();
        let completions = logged
            .lines()
            .filter(|line| line.contains("upload complete") && line.contains(&key.to_string()))
            .count();
        assert_eq!(
            completions, 1,
            "upload {u} ({key}) completed {completions} times"
        );
    }
    let in_a = logged_completions(&logs[0]);
    assert!(
        in_a > 0 && in_a < 20,
        "both servers completed uploads ({in_a} of 20 on A)"
    );

    // Saves through either server; each page, asked of the other server, names an object
    // holding the upload's bytes; the token is spent for both.
    for (u, upload) in uploads.iter().enumerate() {
        let (saver, other) = (browser.at(&urls[u % 2]), browser.at(&urls[1 - u % 2]));
        let created = saver.post_document(&format!("doc {u}"), &tokens[u]).await;
        assert_eq!(created.status(), 303, "{}", created.text().await.unwrap());
        let location = created.headers()["location"].to_str().unwrap().to_owned();
        let page = other.get(&location).await.text().await.unwrap();
        let path = element(&page, "path");
        assert!(
            path.starts_with("documents/") && path.contains(&format!("file_{u}")),
            "{path}"
        );
        assert_eq!(
            element(&page, "size"),
            format!("{} bytes", upload.data.len())
        );
        assert_eq!(
            object_sha256(&s3, &path).await,
            sha256(&upload.data),
            "{path}"
        );
        let again = other.post_document("again", &tokens[u]).await;
        assert_eq!(again.status(), 422, "a saved upload cannot be saved twice");
        if u < 2 {
            // The file link sends the browser to a presigned URL on the store.
            let media = other.get(&format!("/media/{path}")).await;
            assert_eq!(media.status(), 307);
            let signed = media.headers()["location"].to_str().unwrap().to_owned();
            assert!(signed.starts_with(&endpoint), "{signed}");
            let bytes = reqwest::get(&signed).await.unwrap().bytes().await.unwrap();
            assert_eq!(sha256(&bytes), sha256(&upload.data));
        }
    }

    // Saved uploads leave nothing behind: no chunk or assembled objects, no ledger rows,
    // nothing in either media root.
    let left = objects_under(&s3, &prefix).await;
    assert!(left.is_empty(), "{left:?}");
    let db = sea_orm::Database::connect(&database.url).await.unwrap();
    for table in ["resumable_upload", "resumable_chunk", "resumable_save"] {
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                format!("SELECT COUNT(*) AS n FROM {table}"),
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get::<i64>("", "n").unwrap(), 0, "{table}");
    }
    db.close().await.unwrap();
    for media in ["a/media", "b/media"] {
        let files: Vec<_> = walk(&root.path().join(media));
        assert!(files.is_empty(), "{media}: {files:?}");
    }
    interrupt(server_a);
    interrupt(server_b);
    database.drop_database().await;
}

fn logged_completions(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|line| line.contains("upload complete"))
        .count()
}

/// Every file under `dir` (none if it does not exist).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}
