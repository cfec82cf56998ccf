//! Many clients at once: 50 uploads over HTTP, each with 4 chunks in flight in shuffled
//! order, some users sharing identifiers; every file complete once and byte-identical.

mod common;

use common::*;
use rand::seq::SliceRandom;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_uploads_with_four_chunks_in_flight_each_are_all_intact() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start(media.path()).await;
    let mut tasks = Vec::new();
    for i in 0..50u64 {
        let mut upload = FileUpload::new(
            &server.url,
            random_bytes(300_000 + i as usize * 977, i),
            16 * 1024,
        );
        // Ten users; two uploads of each user share the identifier of another user's.
        upload.user = Some(format!("user{}", i % 10));
        upload.identifier = format!("shared-{}", i / 10);
        tasks.push(tokio::spawn(async move {
            let mut order: Vec<u64> = (1..=upload.chunk_count()).collect();
            order.shuffle(&mut rand::rng());
            upload.send_all(order, 4).await;
            upload
        }));
    }
    let mut uploads = Vec::new();
    for task in tasks {
        uploads.push(task.await.unwrap());
    }
    for upload in &uploads {
        upload.assert_stored(media.path());
    }
    assert_eq!(
        server.completed().len(),
        50,
        "each upload completed exactly once"
    );
    server.stop().await;
}
