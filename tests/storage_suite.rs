//! One storage test suite, run on every backend: uploads through the service, saves into
//! a model's `ResumableFileField`, and the stored file read, linked and deleted through
//! [`Uploads::storage`]. The backends:
//!
//! * `local` — the default: chunks and files under a local media root (SQLite);
//! * `object_fs` — shared mode on `object_store`'s local-directory store (SQLite);
//! * `s3` — shared mode on a real S3-compatible server (s3s-fs, `RESUMABLE_TEST_S3`,
//!   started by tests/setup/s3.sh) with the ledger on PostgreSQL (`DATABASE_URL`), each
//!   test under a bucket prefix of its own.

mod common;
#[macro_use]
#[path = "common/db.rs"]
mod db;
#[path = "common/entities.rs"]
mod entities;

use common::{random_bytes, secret, settings, sha256};
use entities::{
    attachment::{self, CoverFile, OwnerFile},
    document::{self, DocumentFile},
};
use futures_util::TryStreamExt;
use migration::{Migrator, MigratorTrait};
use object_store::{
    ObjectStore, ObjectStoreExt, aws::AmazonS3, local::LocalFileSystem, path::Path as ObjectPath,
    prefix::PrefixStore, signer::Signer,
};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, Schema,
};
use sea_orm_resumable::{
    FileFieldError, ResumableFileField, Scope, UploadToken, Uploads,
    storage::{
        FileStorage,
        object::{ObjectFiles, ObjectStorage},
        read_all,
    },
};
use std::{
    io::ErrorKind,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use tempfile::TempDir;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Local,
    ObjectFs,
    S3,
}

/// Signs URLs for keys under a prefix (the test's part of the bucket).
#[derive(Debug)]
struct PrefixSigner {
    s3: Arc<AmazonS3>,
    prefix: ObjectPath,
}

#[async_trait::async_trait]
impl Signer for PrefixSigner {
    async fn signed_url(
        &self,
        method: object_store::signer::Method,
        path: &ObjectPath,
        expires_in: Duration,
    ) -> object_store::Result<url::Url> {
        let full = self
            .prefix
            .parts()
            .chain(path.parts())
            .collect::<ObjectPath>();
        self.s3.signed_url(method, &full, expires_in).await
    }
}

/// The database, upload service and (in shared mode) store of one test.
struct Fixture {
    dir: TempDir,
    uploads: Uploads,
    db: DatabaseConnection,
    scope: Scope,
    completions: Arc<AtomicUsize>,
    /// In shared mode: the chunks' store and the files' store (the same one on S3).
    stores: Option<(Arc<dyn ObjectStore>, Arc<dyn ObjectStore>)>,
}

sea_orm_resumable::file_field! {
    /// PDFs of at most 100 kB: the endpoint checks both before the upload is done.
    pub struct SmallPdf { max_size: 100_000, content_types: ["application/pdf"] }
}

/// The chunks' prefix in shared mode.
const CHUNK_PREFIX: &str = "resumable";

impl Fixture {
    /// `None` (the test says SKIPPED) when the backend's services are not configured.
    async fn new(kind: Kind) -> Option<Self> {
        Self::new_with(kind, |_| {}).await
    }

    /// [`new`](Self::new), with settings changed by `configure`.
    async fn new_with(
        kind: Kind,
        configure: impl FnOnce(&mut sea_orm_resumable::Settings),
    ) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let backend = match kind {
            Kind::S3 => db::Backend::Postgres,
            _ => db::Backend::Sqlite,
        };
        let db = db::connect(backend, dir.path()).await?;
        Migrator::up(&db, None).await.unwrap();
        let schema = Schema::new(db.get_database_backend());
        db.execute(&schema.create_table_from_entity(attachment::Entity))
            .await
            .unwrap();
        let completions = Arc::new(AtomicUsize::new(0));
        let counter = completions.clone();
        let mut settings = sea_orm_resumable::Settings {
            body_idle_timeout: Duration::from_millis(300),
            ..settings(&dir.path().join("media"))
        };
        configure(&mut settings);
        let mut builder = Uploads::builder(settings, secret())
            .field::<CoverFile>("cover")
            .field::<SmallPdf>("pdf")
            .on_complete(move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
            });
        let stores: Option<(Arc<dyn ObjectStore>, Arc<dyn ObjectStore>)> = match kind {
            Kind::Local => None,
            Kind::ObjectFs => {
                // Chunks and files in two stores (a scratch bucket and a media bucket):
                // saves stream from one to the other.
                let bucket = |name: &str| -> Arc<dyn ObjectStore> {
                    let dir = dir.path().join(name);
                    std::fs::create_dir_all(&dir).unwrap();
                    Arc::new(LocalFileSystem::new_with_prefix(&dir).unwrap())
                };
                let (scratch, media) = (bucket("scratch"), bucket("media-bucket"));
                let files = ObjectFiles::new(media.clone());
                builder =
                    builder.object_storage(Self::object_storage(&scratch, &db).with_files(files));
                Some((scratch, media))
            }
            Kind::S3 => {
                let Ok(endpoint) = std::env::var("RESUMABLE_TEST_S3") else {
                    eprintln!("SKIPPED: RESUMABLE_TEST_S3 is not set (tests/setup/s3.sh)");
                    return None;
                };
                let s3 = Arc::new(common::test_bucket(&endpoint));
                let prefix =
                    ObjectPath::from(format!("storage-suite-{}", uuid::Uuid::new_v4().simple()));
                let store: Arc<dyn ObjectStore> =
                    Arc::new(PrefixStore::new(s3.clone(), prefix.clone()));
                let signer = Arc::new(PrefixSigner { s3, prefix });
                let files = ObjectFiles::new(store.clone()).with_signer(signer);
                builder =
                    builder.object_storage(Self::object_storage(&store, &db).with_files(files));
                Some((store.clone(), store))
            }
        };
        let uploads = builder.build().await.unwrap();
        Some(Self {
            dir,
            uploads,
            db,
            scope: Scope::new("alice"),
            completions,
            stores,
        })
    }

    fn object_storage(store: &Arc<dyn ObjectStore>, db: &DatabaseConnection) -> ObjectStorage {
        ObjectStorage::new(store.clone(), db.clone()).with_prefix(CHUNK_PREFIX)
    }

    fn storage(&self) -> Arc<dyn FileStorage> {
        self.uploads.storage()
    }

    /// Uploads `bytes` as `name` (in order, one chunk at a time); the token.
    async fn upload(&self, name: &str, bytes: &[u8]) -> UploadToken {
        common::upload_direct(&self.uploads, &self.scope, None, name, bytes).await
    }

    /// The same for the registered field `cover` (its own chunk directory when local).
    async fn upload_cover(&self, name: &str, bytes: &[u8]) -> UploadToken {
        common::upload_direct(&self.uploads, &self.scope, Some("cover"), name, bytes).await
    }

    async fn file<C: sea_orm_resumable::field::FileFieldOptions>(
        &self,
        token: &UploadToken,
    ) -> Result<ResumableFileField<C>, FileFieldError> {
        ResumableFileField::from_token(&self.uploads, &self.scope, token.as_str()).await
    }

    async fn insert_document(&self, title: &str, token: &UploadToken) -> document::Model {
        document::ActiveModel {
            title: Set(title.into()),
            file: Set(self.file::<DocumentFile>(token).await.unwrap()),
            created_at: Set(chrono::Utc::now()),
            ..Default::default()
        }
        .insert(&self.db)
        .await
        .unwrap()
    }

    /// Stores a file at `path` directly, as something other than this crate would.
    async fn put_file(&self, path: &str, bytes: &'static [u8]) {
        match &self.stores {
            None => {
                let file = self.dir.path().join("media").join(path);
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                std::fs::write(file, bytes).unwrap();
            }
            Some((_, files)) => {
                let key = ObjectPath::parse(path).unwrap();
                files.put(&key, bytes.into()).await.unwrap();
            }
        }
    }

    async fn sha256_of(&self, path: &str) -> String {
        sha256(&read_all(&*self.storage(), path).await.unwrap())
    }

    /// What is left of uploads: chunk files (local) or objects under the chunks' prefix
    /// and ledger rows (shared).
    async fn upload_leftovers(&self) -> Vec<String> {
        match &self.stores {
            None => common::files_under(&self.dir.path().join("media/resumable_chunks"))
                .into_iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect(),
            Some((store, _)) => {
                let mut left: Vec<String> = store
                    .list(Some(&ObjectPath::from(CHUNK_PREFIX)))
                    .map_ok(|o| o.location.to_string())
                    .try_collect()
                    .await
                    .unwrap();
                for table in ["resumable_upload", "resumable_chunk", "resumable_save"] {
                    let row = self
                        .db
                        .query_one_raw(sea_orm::Statement::from_string(
                            self.db.get_database_backend(),
                            format!("SELECT COUNT(*) AS n FROM {table}"),
                        ))
                        .await
                        .unwrap()
                        .unwrap();
                    let n: i64 = row.try_get("", "n").unwrap();
                    if n > 0 {
                        left.push(format!("{n} rows in {table}"));
                    }
                }
                left
            }
        }
    }
}

/// Runs each named `async fn name(kind: Kind)` as three tests, `local::name`,
/// `object_fs::name` and `s3::name`.
macro_rules! on_every_storage {
    ($($name:ident),+ $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Kind::Local).await
                }
            )+
        }
        mod object_fs {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Kind::ObjectFs).await
                }
            )+
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Kind::S3).await
                }
            )+
        }
    };
}

on_every_storage!(
    chunks_in_any_order_and_twice_complete_once_and_the_saved_file_is_in_storage,
    the_same_name_saved_at_once_gets_unique_names_and_never_overwrites,
    a_failed_insert_loses_nothing_and_the_upload_saves_again,
    an_update_deletes_the_replaced_file_when_the_field_says_so,
    paths_outside_storage_or_into_the_chunks_are_refused,
    url_links_to_the_file,
    delete_removes_the_file_and_a_missing_file_is_not_found,
    an_incomplete_or_foreign_upload_cannot_be_saved,
    a_fields_size_and_content_types_are_checked_at_the_first_chunk,
    a_stalled_chunk_body_is_cut_off_and_the_chunk_can_be_sent_again,
    the_form_checks_content_types_from_the_stored_bytes,
    a_reservation_left_by_an_earlier_upload_of_the_same_file_does_not_block_or_remove_the_new_one,
    uploads_count_against_the_quotas_until_a_row_saves_them,
);

/// Complete uploads not yet saved count, on every backend (on object storage the ledger
/// holds the counts for every server); a save gives the place back.
async fn uploads_count_against_the_quotas_until_a_row_saves_them(kind: Kind) {
    let Some(f) = Fixture::new_with(kind, |settings| {
        settings.max_open_uploads = 3;
        settings.max_client_uploads = 4;
    })
    .await
    else {
        return;
    };
    let send = |scope: Scope, identifier: String| {
        let uploads = f.uploads.clone();
        async move {
            let params = params(&identifier, 1, 1, 1, None);
            uploads.receive_chunk(&scope, &params, body(vec![7])).await
        }
    };
    let from = |name: &str| Scope::new(name).with_client("192.0.2.9".parse().unwrap());
    let mut tokens = Vec::new();
    for n in 0..3 {
        let status = send(from("alice"), format!("tiny{n}")).await.unwrap();
        assert!(status.complete, "complete on its first request");
        tokens.push(status.token);
    }
    let refused = send(from("alice"), "tiny3".into()).await.unwrap_err();
    assert_eq!(refused.status(), 400);
    assert!(
        refused.to_string().contains("at most 3 per user"),
        "{refused}"
    );
    // Another user from the same address: one more place there, then the address is full.
    send(from("bob"), "b0".into()).await.unwrap();
    let refused = send(from("carol"), "c0".into()).await.unwrap_err();
    assert!(
        refused.to_string().contains("network address (at most 4)"),
        "{refused}"
    );
    // A row saves one of alice's: its place is free again.
    f.insert_document("saved", &tokens[0]).await;
    send(from("alice"), "tiny3".into()).await.unwrap();
}

/// Chunk `number` of a `total`-byte file in 1000-byte chunks (the last holds the rest).
fn params(
    identifier: &str,
    number: u64,
    len: u64,
    total: u64,
    field: Option<&str>,
) -> sea_orm_resumable::ChunkParams {
    sea_orm_resumable::ChunkParams {
        chunk_number: number,
        chunk_size: 1000,
        current_chunk_size: len,
        total_size: total,
        identifier: identifier.into(),
        filename: format!("{identifier}.bin"),
        relative_path: None,
        content_type: None,
        file_part: "file".into(),
        field: field.map(str::to_owned),
    }
}

fn body(
    bytes: Vec<u8>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send {
    futures_util::stream::iter([Ok(bytes::Bytes::from(bytes))])
}

/// `documents/<year>/<month>/` today (UTC), as `upload_to: "documents/%Y/%m"` gives.
fn this_month() -> String {
    chrono::Utc::now().format("documents/%Y/%m/").to_string()
}

/// Sends the chunks of `bytes` shuffled, 4 at a time, each twice; the token.
async fn upload_shuffled_twice(f: &Fixture, name: &str, bytes: &[u8]) -> UploadToken {
    use rand::seq::SliceRandom;
    let chunk = common::DIRECT_CHUNK;
    let total = bytes.len() as u64;
    let count = (total / chunk).max(1);
    let identifier = format!("{total}-{name}");
    let mut numbers: Vec<u64> = (1..=count).chain(1..=count).collect();
    numbers.shuffle(&mut rand::rng());
    let sent = futures_util::stream::iter(numbers.into_iter().map(|n| {
        let start = (n - 1) * chunk;
        let end = if n == count { total } else { n * chunk };
        let params = sea_orm_resumable::ChunkParams {
            chunk_number: n,
            chunk_size: chunk,
            current_chunk_size: end - start,
            total_size: total,
            identifier: identifier.clone(),
            filename: name.into(),
            relative_path: None,
            content_type: None,
            file_part: "file".into(),
            field: None,
        };
        let body = bytes::Bytes::copy_from_slice(&bytes[start as usize..end as usize]);
        let (uploads, scope) = (f.uploads.clone(), f.scope.clone());
        async move {
            let body = futures_util::stream::iter([Ok::<_, std::io::Error>(body)]);
            uploads.receive_chunk(&scope, &params, body).await.unwrap()
        }
    }));
    let statuses: Vec<_> =
        futures_util::StreamExt::collect(futures_util::StreamExt::buffer_unordered(sent, 4)).await;
    statuses
        .into_iter()
        .find(|s| s.complete)
        .expect("some answer says complete")
        .token
}

async fn chunks_in_any_order_and_twice_complete_once_and_the_saved_file_is_in_storage(kind: Kind) {
    let Some(f) = Fixture::new(kind).await else {
        return;
    };
    let bytes = random_bytes(600_000, 1);
    let token = upload_shuffled_twice(&f, "Annual Report.pdf", &bytes).await;
    assert_eq!(f.completions.load(Ordering::SeqCst), 1, "completed once");
    let status = f
        .uploads
        .upload_status(&f.scope, token.as_str(), None)
        .await
        .unwrap();
    assert!(
        status.complete && status.size == bytes.len() as u64,
        "{status:?}"
    );

    let saved = f.insert_document("Report", &token).await;
    let path = saved.file.path().unwrap().to_owned();
    assert_eq!(path, format!("{}Annual_Report.pdf", this_month()));
    let storage = f.storage();
    assert!(storage.exists(&path).await.unwrap());
    assert_eq!(storage.size(&path).await.unwrap(), bytes.len() as u64);
    assert_eq!(f.sha256_of(&path).await, sha256(&bytes));
    assert_eq!(f.upload_leftovers().await, Vec::<String>::new());
    assert!(
        matches!(
            f.file::<DocumentFile>(&token).await,
            Err(FileFieldError::UnknownUpload)
        ),
        "a saved upload cannot be claimed twice"
    );
    let loaded = document::Entity::find_by_id(saved.id)
        .one(&f.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.file.path(), Some(path.as_str()));
    let read: Vec<bytes::Bytes> = loaded
        .file
        .read_in(&*storage)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(sha256(&read.concat()), sha256(&bytes));
}

async fn the_same_name_saved_at_once_gets_unique_names_and_never_overwrites(kind: Kind) {
    let Some(f) = Fixture::new(kind).await else {
        return;
    };
    let f = Arc::new(f);
    // A file at the target put there by something else (no row names it).
    let kept = format!("{}same.bin", this_month());
    f.put_file(&kept, b"keep me").await;
    let mut tasks = Vec::new();
    for i in 0..6u64 {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let bytes = random_bytes(50_000 + i as usize, 100 + i);
            let token = f.upload("same.bin", &bytes).await;
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
        assert_eq!(f.sha256_of(&path).await, hash, "{path} has its own bytes");
        assert!(paths.insert(path), "names are unique");
    }
    assert_eq!(
        f.sha256_of(&kept).await,
        sha256(b"keep me"),
        "not overwritten"
    );
    assert_eq!(f.upload_leftovers().await, Vec::<String>::new());
}

async fn a_failed_insert_loses_nothing_and_the_upload_saves_again(kind: Kind) {
    let Some(f) = Fixture::new(kind).await else {
        return;
    };
    let first = f
        .insert_document("First", &f.upload("first.txt", b"first").await)
        .await;
    let bytes = random_bytes(150_000, 9);
    let token = f.upload("second.txt", &bytes).await;
    // Same primary key as an existing row: the INSERT fails (twice).
    for _ in 0..2 {
        let clash = document::ActiveModel {
            id: Set(first.id),
            title: Set("Clash".into()),
            file: Set(f.file::<DocumentFile>(&token).await.unwrap()),
            created_at: Set(chrono::Utc::now()),
            ..Default::default()
        };
        assert!(clash.insert(&f.db).await.is_err(), "duplicate key refused");
    }
    let wanted = format!("{}second.txt", this_month());
    assert!(
        !f.storage().exists(&wanted).await.unwrap(),
        "no file for a row that was not stored"
    );
    assert_eq!(document::Entity::find().count(&f.db).await.unwrap(), 1);
    let saved = f.insert_document("Second", &token).await;
    assert_eq!(saved.file.path(), Some(wanted.as_str()));
    assert_eq!(f.sha256_of(&wanted).await, sha256(&bytes));
    assert_eq!(f.upload_leftovers().await, Vec::<String>::new());
}

async fn an_update_deletes_the_replaced_file_when_the_field_says_so(kind: Kind) {
    let Some(f) = Fixture::new(kind).await else {
        return;
    };
    let file = f.upload("main.txt", b"main").await;
    let old_cover = f.upload_cover("old.png", b"old cover").await;
    let row = attachment::ActiveModel {
        owner: Set(7),
        file: Set(f.file::<OwnerFile>(&file).await.unwrap()),
        cover: Set(Some(f.file::<CoverFile>(&old_cover).await.unwrap())),
        ..Default::default()
    }
    .insert(&f.db)
    .await
    .unwrap();
    assert_eq!(
        row.file.path(),
        Some("users/7/main.txt"),
        "upload_to from the model"
    );
    let old = row.cover.as_ref().unwrap().path().unwrap().to_owned();
    assert_eq!(old, "covers/old.png");

    let new_cover = f.upload_cover("new.png", b"new cover").await;
    let mut update: attachment::ActiveModel = row.into();
    update.cover = Set(Some(f.file::<CoverFile>(&new_cover).await.unwrap()));
    let updated = update.update(&f.db).await.unwrap();
    let new = updated.cover.unwrap().path().unwrap().to_owned();
    assert_eq!(new, "covers/new.png");
    assert_eq!(f.sha256_of(&new).await, sha256(b"new cover"));
    assert!(
        !f.storage().exists(&old).await.unwrap(),
        "replaced file deleted"
    );
    assert_eq!(f.sha256_of("users/7/main.txt").await, sha256(b"main"));
}

async fn paths_outside_storage_or_into_the_chunks_are_refused(kind: Kind) {
    let Some(f) = Fixture::new(kind).await else {
        return;
    };
    let storage = f.storage();
    let chunk_dir = match kind {
        Kind::Local => "resumable_chunks/x",
        _ => "resumable/complete/x",
    };
    for bad in [
        "../secret",
        "/etc/passwd",
        "a/../../b",
        "",
        "a//b",
        chunk_dir,
    ] {
        for result in [
            storage.exists(bad).await.map(|_| ()),
            storage.size(bad).await.map(|_| ()),
            storage.read(bad).await.map(|_| ()),
            storage.delete(bad).await,
        ] {
            let e = result.expect_err(bad);
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}: {e}");
        }
    }
    // A stored path set by hand is checked at save.
    let row = document::ActiveModel {
        title: Set("bad".into()),
        file: Set(ResumableFileField::stored("../outside.txt")),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(&f.db)
    .await;
    assert!(row.is_err());
}

async fn url_links_to_the_file(kind: Kind) {
    let Some(f) = Fixture::new(kind).await else {
        return;
    };
    let bytes = random_bytes(70_000, 3);
    let saved = f
        .insert_document("linked", &f.upload("ä b.bin", &bytes).await)
        .await;
    let url = saved
        .file
        .url_in(&*f.storage(), Duration::from_secs(60))
        .await;
    match kind {
        // The app's own media URL, served by the app.
        Kind::Local => assert_eq!(url.unwrap(), format!("/media/{}%C3%A4_b.bin", this_month())),
        // A directory store cannot sign: the app serves the bytes itself.
        Kind::ObjectFs => assert!(
            matches!(&url, Err(FileFieldError::Io(e)) if e.kind() == ErrorKind::Unsupported),
            "{url:?}"
        ),
        // A presigned URL the browser fetches from the store directly.
        Kind::S3 => {
            let fetched = reqwest::get(url.unwrap()).await.unwrap();
            assert_eq!(fetched.status(), 200);
            assert_eq!(sha256(&fetched.bytes().await.unwrap()), sha256(&bytes));
        }
    }
}

async fn delete_removes_the_file_and_a_missing_file_is_not_found(kind: Kind) {
    let Some(f) = Fixture::new(kind).await else {
        return;
    };
    let saved = f
        .insert_document("gone", &f.upload("gone.txt", b"bye").await)
        .await;
    let path = saved.file.path().unwrap();
    let storage = f.storage();
    storage.delete(path).await.unwrap();
    assert!(!storage.exists(path).await.unwrap());
    assert_eq!(
        storage.size(path).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let read = storage.read(path).await.map(|_| ());
    assert_eq!(read.unwrap_err().kind(), ErrorKind::NotFound);
    storage.delete(path).await.expect("deleting twice is fine");
}

async fn an_incomplete_or_foreign_upload_cannot_be_saved(kind: Kind) {
    let Some(f) = Fixture::new(kind).await else {
        return;
    };
    // Chunk 1 of 3 only.
    let params = sea_orm_resumable::ChunkParams {
        chunk_number: 1,
        chunk_size: 1000,
        current_chunk_size: 1000,
        total_size: 3000,
        identifier: "3000-partial".into(),
        filename: "partial.bin".into(),
        relative_path: None,
        content_type: None,
        file_part: "file".into(),
        field: None,
    };
    let body =
        futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(vec![7u8; 1000]))]);
    let status = f
        .uploads
        .receive_chunk(&f.scope, &params, body)
        .await
        .unwrap();
    assert!(
        !status.complete && status.chunks_received == 1,
        "{status:?}"
    );
    assert!(matches!(
        f.file::<DocumentFile>(&status.token).await,
        Err(FileFieldError::Incomplete {
            received: 1,
            total: 3
        })
    ));
    // Bob cannot use Alice's token.
    let token = f.upload("alice.txt", b"alice's").await;
    let bob = ResumableFileField::<DocumentFile>::from_token(
        &f.uploads,
        &Scope::new("bob"),
        token.as_str(),
    )
    .await;
    assert!(matches!(bob, Err(FileFieldError::Token(_))), "{bob:?}");
}

async fn a_fields_size_and_content_types_are_checked_at_the_first_chunk(kind: Kind) {
    let Some(f) = Fixture::new(kind).await else {
        return;
    };
    use sea_orm_resumable::UploadError;
    // Too large for the field: refused at once, by test and upload requests alike.
    let big = params("big", 1, 1000, 200_000, Some("pdf"));
    assert!(matches!(
        f.uploads.test_chunk(&f.scope, &big).await,
        Err(UploadError::BadRequest(_))
    ));
    let sent = f
        .uploads
        .receive_chunk(&f.scope, &big, body(vec![0; 1000]))
        .await;
    assert!(matches!(sent, Err(UploadError::BadRequest(_))), "{sent:?}");
    // Not a PDF: chunk 2 is taken, chunk 1 shows the type and is refused, so the upload
    // never completes.
    let mut exe = vec![0u8; 1500];
    exe[..2].copy_from_slice(b"MZ");
    let second = params("exe", 2, 500, 1500, Some("pdf"));
    f.uploads
        .receive_chunk(&f.scope, &second, body(exe[1000..].to_vec()))
        .await
        .unwrap();
    let first = params("exe", 1, 1000, 1500, Some("pdf"));
    let refused = f
        .uploads
        .receive_chunk(&f.scope, &first, body(exe[..1000].to_vec()))
        .await;
    assert!(
        matches!(refused, Err(UploadError::UnsupportedMediaType(_))),
        "{refused:?}"
    );
    assert!(
        f.uploads
            .test_chunk(&f.scope, &first)
            .await
            .unwrap()
            .is_none(),
        "chunk 1 not kept"
    );
    // A PDF goes through and completes.
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.resize(1500, b' ');
    let first = params("pdf", 1, 1000, 1500, Some("pdf"));
    let second = params("pdf", 2, 500, 1500, Some("pdf"));
    f.uploads
        .receive_chunk(&f.scope, &first, body(pdf[..1000].to_vec()))
        .await
        .unwrap();
    let done = f
        .uploads
        .receive_chunk(&f.scope, &second, body(pdf[1000..].to_vec()))
        .await
        .unwrap();
    assert!(done.complete);
}

async fn a_stalled_chunk_body_is_cut_off_and_the_chunk_can_be_sent_again(kind: Kind) {
    let Some(f) = Fixture::new(kind).await else {
        return;
    };
    // 400 of 1000 bytes, then silence past the 300 ms idle timeout.
    let stalled = futures_util::StreamExt::chain(
        futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(vec![1u8; 400]))]),
        futures_util::stream::pending(),
    );
    let chunk = params("stall", 1, 1000, 1000, None);
    let started = std::time::Instant::now();
    let cut = tokio::time::timeout(
        Duration::from_secs(5),
        f.uploads.receive_chunk(&f.scope, &chunk, stalled),
    )
    .await
    .expect("the stalled body is given up on within its idle timeout");
    assert!(
        matches!(cut, Err(sea_orm_resumable::UploadError::Retry(_))),
        "a slow client is told to retry: {cut:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "not before the timeout"
    );
    assert!(
        f.uploads
            .test_chunk(&f.scope, &chunk)
            .await
            .unwrap()
            .is_none(),
        "nothing kept"
    );
    let sent = f
        .uploads
        .receive_chunk(&f.scope, &chunk, body(vec![2u8; 1000]))
        .await
        .unwrap();
    assert!(sent.complete);
    let saved = f.insert_document("stalled", &sent.token).await;
    assert_eq!(
        f.sha256_of(saved.file.path().unwrap()).await,
        sha256(&[2u8; 1000])
    );
}

async fn the_form_checks_content_types_from_the_stored_bytes(kind: Kind) {
    let Some(f) = Fixture::new(kind).await else {
        return;
    };
    use sea_orm_resumable::form::FileInput;
    // Sent without naming the field, so only the form can check.
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.resize(3000, b' ');
    let token = f.upload("real.pdf", &pdf).await;
    let input = FileInput::<SmallPdf>::new(token.as_str());
    assert!(input.clean(&f.uploads, &f.scope).await.is_ok());
    let mut exe = vec![0u8; 3000];
    exe[..2].copy_from_slice(b"MZ");
    let token = f.upload("fake.pdf", &exe).await;
    let refused = FileInput::<SmallPdf>::new(token.as_str())
        .clean(&f.uploads, &f.scope)
        .await;
    assert!(
        matches!(&refused, Err(FileFieldError::ContentType { found, .. }) if found != "application/pdf"),
        "{refused:?}"
    );
}

/// Shared mode only: a save that stopped after removing its upload but before ending its
/// reservation (a crash) leaves the reservation; the same file uploaded again (same key, a
/// new upload) is neither refused nor removed by recovery, and saves.
async fn a_reservation_left_by_an_earlier_upload_of_the_same_file_does_not_block_or_remove_the_new_one(
    kind: Kind,
) {
    use sea_orm_resumable::testing::{ChunkLedger, Reserved, SaveDestination};
    if kind == Kind::Local {
        return; // local saves keep their reservations as files (tests/kill_nine.rs)
    }
    let Some(f) = Fixture::new(kind).await else {
        return;
    };
    let old_bytes = random_bytes(200_000, 31);
    let token = upload_shuffled_twice(&f, "again.bin", &old_bytes).await;
    let old = f.insert_document("old", &token).await;
    let old_path = old.file.path().unwrap().to_owned();
    // The crash: the old save's reservation is still there.
    let ledger = ChunkLedger::new(f.db.clone());
    let key =
        sea_orm_resumable::UploadKey::derive(&f.scope, &format!("{}-again.bin", old_bytes.len()));
    let row = SaveDestination {
        schema: None,
        table: "document".into(),
        column: "file".into(),
    };
    let left = ledger
        .reserve_save((&key, "the-old-upload"), &old_path, &old_path, &row)
        .await
        .unwrap();
    assert!(matches!(left, Reserved::Yes(_)));
    // The same file name and size again: the same key, a new upload.
    let new_bytes = random_bytes(200_000, 32);
    let token = upload_shuffled_twice(&f, "again.bin", &new_bytes).await;
    f.uploads.recover_saves(&f.db).await.unwrap();
    assert!(
        f.uploads
            .upload_status(&f.scope, token.as_str(), None)
            .await
            .unwrap()
            .complete,
        "recovery left the new upload alone"
    );
    let new = f.insert_document("new", &token).await;
    let new_path = new.file.path().unwrap().to_owned();
    assert_ne!(new_path, old_path);
    assert_eq!(f.sha256_of(&new_path).await, sha256(&new_bytes));
    assert_eq!(
        f.sha256_of(&old_path).await,
        sha256(&old_bytes),
        "the old file kept"
    );
    assert_eq!(f.upload_leftovers().await, Vec::<String>::new());
}
