//! A chunk counts only when all its announced bytes arrive.

mod common;

use common::*;
use tokio::io::AsyncWriteExt;

const CHUNK: u64 = 256 * 1024;

/// Sends a request head announcing `content_length` bytes, then only `bytes`, and returns
/// the open connection (drop it to cut the body off; keep it to stall).
async fn send_partial(
    server: &TestServer,
    path_and_query: &str,
    content_type: &str,
    content_length: usize,
    bytes: &[u8],
) -> tokio::net::TcpStream {
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST {path_and_query} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {content_length}\r\n\r\n",
        server.addr
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(bytes).await.unwrap();
    socket.flush().await.unwrap();
    socket
}

/// Sends part of a body, gives the server time to start writing it, then vanishes.
async fn send_cut_off(
    server: &TestServer,
    path_and_query: &str,
    content_type: &str,
    content_length: usize,
    bytes: &[u8],
) {
    let socket = send_partial(server, path_and_query, content_type, content_length, bytes).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    drop(socket);
}

fn query(upload: &FileUpload, n: u64) -> String {
    let pairs: Vec<String> = upload
        .params(n)
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
            )
        })
        .collect();
    format!("/resumable_upload/?{}", pairs.join("&"))
}

#[tokio::test]
async fn a_cut_off_octet_body_records_nothing_and_the_retry_succeeds() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start(media.path()).await;
    let mut upload = FileUpload::new(&server.url, random_bytes(2 * CHUNK as usize, 1), CHUNK);
    upload.body = Body::Octet;
    let chunk = &upload.data[upload.range(1)];
    send_cut_off(
        &server,
        &query(&upload, 1),
        "application/octet-stream",
        chunk.len(),
        &chunk[..chunk.len() / 2],
    )
    .await;
    assert_eq!(
        upload.test(1).await.0,
        204,
        "the cut-off chunk is not recorded"
    );
    upload.send_ok(1).await;
    upload.send_ok(2).await;
    upload.assert_stored(media.path());
}

#[tokio::test]
async fn a_cut_off_multipart_body_records_nothing_and_the_retry_succeeds() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start(media.path()).await;
    let upload = FileUpload::new(&server.url, random_bytes(2 * CHUNK as usize, 2), CHUNK);
    let chunk = &upload.data[upload.range(2)];
    let mut body = Vec::new();
    for (k, v) in upload.params(2) {
        body.extend(
            format!("--XYZ\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").bytes(),
        );
    }
    body.extend(b"--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"blob\"\r\nContent-Type: application/octet-stream\r\n\r\n");
    let full_length = body.len() + chunk.len() + b"\r\n--XYZ--\r\n".len();
    body.extend_from_slice(&chunk[..chunk.len() - 1000]);
    send_cut_off(
        &server,
        "/resumable_upload/",
        "multipart/form-data; boundary=XYZ",
        full_length,
        &body,
    )
    .await;
    assert_eq!(
        upload.test(2).await.0,
        204,
        "the cut-off chunk is not recorded"
    );
    upload.send_ok(2).await;
    upload.send_ok(1).await;
    upload.assert_stored(media.path());
}

#[tokio::test]
async fn a_body_shorter_than_current_chunk_size_is_refused() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start(media.path()).await;
    for body in [Body::Multipart, Body::Octet] {
        let mut upload = FileUpload::new(&server.url, random_bytes(2 * CHUNK as usize, 3), CHUNK);
        upload.body = body;
        let short = upload.data[..CHUNK as usize - 1].to_vec();
        let response = upload.send_raw(&upload.params(1), short).await;
        assert_eq!(response.status(), 400, "{body:?}");
        let error: serde_json::Value = response.json().await.unwrap();
        assert!(
            error["error"].as_str().unwrap().contains("expected"),
            "{error}"
        );
        assert_eq!(upload.test(1).await.0, 204, "{body:?}: nothing recorded");
    }
}

#[tokio::test]
async fn a_body_longer_than_current_chunk_size_is_refused() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start(media.path()).await;
    for body in [Body::Multipart, Body::Octet] {
        let mut upload = FileUpload::new(&server.url, random_bytes(2 * CHUNK as usize, 4), CHUNK);
        upload.body = body;
        let long = upload.data[..CHUNK as usize + 1].to_vec();
        let response = upload.send_raw(&upload.params(1), long).await;
        assert_eq!(response.status(), 400, "{body:?}");
        assert_eq!(upload.test(1).await.0, 204, "{body:?}: nothing recorded");
        // Nothing was written past the chunk's end: chunk 2 then 1 still give the file.
        upload.send_ok(2).await;
        upload.send_ok(1).await;
        upload.assert_stored(media.path());
    }
}

#[tokio::test]
async fn a_stalled_body_is_given_up_and_its_chunk_freed_for_the_retry() {
    let media = tempfile::tempdir().unwrap();
    let idle = std::time::Duration::from_millis(400);
    let server = TestServer::start_with(sea_orm_resumable::Settings {
        body_idle_timeout: idle,
        ..settings(media.path())
    })
    .await;
    let mut upload = FileUpload::new(&server.url, random_bytes(2 * CHUNK as usize, 5), CHUNK);
    upload.body = Body::Octet;
    let chunk = upload.data[upload.range(1)].to_vec();
    let _silent = send_partial(
        &server,
        &query(&upload, 1),
        "application/octet-stream",
        chunk.len(),
        &chunk[..1000],
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // The retry waits for the silent writer to be cut off, then stores the chunk.
    let started = std::time::Instant::now();
    upload.send_ok(1).await;
    assert!(
        started.elapsed() >= idle / 2,
        "the retry waited for the stalled writer"
    );
    upload.send_ok(2).await;
    upload.assert_stored(media.path());
}

#[tokio::test]
async fn a_body_trickling_below_the_minimum_rate_is_cut_off_and_the_retry_stores_it() {
    let media = tempfile::tempdir().unwrap();
    let settings = sea_orm_resumable::Settings {
        body_idle_timeout: std::time::Duration::from_millis(300),
        min_body_rate: 1000,
        ..settings(media.path())
    };
    let uploads = sea_orm_resumable::Uploads::builder(settings, secret())
        .build()
        .await
        .unwrap();
    let params = sea_orm_resumable::ChunkParams {
        chunk_number: 1,
        chunk_size: 2000,
        current_chunk_size: 2000,
        total_size: 2000,
        identifier: "trickle".into(),
        filename: "t.bin".into(),
        relative_path: None,
        content_type: None,
        file_part: "file".into(),
        field: None,
    };
    // 100 bytes every 200 ms: never idle for 300 ms, but only 500 bytes/s.
    let trickle = futures_util::stream::unfold(0, |sent| async move {
        (sent < 20).then_some(())?;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        Some((
            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![5u8; 100])),
            sent + 1,
        ))
    });
    let scope = sea_orm_resumable::Scope::anonymous();
    let started = std::time::Instant::now();
    let error = uploads
        .receive_chunk(&scope, &params, trickle)
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(
        error.status(),
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("more slowly than 1000 bytes per second"),
        "{error}"
    );
    // At t, (t - 0.3 s) × 1000 B/s must be in: 100 bytes by 0.2 s cover until 0.4 s,
    // 200 by 0.4 s until 0.5 s, and the next 100 come at 0.6 s: cut at 0.4–0.5 s. (It
    // used to get 0.3 s + 2000 B at 1000 B/s = 2.3 s.)
    assert!(
        took >= std::time::Duration::from_millis(350)
            && took < std::time::Duration::from_millis(1500),
        "{took:?}"
    );
    assert!(
        uploads.test_chunk(&scope, &params).await.unwrap().is_none(),
        "nothing recorded"
    );

    let whole =
        futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(vec![5u8; 2000]))]);
    assert!(
        uploads
            .receive_chunk(&scope, &params, whole)
            .await
            .unwrap()
            .complete
    );
}

#[tokio::test]
async fn a_refused_request_trickling_its_body_is_answered_within_the_idle_timeout_in_all() {
    let media = tempfile::tempdir().unwrap();
    let settings = sea_orm_resumable::Settings {
        body_idle_timeout: std::time::Duration::from_millis(300),
        ..settings(media.path())
    };
    let uploads = sea_orm_resumable::Uploads::builder(settings, secret())
        .build()
        .await
        .unwrap();
    // 10 bytes every 100 ms for 3 s: never idle, never done.
    let trickle = futures_util::stream::unfold(0, |sent| async move {
        (sent < 30).then_some(())?;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        Some((
            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![1u8; 10])),
            sent + 1,
        ))
    });
    let request = axum::http::Request::post("/resumable_upload/")
        .body(axum::body::Body::from_stream(trickle))
        .unwrap();
    let started = std::time::Instant::now();
    let refusal = (axum::http::StatusCode::UNAUTHORIZED, "log in first");
    let response = uploads.refuse(request, refusal).await;
    let took = started.elapsed();
    assert_eq!(response.status(), 401);
    assert!(
        took >= std::time::Duration::from_millis(250)
            && took < std::time::Duration::from_millis(1000),
        "the refusal waited {took:?} for a body that kept coming"
    );
}

#[tokio::test]
async fn a_duplicate_chunk_arriving_at_an_allowed_rate_is_read_to_its_end() {
    let media = tempfile::tempdir().unwrap();
    let settings = sea_orm_resumable::Settings {
        body_idle_timeout: std::time::Duration::from_millis(300),
        min_body_rate: 1000,
        ..settings(media.path())
    };
    let uploads = sea_orm_resumable::Uploads::builder(settings, secret())
        .build()
        .await
        .unwrap();
    let params = sea_orm_resumable::ChunkParams {
        chunk_number: 1,
        chunk_size: 2000,
        current_chunk_size: 2000,
        total_size: 4000,
        identifier: "duplicate".into(),
        filename: "d.bin".into(),
        relative_path: None,
        content_type: None,
        file_part: "file".into(),
        field: None,
    };
    let scope = sea_orm_resumable::Scope::anonymous();
    let whole =
        futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(vec![5u8; 2000]))]);
    uploads.receive_chunk(&scope, &params, whole).await.unwrap();
    // The same chunk again, 100 bytes every 50 ms: 1 s in all, over three idle timeouts
    // but at 2000 B/s, within what a chunk written for the first time is allowed.
    let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = read.clone();
    let again = futures_util::stream::unfold(0, move |sent| {
        let counter = counter.clone();
        async move {
            (sent < 20).then_some(())?;
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            counter.fetch_add(100, std::sync::atomic::Ordering::SeqCst);
            Some((
                Ok::<_, std::io::Error>(bytes::Bytes::from(vec![5u8; 100])),
                sent + 1,
            ))
        }
    });
    let status = uploads.receive_chunk(&scope, &params, again).await.unwrap();
    assert!(!status.complete);
    assert_eq!(
        read.load(std::sync::atomic::Ordering::SeqCst),
        2000,
        "the whole body was read, so the client gets the answer rather than a reset"
    );
}
