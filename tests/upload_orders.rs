//! The stored file equals the source whatever order, parallelism and layout the chunks come in.

mod common;

use common::*;
use rand::seq::SliceRandom;
use sea_orm_resumable::{Scope, UploadKey};

const CHUNK: u64 = 64 * 1024;

async fn check_stored(server: &TestServer, media: &std::path::Path, upload: &FileUpload) {
    let stored = upload.stored_path(media);
    assert_eq!(sha256_file(&stored), sha256(&upload.data), "{stored:?}");
    let done = server.completed();
    assert_eq!(done.len(), 1, "completed exactly once");
    assert_eq!(done[0].path, stored);
    assert_eq!(done[0].meta.file_name, upload.filename);
}

#[tokio::test]
async fn sequential_chunks_store_the_file() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start(media.path()).await;
    let upload = FileUpload::new(
        &server.url,
        random_bytes(10 * CHUNK as usize + 1234, 1),
        CHUNK,
    );
    let mut last = serde_json::Value::Null;
    for n in 1..=upload.chunk_count() {
        last = upload.send_ok(n).await;
        assert_eq!(last["chunks_received"], n);
    }
    assert_eq!(last["complete"], true);
    assert_eq!(last["total_chunks"], upload.chunk_count());
    check_stored(&server, media.path(), &upload).await;
}

#[tokio::test]
async fn eight_parallel_requests_in_shuffled_order_store_the_file() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start(media.path()).await;
    let upload = FileUpload::new(
        &server.url,
        random_bytes(40 * CHUNK as usize + 999, 2),
        CHUNK,
    );
    let mut order: Vec<u64> = (1..=upload.chunk_count()).collect();
    order.shuffle(&mut rand::rng());
    upload.send_all(order, 8).await;
    check_stored(&server, media.path(), &upload).await;
}

#[tokio::test]
async fn every_chunk_sent_twice_at_once_stores_the_file() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start(media.path()).await;
    let upload = FileUpload::new(
        &server.url,
        random_bytes(12 * CHUNK as usize + 77, 3),
        CHUNK,
    );
    let order: Vec<u64> = (1..=upload.chunk_count()).flat_map(|n| [n, n]).collect();
    upload.send_all(order, 8).await;
    check_stored(&server, media.path(), &upload).await;
}

#[tokio::test]
async fn first_and_last_chunk_first_stores_the_file() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start(media.path()).await;
    let upload = FileUpload::new(&server.url, random_bytes(9 * CHUNK as usize + 5, 4), CHUNK);
    let last = upload.chunk_count();
    let first = upload.send_ok(1).await;
    let after_last = upload.send_ok(last).await;
    assert_eq!(first["complete"], false);
    assert_eq!(
        after_last["complete"], false,
        "the last chunk is not the end"
    );
    upload.send_all((2..last).collect(), 3).await;
    check_stored(&server, media.path(), &upload).await;
}

#[tokio::test]
async fn force_chunk_size_layout_stores_the_file() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start(media.path()).await;
    let mut upload = FileUpload::new(
        &server.url,
        random_bytes(7 * CHUNK as usize + 4321, 5),
        CHUNK,
    );
    upload.cut = Cut::Forced;
    assert_eq!(upload.chunk_count(), 8);
    let mut order: Vec<u64> = (1..=8).collect();
    order.shuffle(&mut rand::rng());
    upload.send_all(order, 4).await;
    check_stored(&server, media.path(), &upload).await;
}

#[tokio::test]
async fn a_file_under_two_chunk_sizes_is_one_chunk() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start(media.path()).await;
    let upload = FileUpload::new(&server.url, random_bytes(2 * CHUNK as usize - 1, 6), CHUNK);
    assert_eq!(upload.chunk_count(), 1);
    let answer = upload.send_ok(1).await;
    assert_eq!(answer["complete"], true);
    check_stored(&server, media.path(), &upload).await;
}

#[tokio::test]
async fn a_zero_byte_file_is_one_empty_chunk() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start(media.path()).await;
    let upload = FileUpload::new(&server.url, Vec::new(), CHUNK);
    assert_eq!(upload.test(1).await.0, 204);
    let answer = upload.send_ok(1).await;
    assert_eq!(answer["complete"], true);
    assert_eq!(upload.test(1).await.0, 200);
    check_stored(&server, media.path(), &upload).await;
}

#[tokio::test]
async fn octet_bodies_with_any_content_type_store_the_file() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start(media.path()).await;
    let mut upload = FileUpload::new(&server.url, random_bytes(5 * CHUNK as usize + 3, 7), CHUNK);
    upload.body = Body::Octet;
    upload
        .send_all((1..=upload.chunk_count()).rev().collect(), 3)
        .await;
    check_stored(&server, media.path(), &upload).await;
}

#[tokio::test]
async fn flow_js_parameter_names_store_the_file() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start(media.path()).await;
    let mut upload = FileUpload::new(&server.url, random_bytes(3 * CHUNK as usize + 3, 8), CHUNK);
    upload.prefix = "flow";
    upload.cut = Cut::Forced;
    assert_eq!(upload.test(1).await.0, 204);
    upload
        .send_all((1..=upload.chunk_count()).collect(), 3)
        .await;
    assert_eq!(upload.test(2).await.0, 200);
    check_stored(&server, media.path(), &upload).await;
}

#[tokio::test]
async fn parameters_in_the_query_string_of_a_multipart_post_are_read() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start(media.path()).await;
    let upload = FileUpload::new(&server.url, random_bytes(1000, 9), CHUNK);
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(upload.data.to_vec()).file_name("blob"),
    );
    let response = upload
        .http
        .post(&server.url)
        .query(&upload.params(1))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    check_stored(&server, media.path(), &upload).await;
}

#[tokio::test]
async fn test_requests_report_stored_chunks_with_the_token() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start(media.path()).await;
    let upload = FileUpload::new(&server.url, random_bytes(3 * CHUNK as usize, 10), CHUNK);
    let (status, body) = upload.test(2).await;
    assert_eq!((status, body.as_str()), (204, ""));
    let posted = upload.send_ok(2).await;
    let (status, body) = upload.test(2).await;
    assert_eq!(status, 200);
    let tested: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(tested["token"], posted["token"]);
    assert_eq!(tested["chunks_received"], 1);
    assert_eq!(upload.test(1).await.0, 204);
}

#[tokio::test]
async fn resending_a_stored_chunk_is_harmless() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start(media.path()).await;
    let upload = FileUpload::new(&server.url, random_bytes(2 * CHUNK as usize, 11), CHUNK);
    upload.send_ok(1).await;
    // Same chunk again, with other bytes: answered 200, stored bytes unchanged.
    let response = upload
        .send_raw(&upload.params(1), vec![0xAA; CHUNK as usize])
        .await;
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["chunks_received"], 1);
    upload.send_ok(2).await;
    // And after completion too.
    assert_eq!(upload.send(1).await.status(), 200);
    check_stored(&server, media.path(), &upload).await;
}

#[tokio::test]
async fn the_endpoint_answers_with_and_without_a_trailing_slash() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start(media.path()).await;
    let mut upload = FileUpload::new(&server.url, random_bytes(2 * CHUNK as usize, 12), CHUNK);
    upload.url = server.url.trim_end_matches('/').to_owned();
    upload.send_ok(1).await;
    assert_eq!(upload.test(1).await.0, 200);
    let other = reqwest::get(format!("{}nothing-here", server.url))
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}

#[tokio::test]
async fn a_parameter_namespace_and_renamed_file_part_are_recognised() {
    let media = tempfile::tempdir().unwrap();
    let names = sea_orm_resumable::ParameterNames {
        file: "chunk".into(),
        ..sea_orm_resumable::ParameterNames::resumable().with_namespace("upload_")
    };
    let server = TestServer::start_with(sea_orm_resumable::Settings {
        parameter_names: vec![names],
        ..settings(media.path())
    })
    .await;
    let mut upload = FileUpload::new(&server.url, random_bytes(3 * CHUNK as usize, 13), CHUNK);
    upload.prefix = "upload_resumable";
    upload.file_part = "upload_chunk"; // resumable.js namespaces the file part too
    upload.send_all(vec![3, 1, 2], 2).await;
    assert_eq!(upload.test(1).await.0, 200);
    check_stored(&server, media.path(), &upload).await;

    // Without the namespace, the parameters are not found.
    let mut plain = FileUpload::new(&server.url, random_bytes(100, 14), CHUNK);
    plain.file_part = "upload_chunk";
    let response = plain.send(1).await;
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("upload_resumableChunkNumber")
    );
}

sea_orm_resumable::file_field! {
    /// A field with its own chunk directory.
    struct Covers { chunks_upload_to: "cover_chunks" }
}

#[tokio::test]
async fn uploads_naming_a_registered_field_go_to_its_chunk_directory() {
    let media = tempfile::tempdir().unwrap();
    let server = TestServer::start_configured(settings(media.path()), |builder| {
        builder.field::<Covers>("cover")
    })
    .await;
    for (body, prefix) in [(Body::Multipart, "resumable"), (Body::Octet, "flow")] {
        let mut upload = FileUpload::new(&server.url, random_bytes(300_000, 7), 100_000);
        (upload.body, upload.prefix, upload.field) = (body, prefix, Some("cover".into()));
        upload.send_all(vec![3, 1, 2], 2).await;
        let key = UploadKey::derive(&Scope::anonymous(), &upload.identifier);
        let stored = media.path().join(format!("cover_chunks/{key}.data"));
        assert_eq!(sha256_file(&stored), sha256(&upload.data), "{prefix}");
        assert!(
            !upload.stored_path(media.path()).exists(),
            "not in the default directory"
        );
        assert_eq!(upload.test(1).await.0, 200, "tests name the field too");
        upload.field = None;
        assert_eq!(
            upload.test(1).await.0,
            204,
            "the default directory has no such upload"
        );
    }
    let mut stray = FileUpload::new(&server.url, random_bytes(1000, 8), 1000);
    stray.field = Some("avatar".into());
    let refused = stray.send(1).await;
    assert_eq!(refused.status(), 400);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "unknown upload field \"avatar\"");
    server.stop().await;
}
