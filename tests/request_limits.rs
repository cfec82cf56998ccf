//! What one chunk request may cost the server, whatever the client sends before its
//! chunk: few and short form fields, a bounded preamble, and a deadline for every byte
//! of the body from its first (issue 14).

mod common;

use common::*;
use sea_orm_resumable::Settings;
use std::time::{Duration, Instant};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Sends chunk 1 of `upload` as multipart, its parameters and `extra` fields first, then
/// the chunk; the answer's status and body.
async fn post_with_fields(upload: &FileUpload, extra: Vec<(String, String)>) -> (u16, String) {
    let mut form = reqwest::multipart::Form::new();
    for (name, value) in upload.params(1).into_iter().chain(extra) {
        form = form.text(name, value);
    }
    let chunk = reqwest::multipart::Part::bytes(upload.data.to_vec()).file_name("blob");
    let response = upload
        .http
        .post(&upload.url)
        .multipart(form.part("file", chunk))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// A server whose bodies may be silent for 1 s.
async fn quick_server(media: &std::path::Path) -> TestServer {
    let settings = Settings {
        body_idle_timeout: Duration::from_secs(1),
        ..settings(media)
    };
    TestServer::start_with(settings).await
}

#[tokio::test]
async fn many_form_fields_before_the_chunk_are_refused() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start(media.path()).await;
    let upload = FileUpload::new(&server.url, b"hello".to_vec(), 1024);
    let fields = (0..100).map(|i| (format!("custom{i}"), "x".into()));
    let (status, body) = post_with_fields(&upload, fields.collect()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("too many form fields before the chunk (at most 64)"),
        "{body}"
    );
    assert_eq!(upload.test(1).await.0, 204, "nothing stored");
}

#[tokio::test]
async fn long_form_fields_before_the_chunk_are_refused_past_16_kib_in_all() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start(media.path()).await;
    let upload = FileUpload::new(&server.url, b"hello".to_vec(), 1024);
    // Each field is under the old per-field limit (64 KiB); together they are not.
    let fields = (0..3).map(|i| (format!("custom{i}"), "x".repeat(6000)));
    let (status, body) = post_with_fields(&upload, fields.collect()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("form fields before the chunk are too long"),
        "{body}"
    );
    // What resumable.js sends, with a few custom fields, goes through.
    let fields = (0..8).map(|i| (format!("custom{i}"), "y".repeat(500)));
    assert_eq!(post_with_fields(&upload, fields.collect()).await.0, 200);
}

#[tokio::test]
async fn a_preamble_that_never_reaches_a_part_is_refused_after_64_kib() {
    let media = tempfile::tempdir().unwrap();
    let server = quick_server(media.path()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = "POST /resumable_upload/ HTTP/1.1\r\nHost: x\r\n\
                Content-Type: multipart/form-data; boundary=XyZ\r\n\
                Content-Length: 10000000\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    // No boundary at all: junk the multipart reader would keep looking through.
    let junk = vec![b'j'; 64 * 1024];
    let started = Instant::now();
    let mut sent = 0;
    while sent < 8 << 20 {
        if stream.write_all(&junk).await.is_err() {
            break;
        }
        sent += junk.len();
        if started.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    assert!(sent < 8 << 20, "the server kept reading: {sent} bytes");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_multipart_body_that_stalls_before_its_chunk_is_cut_off_after_the_idle_timeout() {
    let media = tempfile::tempdir().unwrap();
    let server = quick_server(media.path()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = "POST /resumable_upload/ HTTP/1.1\r\nHost: x\r\n\
                Content-Type: multipart/form-data; boundary=XyZ\r\n\
                Content-Length: 100000\r\n\r\n\
                --XyZ\r\nContent-Disposition: form-data; name=\"resumableChunkNumber\"\r\n\r\n1";
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "still open after 5 s: no deadline before the chunk"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
}

#[tokio::test]
async fn a_form_field_trickled_a_byte_at_a_time_is_cut_off_after_the_grace() {
    let media = tempfile::tempdir().unwrap();
    let server = quick_server(media.path()).await; // and the default 1 KiB/s minimum
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = "POST /resumable_upload/ HTTP/1.1\r\nHost: x\r\n\
                Content-Type: multipart/form-data; boundary=XyZ\r\n\
                Content-Length: 100000\r\n\r\n\
                --XyZ\r\nContent-Disposition: form-data; name=\"resumableIdentifier\"\r\n\r\n";
    write.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    // A byte every 300 ms: never silent for the 1 s idle timeout.
    tokio::spawn(async move {
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if write.write_all(b"a").await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let done = tokio::time::timeout(Duration::from_secs(6), read.read_to_end(&mut answer)).await;
    assert!(done.is_ok(), "still open after 6 s");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "{took:?}");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("more slowly than 1024 bytes per second"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_chunk_that_stalls_through_the_endpoint_gets_503_so_the_client_retries() {
    let media = tempfile::tempdir().unwrap();
    let server = quick_server(media.path()).await;
    for multipart in [false, true] {
        let upload = FileUpload::new(&server.url, random_bytes(100_000, 1), 100_000);
        let query: String = upload
            .params(1)
            .iter()
            .map(|(k, v)| format!("{k}={}&", v.replace(' ', "%20")))
            .collect();
        let (content_type, head) = if multipart {
            (
                "multipart/form-data; boundary=XyZ",
                "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b\"\r\n\r\n",
            )
        } else {
            ("application/octet-stream", "")
        };
        let request = format!(
            "POST /resumable_upload/?{query} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\n\r\n{head}",
            100_000 + head.len() + 10
        );
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        stream.write_all(&upload.data[..50_000]).await.unwrap();
        let mut answer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "multipart={multipart}: still open");
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 503"),
            "multipart={multipart}: {answer}"
        );
        assert!(answer.contains("stalled"), "{answer}");
        assert_eq!(upload.test(1).await.0, 204, "nothing recorded");
    }
}
