//! Bad input gets 400, 404 or 415 with a one-line JSON reason: never a 5xx, a panic or a
//! file outside the chunk directory. One row per case.

mod common;

use common::*;

const CHUNK: u64 = 1024;
const TOTAL: usize = 4 * CHUNK as usize + 100;

/// A case: a name, how to change chunk 1's parameters, and the status expected.
struct Case {
    name: &'static str,
    change: fn(&mut Vec<(String, String)>),
    status: u16,
}

fn set(params: &mut Vec<(String, String)>, key: &str, value: &str) {
    params.retain(|(k, _)| k != key);
    params.push((key.into(), value.into()));
}

fn remove(params: &mut Vec<(String, String)>, key: &str) {
    params.retain(|(k, _)| k != key);
}

const CASES: &[Case] = &[
    Case {
        name: "no parameters at all",
        change: |p| p.clear(),
        status: 400,
    },
    Case {
        name: "missing chunk size",
        change: |p| remove(p, "resumableChunkSize"),
        status: 400,
    },
    Case {
        name: "missing total size",
        change: |p| remove(p, "resumableTotalSize"),
        status: 400,
    },
    Case {
        name: "missing identifier",
        change: |p| remove(p, "resumableIdentifier"),
        status: 400,
    },
    Case {
        name: "missing file name",
        change: |p| remove(p, "resumableFilename"),
        status: 400,
    },
    Case {
        name: "non-numeric chunk number",
        change: |p| set(p, "resumableChunkNumber", "one"),
        status: 400,
    },
    Case {
        name: "negative chunk number",
        change: |p| set(p, "resumableChunkNumber", "-1"),
        status: 400,
    },
    Case {
        name: "negative total size",
        change: |p| set(p, "resumableTotalSize", "-4196"),
        status: 400,
    },
    Case {
        name: "fractional chunk size",
        change: |p| set(p, "resumableChunkSize", "1024.5"),
        status: 400,
    },
    Case {
        name: "overflowing total size",
        change: |p| set(p, "resumableTotalSize", "184467440737095516160"),
        status: 400,
    },
    Case {
        name: "overflowing chunk number",
        change: |p| set(p, "resumableChunkNumber", "99999999999999999999"),
        status: 400,
    },
    Case {
        name: "chunk number 0",
        change: |p| set(p, "resumableChunkNumber", "0"),
        status: 400,
    },
    Case {
        name: "chunk number past the last",
        change: |p| set(p, "resumableChunkNumber", "6"),
        status: 400,
    },
    Case {
        name: "chunk size 0",
        change: |p| set(p, "resumableChunkSize", "0"),
        status: 400,
    },
    Case {
        name: "chunk size fitting neither layout",
        change: |p| set(p, "resumableCurrentChunkSize", "1000"),
        status: 400,
    },
    Case {
        name: "total size over the maximum",
        change: |p| set(p, "resumableTotalSize", "1000000000000000"),
        status: 400,
    },
    Case {
        name: "chunk size over the maximum",
        change: |p| set(p, "resumableChunkSize", "1000000000000"),
        status: 400,
    },
    Case {
        name: "too many chunks for the file",
        change: |p| {
            set(p, "resumableChunkSize", "1");
            set(p, "resumableCurrentChunkSize", "1");
            set(p, "resumableTotalSize", "100000000")
        },
        status: 400,
    },
    Case {
        name: "empty identifier",
        change: |p| set(p, "resumableIdentifier", ""),
        status: 400,
    },
    Case {
        name: "over-long identifier",
        change: |p| set(p, "resumableIdentifier", &"i".repeat(256)),
        status: 400,
    },
    Case {
        name: "10 kB identifier",
        change: |p| set(p, "resumableIdentifier", &"i".repeat(10_000)),
        status: 400,
    },
    Case {
        name: "identifier with NUL",
        change: |p| set(p, "resumableIdentifier", "a\0b"),
        status: 400,
    },
    Case {
        name: "identifier with a control character",
        change: |p| set(p, "resumableIdentifier", "a\x1bb"),
        status: 400,
    },
    Case {
        name: "empty file name",
        change: |p| set(p, "resumableFilename", ""),
        status: 400,
    },
    Case {
        name: "over-long file name",
        change: |p| set(p, "resumableFilename", &"é".repeat(128)),
        status: 400,
    },
    Case {
        name: "file name with NUL",
        change: |p| set(p, "resumableFilename", "x\0.txt"),
        status: 400,
    },
    Case {
        name: "file name with a newline",
        change: |p| set(p, "resumableFilename", "x\n.txt"),
        status: 400,
    },
    Case {
        name: "relative path with NUL",
        change: |p| set(p, "resumableRelativePath", "a/\0"),
        status: 400,
    },
    Case {
        name: "traversal file name, kept as metadata",
        change: |p| set(p, "resumableFilename", "../../etc/passwd"),
        status: 200,
    },
    Case {
        name: "Windows path file name, kept as metadata",
        change: |p| set(p, "resumableFilename", "C:\\x"),
        status: 200,
    },
    Case {
        name: "absolute path identifier, hashed",
        change: |p| set(p, "resumableIdentifier", "/etc/passwd"),
        status: 200,
    },
];

async fn check_error(response: reqwest::Response, expected: u16, what: &str) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(status, expected, "{what}: {text}");
    if expected != 200 {
        let body: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: not JSON: {text}"));
        let message = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: {text}"));
        assert!(
            !message.is_empty() && !message.contains('\n'),
            "{what}: {message:?}"
        );
    }
}

fn assert_only_chunk_files(media: &std::path::Path) {
    for file in files_under(media) {
        let name = file
            .strip_prefix("resumable_chunks")
            .expect("outside the chunk directory");
        let name = name.to_str().unwrap();
        assert!(!name.contains('/'), "{name}");
        assert_eq!(name.split_once('.').unwrap().0.len(), 32, "{name}");
    }
}

#[tokio::test]
async fn each_bad_parameter_is_refused_with_a_reason_in_upload_and_test_requests() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(sea_orm_resumable::Settings {
        max_file_size: 1 << 30,
        max_chunk_size: 1 << 20,
        max_chunks: 10_000,
        ..settings(media.path())
    })
    .await;
    for body in [Body::Multipart, Body::Octet] {
        for case in CASES {
            let mut upload = FileUpload::new(&server.url, random_bytes(TOTAL, 1), CHUNK);
            upload.body = body;
            let mut params = upload.params(1);
            (case.change)(&mut params);
            let what = format!("{} ({body:?})", case.name);
            let bytes = upload.data[upload.range(1)].to_vec();
            check_error(upload.send_raw(&params, bytes).await, case.status, &what).await;
            let test = upload
                .http
                .get(&server.url)
                .query(&params)
                .send()
                .await
                .unwrap();
            let expected = if case.status == 200 { 200 } else { case.status };
            check_error(test, expected, &format!("test request: {what}")).await;
        }
    }
    assert_only_chunk_files(media.path());
}

#[tokio::test]
async fn sizes_that_disagree_with_earlier_chunks_are_refused() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start(media.path()).await;
    let upload = FileUpload::new(&server.url, random_bytes(TOTAL, 2), CHUNK);
    upload.send_ok(1).await;
    let bytes = upload.data[upload.range(2)].to_vec();

    let mut params = upload.params(2);
    set(
        &mut params,
        "resumableTotalSize",
        &(TOTAL + CHUNK as usize).to_string(),
    );
    check_error(
        upload.send_raw(&params, bytes.clone()).await,
        400,
        "other total size",
    )
    .await;

    let mut params = upload.params(2);
    set(&mut params, "resumableChunkSize", "2048");
    set(&mut params, "resumableChunkNumber", "1");
    set(&mut params, "resumableCurrentChunkSize", "2048");
    check_error(
        upload.send_raw(&params, upload.data[..2048].to_vec()).await,
        400,
        "other chunk size",
    )
    .await;
    upload.send_all(vec![2, 3, 4], 3).await;
    upload.assert_stored(media.path());
}

#[tokio::test]
async fn a_chunk_from_the_other_layout_is_refused() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start(media.path()).await;
    let mut upload = FileUpload::new(&server.url, random_bytes(TOTAL, 3), CHUNK);
    // Standard: chunk 4 holds the last 1124 bytes.
    upload.send_ok(4).await;
    upload.cut = Cut::Forced;
    // Forced would have a chunk 5 of 100 bytes: it contradicts the chunk 4 already in.
    check_error(
        upload.send(5).await,
        400,
        "forced chunk after a standard one",
    )
    .await;
    let (status, _) = upload.test(5).await;
    assert_eq!(status, 400);
    upload.cut = Cut::Standard;
    upload.send_all(vec![1, 2, 3], 3).await;
    upload.assert_stored(media.path());
}

/// A multipart form holding chunk 1's parameters and no file part yet.
fn form_with_params(upload: &FileUpload) -> reqwest::multipart::Form {
    upload
        .params(1)
        .into_iter()
        .fold(reqwest::multipart::Form::new(), |f, (k, v)| f.text(k, v))
}

/// Posts `form` to the endpoint.
async fn post_form(upload: &FileUpload, form: reqwest::multipart::Form) -> reqwest::Response {
    upload
        .http
        .post(&upload.url)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

/// Posts `body` with this content type.
async fn post_raw(
    upload: &FileUpload,
    content_type: &str,
    body: &'static str,
) -> reqwest::Response {
    let request = upload
        .http
        .post(&upload.url)
        .header("content-type", content_type);
    request.body(body).send().await.unwrap()
}

#[tokio::test]
async fn malformed_multipart_bodies_are_refused() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start(media.path()).await;
    let upload = FileUpload::new(&server.url, random_bytes(TOTAL, 4), CHUNK);

    check_error(
        post_form(&upload, form_with_params(&upload)).await,
        400,
        "no file part",
    )
    .await;

    let base64 =
        form_with_params(&upload).text("file", "data:application/octet-stream;base64,AAAA");
    check_error(post_form(&upload, base64).await, 415, "base64 chunk").await;

    let other_file = form_with_params(&upload).part(
        "upload",
        reqwest::multipart::Part::bytes(vec![0; 10]).file_name("x"),
    );
    check_error(
        post_form(&upload, other_file).await,
        400,
        "file part under another name",
    )
    .await;

    let bad_boundary = post_raw(&upload, "multipart/form-data", "garbage").await;
    check_error(bad_boundary, 400, "no boundary").await;

    let garbage = post_raw(
        &upload,
        "multipart/form-data; boundary=XYZ",
        "this is not multipart at all",
    )
    .await;
    check_error(garbage, 400, "garbage body").await;

    let huge_field =
        reqwest::multipart::Form::new().text("resumableChunkNumber", "1".repeat(100_000));
    check_error(post_form(&upload, huge_field).await, 400, "huge form field").await;
    assert_only_chunk_files(media.path());
}

#[tokio::test]
async fn a_body_far_over_the_chunk_limit_is_cut_off_early() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(sea_orm_resumable::Settings {
        max_chunk_size: 64 * 1024,
        ..settings(media.path())
    })
    .await;
    let upload = FileUpload::new(&server.url, random_bytes(64 * 1024, 5), 64 * 1024);
    // Announces 64 KiB, sends 8 MiB: refused without reading it all.
    let response = upload.send_raw(&upload.params(1), vec![7; 8 << 20]).await;
    assert_eq!(response.status(), 400);
    assert_eq!(upload.test(1).await.0, 204);
}
