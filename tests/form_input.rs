//! `FileInput`: the form side of a file field, checked against the field's limits.

mod common;

use axum::{
    Form,
    body::Body,
    extract::FromRequest,
    http::{Request, header},
};
use common::{secret, settings, upload_claiming, upload_direct};
use sea_orm_resumable::{FileFieldError, Scope, Uploads, form::FileInput};
use serde::Deserialize;

sea_orm_resumable::file_field! {
    /// Scans: PDF or images, up to 100 kB.
    struct Scans { max_size: 100_000, content_types: ["application/pdf", "image/*"] }
}
sea_orm_resumable::file_field! {
    /// Spreadsheets as text.
    struct Sheets { content_types: ["text/*"] }
}

const PDF: &[u8] = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0";

/// Why `token` does not make a valid input of a field with options `C`.
async fn refusal<C: sea_orm_resumable::field::FileFieldOptions>(
    uploads: &Uploads,
    scope: &Scope,
    token: &sea_orm_resumable::UploadToken,
) -> FileFieldError {
    FileInput::<C>::new(token.as_str())
        .clean(uploads, scope)
        .await
        .unwrap_err()
}

async fn service() -> (tempfile::TempDir, Uploads) {
    let media = tempfile::tempdir().unwrap();
    let uploads = Uploads::builder(settings(media.path()), secret())
        .build()
        .await
        .unwrap();
    (media, uploads)
}

#[derive(Deserialize)]
struct DocumentForm {
    #[allow(dead_code)]
    title: String,
    #[serde(default)]
    scan: FileInput<Scans>,
}

#[tokio::test]
async fn the_input_deserialises_from_an_axum_form_and_an_empty_one_is_empty() {
    for (body, empty) in [
        ("title=a&scan=", true),
        ("title=a", true),
        ("title=a&scan=+k.s+", false),
    ] {
        let request = Request::post("/")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        let Form(form) = Form::<DocumentForm>::from_request(request, &())
            .await
            .unwrap();
        assert_eq!(form.scan.is_empty(), empty, "{body}");
        if !empty {
            assert_eq!(form.scan.token(), "k.s", "trimmed");
        }
    }
}

#[tokio::test]
async fn an_empty_input_is_required_or_none() {
    let (_media, uploads) = service().await;
    let input = FileInput::<Scans>::default();
    let error = input
        .clean(&uploads, &Scope::anonymous())
        .await
        .unwrap_err();
    assert!(matches!(error, FileFieldError::Required));
    assert_eq!(error.to_string(), "please upload a file");
    assert!(
        input
            .clean_optional(&uploads, &Scope::anonymous())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn the_type_is_judged_from_the_bytes_not_from_the_browsers_claim() {
    let (_media, uploads) = service().await;
    let scope = Scope::anonymous();
    // PDF bytes the browser calls a PNG: accepted (PDF is allowed).
    let token = upload_claiming(&uploads, &scope, None, "a.png", Some("image/png"), PDF).await;
    let input = FileInput::<Scans>::new(token.as_str());
    assert!(input.clean(&uploads, &scope).await.is_ok());

    // An executable that claims to be a PDF: refused, with what it is.
    let exe = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0";
    let token = upload_claiming(
        &uploads,
        &scope,
        None,
        "x.pdf",
        Some("application/pdf"),
        exe,
    )
    .await;
    let error = refusal::<Scans>(&uploads, &scope, &token).await;
    assert_eq!(
        error.to_string(),
        "this file's content is application/vnd.microsoft.portable-executable, which is not \
         allowed here (allowed: application/pdf, image/*)"
    );

    // image/* covers any image.
    let token = upload_direct(&uploads, &scope, None, "p.png", PNG).await;
    assert!(
        FileInput::<Scans>::new(token.as_str())
            .clean(&uploads, &scope)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn text_fields_take_utf8_text_and_refuse_binary() {
    let (_media, uploads) = service().await;
    let scope = Scope::anonymous();
    let csv = "name,size\nÄrger,1\n".as_bytes();
    let token = upload_direct(&uploads, &scope, None, "s.csv", csv).await;
    assert!(
        FileInput::<Sheets>::new(token.as_str())
            .clean(&uploads, &scope)
            .await
            .is_ok()
    );
    let token = upload_direct(&uploads, &scope, None, "s.csv", &[0, 1, 2, 250, 251]).await;
    let error = refusal::<Sheets>(&uploads, &scope, &token).await;
    assert!(
        matches!(error, FileFieldError::ContentType { ref found, .. } if found == "application/octet-stream")
    );
}

#[tokio::test]
async fn a_file_over_the_fields_size_is_refused() {
    let (_media, uploads) = service().await;
    let scope = Scope::anonymous();
    let mut big = PDF.to_vec();
    big.resize(100_001, b' ');
    let token = upload_direct(&uploads, &scope, None, "big.pdf", &big).await;
    let error = refusal::<Scans>(&uploads, &scope, &token).await;
    assert_eq!(
        error.to_string(),
        "the file is too large (100001 bytes; at most 100000 bytes are allowed)"
    );
}

#[tokio::test]
async fn another_users_token_is_refused_and_shows_no_status() {
    let (_media, uploads) = service().await;
    let alice = Scope::new("alice");
    let token = upload_direct(&uploads, &alice, None, "a.pdf", PDF).await;
    let input = FileInput::<Scans>::new(token.as_str());
    let bob = Scope::new("bob");
    assert!(matches!(
        input.clean(&uploads, &bob).await,
        Err(FileFieldError::Token(_))
    ));
    assert!(input.status(&uploads, &bob).await.is_none());

    let status = input.status(&uploads, &alice).await.unwrap();
    assert!(status.complete);
    assert_eq!(
        (status.file_name.as_str(), status.size),
        ("a.pdf", PDF.len() as u64)
    );
}

/// A file of `len` bytes starting with `head`, the rest text.
fn file_starting_with(head: &[u8], len: usize) -> Vec<u8> {
    let mut data = head.to_vec();
    data.resize(len, b'x');
    data
}

#[tokio::test]
async fn the_endpoint_refuses_a_registered_fields_wrong_type_at_the_first_chunk_and_oversize_at_once()
 {
    let media = tempfile::tempdir().unwrap();
    let server = common::TestServer::start_configured(settings(media.path()), |builder| {
        builder.field::<Scans>("scan")
    })
    .await;
    let chunk = 20_000;
    let upload = |data: Vec<u8>| {
        let mut upload = common::FileUpload::new(&server.url, data, chunk);
        upload.field = Some("scan".into());
        upload
    };

    // An executable: chunks 2..4 are stored, chunk 1 shows the type and is refused with
    // 415 (final for both clients); the upload can never complete.
    let exe = upload(file_starting_with(
        b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff",
        80_000,
    ));
    exe.send_all(vec![2, 3, 4], 3).await;
    let refused = exe.send(1).await;
    assert_eq!(refused.status(), 415);
    let body: serde_json::Value = refused.json().await.unwrap();
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("does not take application/vnd.microsoft.portable-executable")
            && message.contains("application/pdf, image/*"),
        "{message}"
    );
    assert_eq!(exe.test(1).await.0, 204, "chunk 1 was not recorded");
    assert!(server.completed().is_empty());

    // Over the field's 100 kB: refused before anything is stored, test requests too.
    let big = upload(file_starting_with(PDF, 150_000));
    assert_eq!(big.test(1).await.0, 400);
    let response = big.send(2).await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body["error"],
        "the file is larger than this field allows (100000 bytes)"
    );

    // A PDF in chunks, first chunk last: accepted, and the form takes it.
    let pdf = upload(file_starting_with(PDF, 90_000));
    pdf.send_all(vec![4, 2, 3, 1], 2).await;
    let token = &server.completed()[0].token;
    let scope = Scope::anonymous();
    let file = FileInput::<Scans>::new(token.as_str())
        .clean(&server.uploads, &scope)
        .await;
    assert!(file.is_ok(), "{:?}", file.err());

    // The same executable without naming the field: the endpoint has no rule for it (the
    // form still refuses it).
    let mut unnamed = upload(file_starting_with(
        b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff",
        80_000,
    ));
    unnamed.field = None;
    unnamed.send_all(vec![1, 2, 3, 4], 2).await;
    let token = server.completed()[1].token.clone();
    let refused = refusal::<Scans>(&server.uploads, &scope, &token).await;
    assert!(
        matches!(refused, FileFieldError::ContentType { .. }),
        "{refused}"
    );
    server.stop().await;
}
