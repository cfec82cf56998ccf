//! `ResumableFileField` on real databases: every behaviour runs on an SQLite file and on
//! PostgreSQL (`sqlite::…` and `postgres::…` tests).

mod common;
#[macro_use]
#[path = "common/db.rs"]
mod db;
#[path = "common/entities.rs"]
mod entities;
#[path = "common/tmpfs.rs"]
mod tmpfs;

use bytes::Bytes;
use common::{random_bytes, secret, settings, sha256, sha256_file};
use db::Backend;
use entities::{
    attachment::{self, CoverFile, OwnerFile},
    document::{self, DocumentFile},
};
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, Schema,
};
use sea_orm_resumable::{
    ChunkParams, FileFieldError, ResumableFileField, Scope, UploadToken, Uploads,
    field::FileFieldOptions,
};
use std::path::PathBuf;
use tempfile::TempDir;

/// Media root, upload service and database of one test.
struct Fixture {
    dir: TempDir,
    uploads: Uploads,
    db: DatabaseConnection,
    scope: Scope,
}

impl Fixture {
    /// `None` when the backend is not configured (Postgres without `DATABASE_URL`).
    async fn new(backend: Backend) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let db = db::connect(backend, dir.path()).await?;
        Migrator::up(&db, None).await.unwrap();
        let schema = Schema::new(db.get_database_backend());
        db.execute(&schema.create_table_from_entity(attachment::Entity))
            .await
            .unwrap();
        let uploads = Uploads::builder(settings(&dir.path().join("media")), secret())
            .field::<CoverFile>("cover")
            .build()
            .await
            .unwrap();
        Some(Self {
            dir,
            uploads,
            db,
            scope: Scope::new("alice"),
        })
    }

    fn media(&self) -> PathBuf {
        self.dir.path().join("media")
    }

    /// Uploads `bytes` as `name` in 64 KiB chunks (for `field`, if given); the token.
    async fn upload(&self, field: Option<&str>, name: &str, bytes: &[u8]) -> UploadToken {
        common::upload_direct(&self.uploads, &self.scope, field, name, bytes).await
    }

    async fn document(&self, token: &UploadToken) -> ResumableFileField<DocumentFile> {
        ResumableFileField::from_token(&self.uploads, &self.scope, token.as_str())
            .await
            .unwrap()
    }

    /// The pending value of a completed upload, for a field with options `C`.
    async fn field<C: FileFieldOptions>(&self, token: &UploadToken) -> ResumableFileField<C> {
        ResumableFileField::from_token(&self.uploads, &self.scope, token.as_str())
            .await
            .unwrap()
    }

    async fn insert_attachment(
        &self,
        owner: i32,
        file: &UploadToken,
        cover: Option<&UploadToken>,
    ) -> attachment::Model {
        let cover = match cover {
            Some(token) => Some(self.field::<CoverFile>(token).await),
            None => None,
        };
        attachment::ActiveModel {
            owner: Set(owner),
            file: Set(self.field::<OwnerFile>(file).await),
            cover: Set(cover),
            ..Default::default()
        }
        .insert(&self.db)
        .await
        .unwrap()
    }

    async fn insert_document(&self, title: &str, token: &UploadToken) -> document::Model {
        document::ActiveModel {
            title: Set(title.into()),
            file: Set(self.document(token).await),
            created_at: Set(chrono::Utc::now()),
            ..Default::default()
        }
        .insert(&self.db)
        .await
        .unwrap()
    }

    /// Every regular file under the media root, relative, outside the chunk directories.
    fn stored_files(&self) -> Vec<String> {
        common::files_under(&self.media())
            .into_iter()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| {
                !["resumable_chunks/", "cover_chunks/", ".resumable_staging/"]
                    .iter()
                    .any(|d| p.starts_with(d))
            })
            .collect()
    }

    /// Files in a chunk directory.
    fn chunk_files(&self, subdir: &str) -> Vec<PathBuf> {
        let dir = self.media().join(subdir);
        if dir.exists() {
            common::files_under(&dir)
        } else {
            Vec::new()
        }
    }
}

const CHUNK: u64 = common::DIRECT_CHUNK;

/// `documents/<year>/<month>/` today (UTC), as `upload_to: "documents/%Y/%m"` gives.
fn this_month() -> String {
    chrono::Utc::now().format("documents/%Y/%m/").to_string()
}

async fn insert_moves_the_upload_into_place_and_clears_its_chunks(backend: Backend) {
    let Some(f) = Fixture::new(backend).await else {
        return;
    };
    let bytes = random_bytes(300_000, 1);
    let token = f.upload(None, "Annual Report.pdf", &bytes).await;
    assert_eq!(
        f.chunk_files("resumable_chunks").len(),
        3,
        "meta, ranges, data"
    );

    let saved = f.insert_document("Report", &token).await;
    let path = saved.file.path().unwrap().to_owned();
    assert_eq!(path, format!("{}Annual_Report.pdf", this_month()));
    assert_eq!(sha256_file(&f.media().join(&path)), sha256(&bytes));
    assert_eq!(f.stored_files(), vec![path.clone()]);
    assert!(
        f.chunk_files("resumable_chunks").is_empty(),
        "upload state removed once the row is stored: {:?}",
        f.chunk_files("resumable_chunks")
    );
    let again =
        ResumableFileField::<DocumentFile>::from_token(&f.uploads, &f.scope, token.as_str()).await;
    assert!(
        matches!(again, Err(FileFieldError::UnknownUpload)),
        "a saved upload cannot be claimed twice"
    );

    let loaded = document::Entity::find_by_id(saved.id)
        .one(&f.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.file.path(), Some(path.as_str()));
    let media = f.uploads.media();
    assert_eq!(loaded.file.url(&media).unwrap(), format!("/media/{path}"));
    assert_eq!(loaded.file.size(&media).await.unwrap(), bytes.len() as u64);
    let mut read = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut loaded.file.open(&media).await.unwrap(), &mut read)
        .await
        .unwrap();
    assert_eq!(sha256(&read), sha256(&bytes));
    loaded.file.delete(&media).await.unwrap();
    assert!(f.stored_files().is_empty());
}

async fn update_with_a_new_upload_keeps_the_old_file(backend: Backend) {
    let Some(f) = Fixture::new(backend).await else {
        return;
    };
    let first = random_bytes(100_000, 2);
    let second = random_bytes(200_000, 3);
    let saved = f
        .insert_document("Doc", &f.upload(None, "v1.txt", &first).await)
        .await;
    let old_path = saved.file.path().unwrap().to_owned();

    let token = f.upload(None, "v2.txt", &second).await;
    let mut update: document::ActiveModel = saved.into();
    update.file = Set(f.document(&token).await);
    let updated = update.update(&f.db).await.unwrap();
    let new_path = updated.file.path().unwrap().to_owned();
    assert_ne!(new_path, old_path);
    assert_eq!(sha256_file(&f.media().join(&new_path)), sha256(&second));
    assert_eq!(
        sha256_file(&f.media().join(&old_path)),
        sha256(&first),
        "the replaced file stays (Django's default)"
    );
}

async fn update_deletes_the_replaced_file_when_the_field_says_so(backend: Backend) {
    let Some(f) = Fixture::new(backend).await else {
        return;
    };
    const { assert!(CoverFile::DELETE_REPLACED) };
    let file = f.upload(None, "main.bin", &random_bytes(70_000, 4)).await;
    let cover1 = f
        .upload(Some("cover"), "cover.png", &random_bytes(70_000, 5))
        .await;
    let saved = f.insert_attachment(1, &file, Some(&cover1)).await;
    let old_cover = saved.cover.clone().unwrap().path().unwrap().to_owned();
    assert_eq!(old_cover, "covers/cover.png");

    let cover2 = random_bytes(80_000, 6);
    let token = f.upload(Some("cover"), "cover.png", &cover2).await;
    let mut update: attachment::ActiveModel = saved.into();
    update.cover = Set(Some(f.field(&token).await));
    let updated = update.update(&f.db).await.unwrap();
    let new_cover = updated.cover.unwrap().path().unwrap().to_owned();
    assert_ne!(
        new_cover, old_cover,
        "the old name was taken when the new one was chosen"
    );
    assert_eq!(sha256_file(&f.media().join(&new_cover)), sha256(&cover2));
    assert!(
        !f.media().join(&old_cover).exists(),
        "replaced cover deleted"
    );
}

async fn nullable_column_holds_null_or_a_file(backend: Backend) {
    let Some(f) = Fixture::new(backend).await else {
        return;
    };
    let file = f.upload(None, "a.bin", &random_bytes(1000, 7)).await;
    let saved = f.insert_attachment(2, &file, None).await;
    let loaded = attachment::Entity::find_by_id(saved.id)
        .one(&f.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.cover, None, "NULL reads back as None");

    let cover = random_bytes(5000, 8);
    let token = f.upload(Some("cover"), "c.jpg", &cover).await;
    let mut update: attachment::ActiveModel = loaded.into();
    update.cover = Set(Some(f.field(&token).await));
    update.update(&f.db).await.unwrap();
    let loaded = attachment::Entity::find_by_id(saved.id)
        .one(&f.db)
        .await
        .unwrap()
        .unwrap();
    let path = loaded.cover.unwrap().path().unwrap().to_owned();
    assert_eq!(sha256_file(&f.media().join(path)), sha256(&cover));
}

async fn upload_to_expands_date_placeholders(backend: Backend) {
    let Some(f) = Fixture::new(backend).await else {
        return;
    };
    let saved = f
        .insert_document("Dated", &f.upload(None, "x.csv", b"a,b\n1,2\n").await)
        .await;
    let path = saved.file.path().unwrap();
    assert!(path.starts_with(&this_month()), "{path}");
    let date = chrono::Utc::now();
    assert!(!path.contains('%'));
    assert!(path.contains(&format!("/{}/", date.format("%Y"))));
}

async fn upload_to_function_reads_the_model(backend: Backend) {
    let Some(f) = Fixture::new(backend).await else {
        return;
    };
    let token = f.upload(None, "../../etc/passwd", b"not really").await;
    let saved = f.insert_attachment(42, &token, None).await;
    assert_eq!(
        saved.file.path(),
        Some("users/42/passwd"),
        "computed from the model; the client's name reduced to its last part"
    );
    assert!(f.media().join("users/42/passwd").is_file());
}

async fn name_collision_gets_a_unique_name_and_never_overwrites(backend: Backend) {
    let Some(f) = Fixture::new(backend).await else {
        return;
    };
    // A file already at the target, put there by something else.
    let taken = f.media().join(this_month()).join("same.bin");
    std::fs::create_dir_all(taken.parent().unwrap()).unwrap();
    std::fs::write(&taken, b"keep me").unwrap();

    // Eight uploads of the same name, saved at the same time.
    let mut tasks = Vec::new();
    let f = std::sync::Arc::new(f);
    for i in 0..8u64 {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let bytes = random_bytes(50_000 + i as usize, 100 + i);
            let token = f.upload(None, "same.bin", &bytes).await;
            let saved = f.insert_document(&format!("copy {i}"), &token).await;
            (saved.file.path().unwrap().to_owned(), sha256(&bytes))
        }));
    }
    let mut paths = std::collections::HashSet::new();
    for task in tasks {
        let (path, hash) = task.await.unwrap();
        assert!(
            path.starts_with(&format!("{}same_", this_month())) && path.ends_with(".bin"),
            "{path}"
        );
        assert_eq!(
            sha256_file(&f.media().join(&path)),
            hash,
            "{path} has its own bytes"
        );
        assert!(paths.insert(path), "names are unique");
    }
    assert_eq!(
        std::fs::read(&taken).unwrap(),
        b"keep me",
        "existing file not overwritten"
    );
    assert_eq!(f.stored_files().len(), 9);
}

async fn failed_insert_loses_nothing_and_can_be_saved_again(backend: Backend) {
    let Some(f) = Fixture::new(backend).await else {
        return;
    };
    let first = f
        .insert_document("First", &f.upload(None, "first.txt", b"first").await)
        .await;
    let bytes = random_bytes(150_000, 9);
    let token = f.upload(None, "second.txt", &bytes).await;

    // Same primary key as an existing row: the INSERT fails.
    let failed = document::ActiveModel {
        id: Set(first.id),
        title: Set("Clash".into()),
        file: Set(f.document(&token).await),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(&f.db)
    .await;
    assert!(failed.is_err(), "duplicate key refused");
    assert_eq!(
        f.stored_files(),
        vec![first.file.path().unwrap().to_owned()],
        "no orphan file"
    );
    assert_eq!(document::Entity::find().count(&f.db).await.unwrap(), 1);

    // The upload is intact and can be saved again (twice failing first, to be sure).
    for _ in 0..2 {
        let again = document::ActiveModel {
            id: Set(first.id),
            title: Set("Clash".into()),
            file: Set(f.document(&token).await),
            created_at: Set(chrono::Utc::now()),
            ..Default::default()
        };
        assert!(again.insert(&f.db).await.is_err());
    }
    let saved = f.insert_document("Second", &token).await;
    assert_eq!(
        saved.file.path().unwrap(),
        format!("{}second.txt", this_month())
    );
    assert_eq!(
        sha256_file(&f.media().join(saved.file.path().unwrap())),
        sha256(&bytes)
    );
    assert_eq!(f.stored_files().len(), 2);
    let reservations = f.chunk_files("resumable_chunks/saving");
    assert!(
        reservations.is_empty(),
        "no reservation left: {reservations:?}"
    );
}

async fn failed_update_loses_nothing_and_keeps_the_row(backend: Backend) {
    let Some(f) = Fixture::new(backend).await else {
        return;
    };
    let old = random_bytes(10_000, 13);
    let saved = f
        .insert_document("Kept", &f.upload(None, "old.bin", &old).await)
        .await;
    let new = random_bytes(20_000, 14);
    let token = f.upload(None, "new.bin", &new).await;

    // An update of a row that is gone fails.
    let mut gone: document::ActiveModel = saved.clone().into();
    gone.id = sea_orm::ActiveValue::Unchanged(saved.id + 1000);
    gone.file = Set(f.document(&token).await);
    assert!(gone.update(&f.db).await.is_err(), "no such row");
    assert_eq!(
        f.stored_files(),
        vec![saved.file.path().unwrap().to_owned()],
        "no orphan file"
    );
    let loaded = document::Entity::find_by_id(saved.id)
        .one(&f.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded, saved, "the row is as it was");

    // The same upload then updates the real row.
    let mut update: document::ActiveModel = saved.into();
    update.file = Set(f.document(&token).await);
    let updated = update.update(&f.db).await.unwrap();
    assert_eq!(
        updated.file.path().unwrap(),
        format!("{}new.bin", this_month())
    );
    assert_eq!(
        sha256_file(&f.media().join(updated.file.path().unwrap())),
        sha256(&new)
    );
}

async fn save_bypassing_the_hooks_fails_and_writes_no_path(backend: Backend) {
    let Some(f) = Fixture::new(backend).await else {
        return;
    };
    let token = f
        .upload(None, "bypass.bin", &random_bytes(10_000, 10))
        .await;
    let model = document::ActiveModel {
        title: Set("Bypass".into()),
        file: Set(f.document(&token).await),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    };
    let result = document::Entity::insert(model).exec(&f.db).await;
    let error = result.expect_err("a pending upload written without the hooks is refused");
    let message = error.to_string().to_lowercase();
    assert!(
        message.contains("null"),
        "the database names the NULL: {message}"
    );
    assert_eq!(document::Entity::find().count(&f.db).await.unwrap(), 0);
    assert!(f.stored_files().is_empty());
    // Nothing was consumed: the upload saves normally afterwards.
    f.insert_document("Proper", &token).await;
}

async fn stored_path_assignment_is_checked(backend: Backend) {
    let Some(f) = Fixture::new(backend).await else {
        return;
    };
    for bad in ["../outside.txt", "/etc/passwd", "a//b", "a/./b"] {
        let result = document::ActiveModel {
            title: Set("Bad".into()),
            file: Set(ResumableFileField::stored(bad)),
            created_at: Set(chrono::Utc::now()),
            ..Default::default()
        }
        .insert(&f.db)
        .await;
        assert!(result.is_err(), "{bad:?} refused");
    }
    let saved = document::ActiveModel {
        title: Set("Copy".into()),
        file: Set(ResumableFileField::stored("documents/elsewhere.pdf")),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(&f.db)
    .await
    .unwrap();
    assert_eq!(saved.file.path(), Some("documents/elsewhere.pdf"));
    // A stored path is never read from a chunk directory.
    let media = f.uploads.media();
    for private in [
        "resumable_chunks/x.data",
        "cover_chunks/x.data",
        ".resumable_staging/x",
    ] {
        let field = ResumableFileField::<DocumentFile>::stored(private);
        assert!(
            matches!(field.url(&media), Err(FileFieldError::Path(_))),
            "{private}"
        );
        assert!(field.open(&media).await.is_err(), "{private}");
    }
    assert_eq!(document::Entity::find().count(&f.db).await.unwrap(), 1);
}

async fn per_field_chunk_directory_holds_the_fields_uploads(backend: Backend) {
    let Some(f) = Fixture::new(backend).await else {
        return;
    };
    let cover = random_bytes(100_000, 11);
    let token = f.upload(Some("cover"), "c.png", &cover).await;
    assert_eq!(
        f.chunk_files("cover_chunks").len(),
        3,
        "stored in the field's directory"
    );
    assert!(f.chunk_files("resumable_chunks").is_empty());
    assert!(
        f.uploads.media().is_private("cover_chunks/x"),
        "never served"
    );

    // A token for the cover is not a document upload, and vice versa.
    let as_document =
        ResumableFileField::<DocumentFile>::from_token(&f.uploads, &f.scope, token.as_str()).await;
    assert!(
        matches!(as_document, Err(FileFieldError::UnknownUpload)),
        "{as_document:?}"
    );
    let plain = f.upload(None, "p.png", b"plain").await;
    let as_cover =
        ResumableFileField::<CoverFile>::from_token(&f.uploads, &f.scope, plain.as_str()).await;
    assert!(
        matches!(as_cover, Err(FileFieldError::UnknownUpload)),
        "{as_cover:?}"
    );

    // A field the app did not register is refused.
    let params = ChunkParams {
        chunk_number: 1,
        chunk_size: CHUNK,
        current_chunk_size: 5,
        total_size: 5,
        identifier: "x".into(),
        filename: "x.bin".into(),
        relative_path: None,
        content_type: None,
        file_part: "file".into(),
        field: Some("nope".into()),
    };
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"hello"))]);
    let refused = f
        .uploads
        .receive_chunk(&f.scope, &params, body)
        .await
        .unwrap_err();
    assert_eq!(refused.to_string(), "unknown upload field \"nope\"");
    let refused = f.uploads.test_chunk(&f.scope, &params).await.unwrap_err();
    assert_eq!(refused.to_string(), "unknown upload field \"nope\"");

    let saved = f.insert_attachment(3, &plain, Some(&token)).await;
    let path = saved.cover.unwrap().path().unwrap().to_owned();
    assert_eq!(sha256_file(&f.media().join(path)), sha256(&cover));
    assert!(f.chunk_files("cover_chunks").is_empty());
}

async fn foreign_forged_or_incomplete_uploads_are_refused(backend: Backend) {
    let Some(f) = Fixture::new(backend).await else {
        return;
    };
    let token = f.upload(None, "mine.txt", b"alice's").await;
    let bob = Scope::new("bob");
    let stolen =
        ResumableFileField::<DocumentFile>::from_token(&f.uploads, &bob, token.as_str()).await;
    assert!(
        matches!(stolen, Err(FileFieldError::Token(_))),
        "{stolen:?}"
    );
    let forged = format!("{}x", token.as_str());
    let forged =
        ResumableFileField::<DocumentFile>::from_token(&f.uploads, &f.scope, &forged).await;
    assert!(
        matches!(forged, Err(FileFieldError::Token(_))),
        "{forged:?}"
    );

    // Only the first of two chunks.
    let params = ChunkParams {
        chunk_number: 1,
        chunk_size: CHUNK,
        current_chunk_size: CHUNK,
        total_size: 2 * CHUNK,
        identifier: "half".into(),
        filename: "half.bin".into(),
        relative_path: None,
        content_type: None,
        file_part: "file".into(),
        field: None,
    };
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(vec![
        0u8;
        CHUNK
            as usize
    ]))]);
    let status = f
        .uploads
        .receive_chunk(&f.scope, &params, body)
        .await
        .unwrap();
    let half =
        ResumableFileField::<DocumentFile>::from_token(&f.uploads, &f.scope, status.token.as_str())
            .await;
    let error = half.unwrap_err();
    assert!(
        matches!(
            error,
            FileFieldError::Incomplete {
                received: 1,
                total: 2
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "the upload is not complete yet (1 of 2 chunks received)"
    );
}

/// The migration's table and the one `create_table_from_entity` makes from the entity
/// have the same columns (names, types, lengths, nullability, defaults, keys).
async fn migration_table_equals_the_entity_table(backend: Backend) {
    let Some(f) = Fixture::new(backend).await else {
        return;
    };
    let from_migration = columns(&f.db, backend, "document").await;
    assert_eq!(from_migration.len(), 5, "{from_migration:?}");
    let schema = Schema::new(f.db.get_database_backend());
    let mut statement = schema.create_table_from_entity(document::Entity);
    statement.table(sea_orm::sea_query::Alias::new("document_from_entity"));
    f.db.execute(&statement).await.unwrap();
    let from_entity = columns(&f.db, backend, "document_from_entity").await;
    assert_eq!(from_migration, from_entity);
    if backend == Backend::Sqlite {
        // SQLite keeps each table's DDL as written (normalised): compare it verbatim.
        let ddl = |table: &'static str| {
            let db = &f.db;
            async move {
                let sql = format!("SELECT sql FROM sqlite_master WHERE name = '{table}'");
                let row = db
                    .query_one_raw(sea_orm::Statement::from_string(
                        db.get_database_backend(),
                        sql,
                    ))
                    .await
                    .unwrap()
                    .unwrap();
                row.try_get::<String>("", "sql").unwrap()
            }
        };
        // ALTER TABLE ADD COLUMN splices its text in with other spacing: compare the
        // tokens, not the blanks around commas and parentheses.
        let tokens = |sql: String| {
            sql.replace(',', " , ")
                .replace('(', " ( ")
                .replace(')', " ) ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        let migration_ddl = tokens(ddl("document").await);
        let entity_ddl = tokens(
            ddl("document_from_entity")
                .await
                .replace("document_from_entity", "document"),
        );
        assert_eq!(migration_ddl, entity_ddl);
        assert!(
            migration_ddl.contains(r#""file" varchar ( 255 ) NOT NULL"#),
            "{migration_ddl}"
        );
    }
    let file = from_migration.iter().find(|c| c.contains("file")).unwrap();
    assert!(file.contains("255"), "{file}");
}

/// One line per column: name, type (with length), NOT NULL, default, primary key.
async fn columns(db: &DatabaseConnection, backend: Backend, table: &str) -> Vec<String> {
    let sql = match backend {
        Backend::Sqlite => format!(
            "SELECT name || ' ' || type || ' notnull=' || \"notnull\" || ' default=' || \
             coalesce(dflt_value, '') || ' pk=' || pk AS line FROM pragma_table_info('{table}') ORDER BY cid"
        ),
        Backend::Postgres => format!(
            "SELECT column_name || ' ' || data_type || '(' || coalesce(character_maximum_length::text, '') || \
             ') nullable=' || is_nullable || ' identity=' || is_identity || ' default=' || \
             coalesce(regexp_replace(column_default, '{table}', 'TABLE'), '') AS line \
             FROM information_schema.columns WHERE table_schema = current_schema() \
             AND table_name = '{table}' ORDER BY ordinal_position"
        ),
    };
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            sql,
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|row| row.try_get::<String>("", "line").unwrap())
        .collect()
}

/// A form submitted twice at once: however the two saves of one upload interleave,
/// every stored row names a file that exists with the upload's bytes.
async fn the_same_upload_saved_twice_at_once_never_stores_a_path_without_a_file(backend: Backend) {
    let Some(f) = Fixture::new(backend).await else {
        return;
    };
    for round in 0..25u64 {
        let bytes = random_bytes(20_000, 200 + round);
        let token = f.upload(None, &format!("twice{round}.bin"), &bytes).await;
        let (a, b) = (f.document(&token).await, f.document(&token).await);
        // Two requests: each its own handle on the database, as axum state clones give.
        let (db_a, db_b) = (f.db.clone(), f.db.clone());
        let insert = |file: ResumableFileField<DocumentFile>, db| {
            document::ActiveModel {
                title: Set(format!("round {round}")),
                file: Set(file),
                created_at: Set(chrono::Utc::now()),
                ..Default::default()
            }
            .insert(db)
        };
        let (a, b) = tokio::join!(insert(a, &db_a), insert(b, &db_b));
        assert!(a.is_ok() || b.is_ok(), "{a:?} {b:?}");
        for saved in [a, b].into_iter().flatten() {
            let path = f.media().join(saved.file.path().unwrap());
            assert!(
                path.is_file(),
                "round {round}: {path:?} missing; files: {:?}",
                f.stored_files()
            );
            assert_eq!(sha256_file(&path), sha256(&bytes), "round {round}");
        }
    }
    let left = f.chunk_files("resumable_chunks");
    assert!(
        left.is_empty(),
        "every upload's files and reservations gone: {left:?}"
    );
    for row in document::Entity::find().all(&f.db).await.unwrap() {
        assert!(
            f.media().join(row.file.path().unwrap()).is_file(),
            "{row:?}"
        );
    }
}

/// A save that failed, retried with a changed model: the file goes where the new model
/// says, and nothing is left where the failed save would have put it.
async fn a_retry_with_a_changed_model_goes_to_the_new_place(backend: Backend) {
    let Some(f) = Fixture::new(backend).await else {
        return;
    };
    let a = f.upload(None, "a.bin", b"a").await;
    let first = f.insert_attachment(1, &a, None).await;
    let token = f.upload(None, "b.bin", b"bbb").await;
    let attempt = |id: Option<i32>, owner: i32| {
        let uploads = f.uploads.clone();
        let (scope, token, db) = (f.scope.clone(), token.clone(), f.db.clone());
        async move {
            let file =
                ResumableFileField::<OwnerFile>::from_token(&uploads, &scope, token.as_str())
                    .await
                    .unwrap();
            let mut model = attachment::ActiveModel {
                owner: Set(owner),
                file: Set(file),
                cover: Set(None),
                ..Default::default()
            };
            if let Some(id) = id {
                model.id = Set(id);
            }
            model.insert(&db).await
        }
    };
    assert!(attempt(Some(first.id), 7).await.is_err(), "duplicate key");
    let saved = attempt(None, 8).await.unwrap();
    assert_eq!(saved.file.path(), Some("users/8/b.bin"));
    assert_eq!(
        std::fs::read(f.media().join("users/8/b.bin")).unwrap(),
        b"bbb"
    );
    assert!(
        !f.media().join("users/7").exists()
            || common::files_under(&f.media().join("users/7")).is_empty()
    );
    let again =
        ResumableFileField::<OwnerFile>::from_token(&f.uploads, &f.scope, token.as_str()).await;
    assert!(
        matches!(again, Err(FileFieldError::UnknownUpload)),
        "claimed by the saved row"
    );
}

/// Chunks on one file system, media on another: the file is copied (before the row is
/// written, so a failed save still leaves nothing in `upload_to`), then linked.
#[tokio::test]
async fn chunks_on_another_file_system_are_copied_into_place() {
    let f = Fixture::new(Backend::Sqlite).await.unwrap();
    let Some(_chunks) = tmpfs::Tmpfs::mount(&f.media().join("resumable_chunks"), "8m") else {
        return;
    };
    let bytes = random_bytes(1_000_000, 12);
    let token = f.upload(None, "far.bin", &bytes).await;
    let other = f
        .insert_document("Other", &f.upload(None, "other.bin", b"x").await)
        .await;

    let failed = document::ActiveModel {
        id: Set(other.id),
        title: Set("Clash".into()),
        file: Set(f.document(&token).await),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(&f.db)
    .await;
    assert!(failed.is_err());
    assert_eq!(
        f.stored_files(),
        vec![other.file.path().unwrap().to_owned()],
        "nothing in upload_to"
    );

    let saved = f.insert_document("Far", &token).await;
    let path = f.media().join(saved.file.path().unwrap());
    assert_eq!(sha256_file(&path), sha256(&bytes));
    assert!(
        common::files_under(&f.media().join(".resumable_staging")).is_empty(),
        "copy linked and removed"
    );
    assert!(f.chunk_files("resumable_chunks").is_empty());
}

/// A name another process reserved (its reservation file in the chunk area) is not
/// taken, even though no file is there yet.
#[tokio::test]
async fn a_name_reserved_by_another_process_is_not_taken() {
    let f = Fixture::new(Backend::Sqlite).await.unwrap();
    let wanted = format!("{}taken.bin", this_month());
    let reservations = f.media().join("resumable_chunks/saving");
    std::fs::create_dir_all(&reservations).unwrap();
    let name = format!("{}.json", &sha256(wanted.as_bytes())[..32]);
    let other = r#"{"key":"ffffffffffffffffffffffffffffffff","chunks_upload_to":null,"path":"x","table":"document","column":"file"}"#;
    std::fs::write(reservations.join(&name), other).unwrap();

    let saved = f
        .insert_document("T", &f.upload(None, "taken.bin", b"mine").await)
        .await;
    let path = saved.file.path().unwrap();
    assert_ne!(path, wanted);
    assert!(
        path.starts_with(&format!("{}taken_", this_month())),
        "{path}"
    );
    assert_eq!(
        std::fs::read(reservations.join(&name)).unwrap(),
        other.as_bytes(),
        "left alone"
    );
}

on_both_databases!(
    insert_moves_the_upload_into_place_and_clears_its_chunks,
    update_with_a_new_upload_keeps_the_old_file,
    update_deletes_the_replaced_file_when_the_field_says_so,
    nullable_column_holds_null_or_a_file,
    upload_to_expands_date_placeholders,
    upload_to_function_reads_the_model,
    name_collision_gets_a_unique_name_and_never_overwrites,
    failed_insert_loses_nothing_and_can_be_saved_again,
    failed_update_loses_nothing_and_keeps_the_row,
    save_bypassing_the_hooks_fails_and_writes_no_path,
    stored_path_assignment_is_checked,
    per_field_chunk_directory_holds_the_fields_uploads,
    foreign_forged_or_incomplete_uploads_are_refused,
    migration_table_equals_the_entity_table,
    the_same_upload_saved_twice_at_once_never_stores_a_path_without_a_file,
    a_retry_with_a_changed_model_goes_to_the_new_place,
);
