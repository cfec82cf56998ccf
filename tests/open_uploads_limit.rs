//! The per-scope limit on unfinished uploads (`Settings::max_open_uploads`).

mod common;

use bytes::Bytes;
use common::{secret, settings};
use sea_orm_resumable::{ChunkParams, Scope, UploadError, UploadStatus, Uploads};

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

#[tokio::test]
async fn a_user_at_the_limit_cannot_start_another_upload_until_one_finishes() {
    let media = tempfile::tempdir().unwrap();
    let uploads = service(media.path()).await;
    send(&uploads, "ann", "a", 1).await.unwrap();
    send(&uploads, "ann", "b", 1).await.unwrap();
    let refused = send(&uploads, "ann", "c", 1).await.unwrap_err();
    assert_eq!(
        refused.to_string(),
        "too many unfinished uploads (at most 2): finish or remove some first"
    );
    assert_eq!(refused.status(), axum::http::StatusCode::BAD_REQUEST);
    // Open uploads carry on, other users are not affected.
    send(&uploads, "ann", "a", 1).await.unwrap();
    send(&uploads, "bob", "c", 1).await.unwrap();
    // Finishing one frees a place.
    assert!(send(&uploads, "ann", "a", 2).await.unwrap().complete);
    send(&uploads, "ann", "c", 1).await.unwrap();
    assert!(send(&uploads, "ann", "d", 1).await.is_err());
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
