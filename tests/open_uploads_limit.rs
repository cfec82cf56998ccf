//! The limits on uploads not yet saved (`Settings::max_open_uploads` and the per-scope,
//! per-address and total bounds): unfinished and complete-but-unsaved uploads both count,
//! until a save or expiry removes them.

mod common;
#[macro_use]
#[path = "common/db.rs"]
mod db;
#[path = "common/entities.rs"]
mod entities;

use bytes::Bytes;
use common::{secret, settings};
use entities::document::{self, DocumentFile};
use migration::{Migrator, MigratorTrait};
use sea_orm::{ActiveModelTrait, ActiveValue::Set};
use sea_orm_resumable::{
    ChunkParams, ResumableFileField, Scope, UploadError, UploadStatus, Uploads,
};

const CHUNK: u64 = 1000;

async fn service(media: &std::path::Path) -> Uploads {
    let settings = sea_orm_resumable::Settings {
        max_open_uploads: 2,
        ..settings(media)
    };
    Uploads::builder(settings, secret()).build().await.unwrap()
}

/// Sends chunk `number` of a two-chunk upload `identifier` for `user`.
async fn send(
    uploads: &Uploads,
    user: &str,
    identifier: &str,
    number: u64,
) -> Result<UploadStatus, UploadError> {
    let params = ChunkParams {
        chunk_number: number,
        chunk_size: CHUNK,
        current_chunk_size: CHUNK,
        total_size: 2 * CHUNK,
        identifier: identifier.into(),
        filename: "f.bin".into(),
        relative_path: None,
        content_type: None,
        file_part: "file".into(),
        field: None,
    };
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(vec![
        1u8;
        CHUNK
            as usize
    ]))]);
    uploads
        .receive_chunk(&Scope::new(user), &params, body)
        .await
}

/// Sends a one-byte upload `identifier` for `scope`: complete on its first request.
async fn send_tiny(
    uploads: &Uploads,
    scope: Scope,
    identifier: &str,
) -> Result<UploadStatus, UploadError> {
    let params = ChunkParams {
        chunk_number: 1,
        chunk_size: CHUNK,
        current_chunk_size: 1,
        total_size: 1,
        identifier: identifier.into(),
        filename: "t.bin".into(),
        relative_path: None,
        content_type: None,
        file_part: "file".into(),
        field: None,
    };
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from("x"))]);
    uploads.receive_chunk(&scope, &params, body).await
}

#[tokio::test]
async fn a_user_at_the_limit_cannot_start_another_upload_until_one_finishes() {
    let media = tempfile::tempdir().unwrap();
    let uploads = service(media.path()).await;
    send(&uploads, "ann", "a", 1).await.unwrap();
    send(&uploads, "ann", "b", 1).await.unwrap();
    let refused = send(&uploads, "ann", "c", 1).await.unwrap_err();
    assert_eq!(
        refused.to_string(),
        "too many uploads not yet saved (at most 2 per user, unfinished or complete): \
         finish and save some first, or wait until they expire"
    );
    assert_eq!(refused.status(), axum::http::StatusCode::BAD_REQUEST);
    // Open uploads carry on, other users are not affected.
    send(&uploads, "ann", "a", 1).await.unwrap();
    send(&uploads, "bob", "c", 1).await.unwrap();
    // Finishing one frees nothing: a complete upload holds its place until it is saved.
    assert!(send(&uploads, "ann", "a", 2).await.unwrap().complete);
    assert!(send(&uploads, "ann", "c", 1).await.is_err());
}

#[tokio::test]
async fn a_flood_of_tiny_complete_uploads_stops_at_the_limit() {
    // Each upload is complete on its first request; before, none took a place.
    let media = tempfile::tempdir().unwrap();
    let uploads = service(media.path()).await;
    let mut accepted = 0;
    for n in 0..50 {
        if let Ok(status) = send_tiny(&uploads, Scope::new("ann"), &format!("tiny-{n}")).await {
            assert!(status.complete);
            accepted += 1;
        }
    }
    assert_eq!(accepted, 2);
}

#[tokio::test]
async fn saving_an_upload_to_a_row_frees_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let db = db::connect(db::Backend::Sqlite, dir.path()).await.unwrap();
    Migrator::up(&db, None).await.unwrap();
    let uploads = service(&dir.path().join("media")).await;
    send(&uploads, "ann", "a", 1).await.unwrap();
    let done = send(&uploads, "ann", "a", 2).await.unwrap();
    send(&uploads, "ann", "b", 1).await.unwrap();
    assert!(send(&uploads, "ann", "c", 1).await.is_err());
    let file = ResumableFileField::<DocumentFile>::from_token(
        &uploads,
        &Scope::new("ann"),
        done.token.as_str(),
    )
    .await
    .unwrap();
    document::ActiveModel {
        title: Set("a".into()),
        file: Set(file),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(&db)
    .await
    .unwrap();
    send(&uploads, "ann", "c", 1).await.unwrap();
}

#[tokio::test]
async fn a_complete_upload_holds_its_place_until_it_expires() {
    let media = tempfile::tempdir().unwrap();
    let uploads = service(media.path()).await;
    send(&uploads, "ann", "a", 1).await.unwrap();
    send(&uploads, "ann", "a", 2).await.unwrap();
    send(&uploads, "ann", "b", 1).await.unwrap();
    assert!(send(&uploads, "ann", "c", 1).await.is_err());
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(8 * 24 * 3600);
    let expired = uploads.expire_as_of(later).await.unwrap();
    assert_eq!((expired.complete, expired.incomplete), (1, 1));
    send(&uploads, "ann", "c", 1).await.unwrap();
}

#[tokio::test]
async fn per_address_and_total_limits_hold_whatever_the_scope() {
    let media = tempfile::tempdir().unwrap();
    let settings = sea_orm_resumable::Settings {
        max_client_uploads: 3,
        max_total_uploads: 5,
        ..settings(media.path())
    };
    let uploads = Uploads::builder(settings, secret()).build().await.unwrap();
    let from = |scope: &str, ip: &str| Scope::new(scope).with_client(ip.parse().unwrap());
    let send = |scope: Scope, identifier: &'static str| send_tiny(&uploads, scope, identifier);
    // A client dropping its cookie each time: a new scope, the same address.
    for n in 0..3 {
        send(from(&format!("browser-{n}"), "192.0.2.7"), "f")
            .await
            .unwrap();
    }
    let refused = send(from("browser-new", "192.0.2.7"), "f")
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("from your network address (at most 3)"),
        "{refused}"
    );
    // The same /64 is the same client.
    send(from("v6-a", "2001:db8::1"), "f").await.unwrap();
    send(from("v6-b", "2001:db8::2"), "f").await.unwrap();
    let refused = send(from("v6-c", "2001:db8:0:1::1"), "f")
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("server holds too many"),
        "{refused}"
    );
}

#[tokio::test]
async fn the_limit_holds_across_a_restart_and_expiry_frees_places() {
    let media = tempfile::tempdir().unwrap();
    {
        let uploads = service(media.path()).await;
        send(&uploads, "ann", "a", 1).await.unwrap();
        send(&uploads, "ann", "b", 1).await.unwrap();
    }
    let uploads = service(media.path()).await;
    assert!(
        send(&uploads, "ann", "c", 1).await.is_err(),
        "counted from disk"
    );
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(48 * 3600);
    assert_eq!(uploads.expire_as_of(later).await.unwrap().incomplete, 2);
    send(&uploads, "ann", "c", 1).await.unwrap();
}
