//! Completion happens exactly once, however the last chunks race.

mod common;

use common::*;
use sea_orm_resumable::Settings;
use std::collections::HashSet;

#[tokio::test]
async fn the_last_chunks_race_completes_each_upload_exactly_once_200_times() {
    const RUNS: usize = 200;
    const CHUNK: u64 = 4096;
    let media = tempfile::tempdir().unwrap();
    // 200 complete uploads of one user, none saved: more than the default per-user limit.
    let settings = Settings {
        max_open_uploads: RUNS as u64,
        ..settings(media.path())
    };
    let server = TestServer::start_with(settings).await;
    let http = reqwest::Client::new();
    for run in 0..RUNS {
        let mut upload = FileUpload::new(
            &server.url,
            random_bytes(5 * CHUNK as usize + 100, run as u64),
            CHUNK,
        );
        upload.http = http.clone();
        let last = upload.chunk_count();
        for n in 1..last - 2 {
            upload.send_ok(n).await;
        }
        // The last three chunks, each sent twice, all at once.
        let racing = (last - 2..=last).flat_map(|n| [n, n]).map(|n| {
            let upload = upload.clone();
            tokio::spawn(async move { upload.send_ok(n).await })
        });
        let answers = futures_util::future::join_all(racing).await;
        let complete = answers
            .into_iter()
            .filter(|a| a.as_ref().unwrap()["complete"] == true)
            .count();
        assert!(complete >= 1, "run {run}: no answer said complete");
        assert_eq!(
            sha256_file(&upload.stored_path(media.path())),
            sha256(&upload.data),
            "run {run}"
        );
        assert_eq!(server.completed().len(), run + 1, "run {run}: completions");
    }
    let keys: HashSet<_> = server.completed().iter().map(|c| c.key).collect();
    assert_eq!(keys.len(), RUNS, "each upload completed once");
}
