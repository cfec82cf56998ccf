//! [`ObjectFiles`]: stored files in a bucket, through the `object_store` crate.

use futures_util::{StreamExt, TryStreamExt};
use object_store::{
    ObjectStore, ObjectStoreExt,
    path::Path as ObjectPath,
    signer::{Method, Signer},
};
use std::{io, sync::Arc, time::Duration};

use super::{ByteStream, FileStorage, invalid};
use crate::storage::media::check_relative;

pub(crate) mod chunks;
mod uploads;
pub(crate) use uploads::ObjectUploads;

/// Uploads and saved files on object storage (S3, GCS, Azure and S3-compatible stores,
/// through the `object_store` crate), with which chunks are in kept in the app's database
/// (the tables of [`ledger::create_tables`](crate::ledger::create_tables)): every server
/// built with the same store and database serves the same uploads, so a load balancer
/// may send each chunk anywhere. Give it to [`UploadsBuilder::object_storage`](crate::UploadsBuilder::object_storage).
///
/// Each chunk is one object under a prefix (default `resumable`: `<prefix>/chunks/<key>/…`);
/// the one server that completes an upload assembles its file at
/// `<prefix>/complete/<key>` by streaming the chunks, in order, into a multipart upload of
/// 8 MiB parts (4 in flight: memory stays bounded whatever the size), or, with
/// [`with_parts`](Self::with_parts), as one request. Saving a model copies the file to the
/// key its column holds: a server-side copy within one store up to
/// [`SERVER_COPY_LIMIT`], streamed beyond it or between two stores.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use sea_orm::{ConnectionTrait, Database};
/// use sea_orm_resumable::{Secret, Settings, Uploads, ledger::create_tables};
/// use sea_orm_resumable::storage::object::{ObjectFiles, ObjectStorage};
/// use std::sync::Arc;
///
/// let db = Database::connect("sqlite::memory:").await.unwrap();
/// for table in create_tables() {
///     db.execute(&table).await.unwrap();
/// }
/// // In production: object_store::aws::AmazonS3Builder (and `with_signer` for URLs).
/// let bucket = Arc::new(object_store::memory::InMemory::new());
/// let storage = ObjectStorage::new(bucket.clone(), db)
///     .with_prefix("uploads/tmp")
///     .with_files(ObjectFiles::new(bucket));
/// # let media = tempfile::tempdir().unwrap();
/// let uploads = Uploads::builder(Settings::new(media.path()), Secret::generate())
///     .object_storage(storage)
///     .build()
///     .await
///     .unwrap();
/// assert!(uploads.is_shared());
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct ObjectStorage {
    pub(crate) chunks: chunks::ObjectChunks,
    pub(crate) files: ObjectFiles,
}

impl ObjectStorage {
    /// Chunks and saved files in `store`, chunks under the prefix `resumable`, which
    /// chunks are in kept in `db`.
    pub fn new(store: Arc<dyn ObjectStore>, db: sea_orm::DatabaseConnection) -> Self {
        let ledger = crate::storage::ledger::ChunkLedger::new(db);
        Self {
            chunks: chunks::ObjectChunks::new(store.clone(), ledger),
            files: ObjectFiles::new(store),
        }
    }

    /// Chunks under `prefix` instead (e.g. one per app sharing a bucket). Stored paths
    /// under it are refused.
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.chunks = self.chunks.with_prefix(prefix);
        self
    }

    /// Lets chunks of 5–64 MiB go straight in as the parts of one multipart upload per
    /// file (`parts` is the same store seen as a [`MultipartStore`]: S3, GCS, Azure,
    /// InMemory), so completion is one request instead of a pass over the bytes. Each such
    /// chunk is held in memory while it is sent (chunk size × requests in flight). Smaller
    /// or larger chunks, and files of more than 10,000 chunks, still go one object per
    /// chunk. Configure every server alike.
    ///
    /// [`MultipartStore`]: object_store::multipart::MultipartStore
    pub fn with_parts(mut self, parts: Arc<dyn object_store::multipart::MultipartStore>) -> Self {
        self.chunks = self.chunks.with_parts(parts);
        self
    }

    /// How long a server's claim to assemble an upload holds before another may take it
    /// over (default 10 minutes; a live assembler renews it every third of it).
    pub fn with_lease(mut self, lease: std::time::Duration) -> Self {
        self.chunks = self.chunks.with_ledger_lease(lease);
        self
    }

    /// Saved files go to `files` (another bucket, a signer for their URLs, a copy limit)
    /// instead of the chunks' store.
    pub fn with_files(mut self, files: ObjectFiles) -> Self {
        self.files = files;
        self
    }

    /// The saved files, with the chunks' keys kept out of reach.
    pub(crate) fn private_files(&self) -> ObjectFiles {
        let prefix = self.chunks.prefix().as_ref();
        if prefix.is_empty() {
            // Chunks at the top of the bucket: their two directories are off limits.
            self.files
                .clone()
                .with_private("chunks")
                .with_private("complete")
        } else {
            self.files.clone().with_private(prefix)
        }
    }
}

/// The largest object a server-side copy makes: S3's `CopyObject` stops at 5 GiB.
pub const SERVER_COPY_LIMIT: u64 = 5 << 30;

/// Stored files as objects: the file column's path is the object key. Saving a model
/// copies the assembled upload to that key: a server-side copy when chunks and files are
/// in the same store, up to [`SERVER_COPY_LIMIT`]; streamed through the app beyond it or
/// between two stores (e.g. a scratch bucket for chunks and a media bucket for files).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use object_store::{ObjectStoreExt, memory::InMemory, path::Path};
/// use sea_orm_resumable::storage::{FileStorage, object::ObjectFiles, read_all};
/// use std::sync::Arc;
/// let store = Arc::new(InMemory::new());
/// store.put(&Path::from("docs/a.txt"), "hello".into()).await.unwrap();
/// let files = ObjectFiles::new(store).with_private("resumable");
/// assert_eq!(read_all(&files, "docs/a.txt").await.unwrap(), b"hello");
/// assert!(files.size("resumable/complete/x").await.is_err(), "chunks are not files");
/// // InMemory cannot sign URLs; S3, GCS and Azure can (`with_signer`).
/// assert!(files.url("docs/a.txt", std::time::Duration::from_secs(60)).await.is_err());
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct ObjectFiles {
    store: Arc<dyn ObjectStore>,
    signer: Option<Arc<dyn Signer>>,
    private: Vec<String>,
    copy_limit: u64,
}

impl ObjectFiles {
    /// Files in `store`, at the keys their columns hold.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            signer: None,
            private: Vec::new(),
            copy_limit: SERVER_COPY_LIMIT,
        }
    }

    /// Presigns [`FileStorage::url`]s with `signer` (the same client: `AmazonS3`,
    /// `GoogleCloudStorage` and `MicrosoftAzure` are signers).
    ///
    /// ```no_run
    /// use object_store::aws::AmazonS3Builder;
    /// use sea_orm_resumable::storage::object::ObjectFiles;
    /// use std::sync::Arc;
    /// let s3 = Arc::new(AmazonS3Builder::from_env().with_bucket_name("media").build().unwrap());
    /// let files = ObjectFiles::new(s3.clone()).with_signer(s3);
    /// ```
    pub fn with_signer(mut self, signer: Arc<dyn Signer>) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Keeps keys under `prefix` (the chunks' prefix) out of reach: no stored path may
    /// name them.
    pub fn with_private(mut self, prefix: &str) -> Self {
        let prefix = prefix.trim_matches('/').to_owned();
        if !prefix.is_empty() {
            self.private.push(prefix);
        }
        self
    }

    /// Copies objects larger than `bytes` by streaming them through the app instead of a
    /// server-side copy (default [`SERVER_COPY_LIMIT`], S3's; lower it for a store with a
    /// smaller limit).
    pub fn with_server_copy_limit(mut self, bytes: u64) -> Self {
        self.copy_limit = bytes;
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The object key of the stored path `path`, refused if not plain or private.
    pub fn key(&self, path: &str) -> io::Result<ObjectPath> {
        check_relative(path).map_err(invalid)?;
        let private = self.private.iter().any(|dir| {
            path == dir
                || path
                    .strip_prefix(dir.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        });
        if private {
            return Err(invalid(format!("{path:?} is in a private directory")));
        }
        ObjectPath::parse(path).map_err(invalid)
    }

    /// Copies the object `from` (of `size` bytes) of `from_store` to the stored path
    /// `path`, unless an object is there already (a save being finished again after a
    /// crash): a server-side copy within one store, up to the copy limit; else streamed.
    pub(crate) async fn copy_in(
        &self,
        from_store: &Arc<dyn ObjectStore>,
        from: &ObjectPath,
        path: &str,
        size: u64,
    ) -> io::Result<()> {
        let to = self.key(path)?;
        if self.exists(path).await? {
            return Ok(());
        }
        if Arc::ptr_eq(from_store, &self.store) && size <= self.copy_limit {
            return self.store.copy(from, &to).await.map_err(to_io);
        }
        if size == 0 {
            // S3 has no multipart upload without a part.
            from_store.head(from).await.map_err(to_io)?;
            return self
                .store
                .put(&to, Default::default())
                .await
                .map(|_| ())
                .map_err(to_io);
        }
        crate::storage::object::chunks::concatenate(
            &**from_store,
            std::slice::from_ref(from),
            &*self.store,
            &to,
        )
        .await
        .map_err(|e| match e {
            crate::storage::object::chunks::Concatenate::Missing(_) => io::Error::new(
                io::ErrorKind::NotFound,
                format!("the upload's file {from} is gone"),
            ),
            crate::storage::object::chunks::Concatenate::Store(e) => to_io(e),
        })
    }
}

/// An `object_store` error as an I/O error (`NotFound` kept).
pub(crate) fn to_io(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e),
        object_store::Error::NotSupported { .. } => io::Error::new(io::ErrorKind::Unsupported, e),
        e => io::Error::other(e),
    }
}

#[async_trait::async_trait]
impl FileStorage for ObjectFiles {
    async fn exists(&self, path: &str) -> io::Result<bool> {
        match self.store.head(&self.key(path)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(to_io(e)),
        }
    }

    async fn size(&self, path: &str) -> io::Result<u64> {
        Ok(self.store.head(&self.key(path)?).await.map_err(to_io)?.size)
    }

    async fn read(&self, path: &str) -> io::Result<ByteStream> {
        let object = self.store.get(&self.key(path)?).await.map_err(to_io)?;
        Ok(object.into_stream().map_err(to_io).boxed())
    }

    async fn url(&self, path: &str, expires_in: Duration) -> io::Result<String> {
        let key = self.key(path)?;
        let Some(signer) = &self.signer else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this store has no signer: serve the file through the app (read)",
            ));
        };
        let url = signer
            .signed_url(Method::GET, &key, expires_in)
            .await
            .map_err(to_io)?;
        Ok(url.to_string())
    }

    async fn delete(&self, path: &str) -> io::Result<()> {
        match self.store.delete(&self.key(path)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(to_io(e)),
        }
    }
}
