//! Chunks on object storage (S3 and whatever else [`object_store`] reaches), shared by
//! several servers (the endpoint uses it in shared mode:
//! [`UploadsBuilder::object_storage`](crate::UploadsBuilder::object_storage)): each chunk is one object, which chunks are in is kept in the
//! [`ChunkLedger`], and one server assembles the file, once: the first to claim it after
//! the last chunk is recorded (normally the one that recorded it).
//!
//! Where things go, under a prefix (default `resumable`):
//!
//! * `<prefix>/chunks/<key>/<number>` — one object per chunk, written before the chunk is
//!   recorded in the ledger, so a recorded chunk always has its bytes.
//! * `<prefix>/complete/<key>` — the assembled file, made by the one server that wins the
//!   ledger's claim. The chunk objects are deleted after it is made.
//!
//! **Assembly cost.** S3 composes an object server-side only from parts of at least
//! 5 MiB, one source range per part, and resumable.js sends 1 MiB chunks by default, so
//! assembly streams: the winner reads the chunks in order and writes them as a multipart
//! upload of [`ASSEMBLY_PART`] parts, with at most [`ASSEMBLY_PARTS_IN_FLIGHT`] parts in
//! flight. Memory stays bounded (about `ASSEMBLY_PART × (ASSEMBLY_PARTS_IN_FLIGHT + 1)`)
//! whatever the file size; time and traffic are one more pass over the bytes (store →
//! server → store), so completion of a large file takes as long as downloading and
//! uploading it once from the server. Run it where the bandwidth to the store is good.
//!
//! **Why `object_store` (Arrow's) and not Apache OpenDAL.** Chunks of one file arrive at
//! different servers. `object_store`'s [`MultipartStore`] exposes the multipart upload id
//! and each part's id, so any server can add a part to one upload and another can complete
//! it: with [`ObjectChunks::with_parts`] large chunks go straight in as parts and
//! completion is one request. OpenDAL's writer keeps the upload id to itself, so a
//! multipart upload cannot be shared between processes. Both reach S3 and S3-compatible
//! stores, GCS and Azure (this crate turns on `object_store`'s `aws` feature; add `gcp` or
//! `azure` in your own dependency on it), and `object_store` presigns URLs (`Signer`) for S3, GCS and
//! Azure. Loco's storage is built on OpenDAL; a Loco app passes an `object_store` client
//! for the same bucket here (the two coexist), and Loco keeps serving its own files.
//!
//! A chunk body is buffered up to [`SMALL_CHUNK`] and stored with one `PUT`; a larger one
//! is streamed as a multipart upload of its own, so memory per request is bounded too.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use sea_orm::{ConnectionTrait, Database};
//! use sea_orm_resumable::{ledger::create_tables, testing::ChunkLedger};
//! use sea_orm_resumable::testing::{ChunkOutcome, ObjectChunks};
//! use sea_orm_resumable::{Scope, UploadKey, UploadMeta};
//! use std::sync::Arc;
//!
//! let db = Database::connect("sqlite::memory:").await.unwrap();
//! for table in create_tables() {
//!     db.execute(&table).await.unwrap();
//! }
//! let store = Arc::new(object_store::memory::InMemory::new());
//! let chunks = ObjectChunks::new(store, ChunkLedger::new(db));
//! let key = UploadKey::derive(&Scope::anonymous(), "6-hello");
//! let meta = UploadMeta {
//!     scope: String::new(), identifier: "6-hello".into(), file_name: "hello.txt".into(),
//!     relative_path: None, content_type: None, total_size: 6, chunk_size: 3,
//!     created_at: 0, instance: "i".into(), client: None,
//! };
//! let body = |text: &'static str| {
//!     futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(text))])
//! };
//! let first = chunks.put_chunk(&key, &meta, 2, 3, body("lo!")).await.unwrap();
//! assert_eq!(first, ChunkOutcome::Recorded);
//! let last = chunks.put_chunk(&key, &meta, 1, 3, body("hel")).await.unwrap();
//! assert_eq!(last, ChunkOutcome::Completed);
//! assert_eq!(chunks.read_complete(&key).await.unwrap(), &b"hello!"[..]);
//! # });
//! ```

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt, TryStreamExt};
use object_store::{
    ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart,
    multipart::{MultipartStore, PartId},
    path::Path as ObjectPath,
};
use std::sync::Arc;

use crate::{
    UploadKey, UploadMeta,
    storage::ledger::{ChunkLedger, Claim, RecordedChunk, UploadState},
    storage::upload_store::{Commit, StoreError},
};

/// Chunk bodies up to this size are buffered and stored with one `PUT`; larger ones are
/// streamed as a multipart upload (S3's smallest part is 5 MiB).
pub const SMALL_CHUNK: usize = 8 << 20;

/// Part size of the multipart uploads this module makes.
pub const ASSEMBLY_PART: usize = 8 << 20;

/// Parts of one multipart upload in flight at once.
pub const ASSEMBLY_PARTS_IN_FLIGHT: usize = 4;

/// The smallest part S3 takes (but for the last one): chunks at least this large can go
/// straight in as parts ([`ObjectChunks::with_parts`]).
pub const MIN_PART: usize = 5 << 20;

/// The most parts of one S3 multipart upload.
pub const MAX_PARTS: u64 = 10_000;

/// The largest chunk size that goes in as parts: such a chunk is held in memory while it
/// is sent (the last chunk may be up to twice as large). Larger chunks go one object
/// each, streamed.
pub const MAX_PART_CHUNK: u64 = 64 << 20;

/// Why storing a chunk failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectChunksError {
    /// The body was shorter or longer than announced, or broke off.
    #[error(transparent)]
    Body(StoreError),
    /// The ledger already holds this upload with other sizes (another upload under the
    /// same identifier).
    #[error("the upload is known with another size or chunk size")]
    Mismatch,
    /// The object store failed.
    #[error(transparent)]
    Store(#[from] object_store::Error),
    /// The database failed.
    #[error(transparent)]
    Ledger(#[from] sea_orm::DbErr),
    /// The chunk number is 0, or its chunk would start past the end of the file.
    #[error("chunk {number} is not one of the file's (at most {most} chunks)")]
    BadNumber {
        /// The chunk number sent.
        number: u64,
        /// The most chunks the file can have: ⌈size / chunk size⌉ (at least 1).
        most: u64,
    },
    /// The recorded chunks do not make up the file (their sizes do not add up to its
    /// size); nothing is assembled.
    #[error("the recorded chunks ({chunks}, {bytes} bytes) do not make up the file")]
    Sizes {
        /// Chunks recorded.
        chunks: u64,
        /// Their bytes.
        bytes: u64,
    },
    /// The ledger counted every chunk, yet this one had no object; it is taken out of
    /// the ledger, so the client sends it again.
    #[error("chunk {0} was recorded but its object is missing: send it again")]
    MissingChunk(u64),
    /// The upload was removed (saved or expired) while the chunk came in.
    #[error("this upload no longer exists: send it again")]
    Gone,
    /// The chunk shares bytes with a chunk recorded at another place or with another
    /// size.
    #[error("chunk {number} overlaps chunks of this upload recorded otherwise")]
    Overlap {
        /// The chunk number sent.
        number: u64,
    },
    /// The assembly's claim ran out and another server took it over (this one stopped).
    #[error("another server took the assembly of this upload over")]
    ClaimLost,
}

/// What [`ObjectChunks::expire`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expired {
    /// Unfinished uploads.
    pub incomplete: usize,
    /// Complete uploads no model saved.
    pub complete: usize,
}

/// What storing a chunk did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// The chunk is in; the upload is not complete.
    Recorded,
    /// The chunk is in and this call assembled the complete file.
    Completed,
    /// The chunk is in and the upload is complete already.
    AlreadyComplete,
    /// The chunk is in and another call is assembling the file (ask again: a test
    /// request of any chunk tells when it is complete).
    Assembling,
}

/// Chunks of uploads on an object store, shared by every server using the same store and
/// database (see the module documentation). Cheap to clone.
#[derive(Clone)]
pub struct ObjectChunks {
    store: Arc<dyn ObjectStore>,
    parts: Option<Arc<dyn MultipartStore>>,
    ledger: ChunkLedger,
    prefix: ObjectPath,
}

impl std::fmt::Debug for ObjectChunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectChunks")
            .field("store", &self.store)
            .field("parts", &self.parts.is_some())
            .field("ledger", &self.ledger)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl ObjectChunks {
    /// Chunks in `store` under `resumable/`, recorded in `ledger`.
    pub fn new(store: Arc<dyn ObjectStore>, ledger: ChunkLedger) -> Self {
        Self {
            store,
            parts: None,
            ledger,
            prefix: ObjectPath::from("resumable"),
        }
    }

    /// Lets chunks of at least [`MIN_PART`] bytes go straight into one multipart upload
    /// per file, as its parts (`parts` is the same store seen as a [`MultipartStore`]:
    /// S3, GCS, Azure, InMemory). Any server can put a part, the upload id and each
    /// part's id are in the ledger, and completion is one request: no pass over the bytes
    /// after the last chunk. Each such chunk is held in memory while it is sent (chunk
    /// size × requests in flight). Smaller chunks, chunks over [`MAX_PART_CHUNK`], and
    /// files of more than [`MAX_PARTS`] chunks still go one object per chunk. Configure
    /// every server alike (with or without parts): the mode is decided per request from
    /// the upload's chunk size. A duplicate part overwrites the first one and the ledger
    /// keeps the first part id, which is right where the part id is the MD5 of the bytes
    /// (S3 without SSE-KMS/SSE-C; S3-compatible servers).
    ///
    /// ```
    /// # fn f(ledger: sea_orm_resumable::testing::ChunkLedger) {
    /// use sea_orm_resumable::testing::ObjectChunks;
    /// use std::sync::Arc;
    /// let store = Arc::new(object_store::memory::InMemory::new());
    /// let chunks = ObjectChunks::new(store.clone(), ledger).with_parts(store);
    /// # }
    /// ```
    pub fn with_parts(mut self, parts: Arc<dyn MultipartStore>) -> Self {
        self.parts = Some(parts);
        self
    }

    /// The multipart store, when chunks of this upload go in as parts.
    fn parts_for(&self, meta: &UploadMeta) -> Option<&Arc<dyn MultipartStore>> {
        self.parts.as_ref().filter(|_| {
            (MIN_PART as u64..=MAX_PART_CHUNK).contains(&meta.chunk_size)
                && meta.total_size > 0
                && most_chunks(meta) <= MAX_PARTS
        })
    }

    /// The same under another prefix (e.g. one per app sharing a bucket).
    ///
    /// ```
    /// # fn f(chunks: sea_orm_resumable::testing::ObjectChunks) {
    /// let chunks = chunks.with_prefix("uploads/tmp");
    /// # }
    /// ```
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = ObjectPath::from(prefix);
        self
    }

    /// The same with the ledger's claims holding for `lease`.
    pub(crate) fn with_ledger_lease(mut self, lease: std::time::Duration) -> Self {
        self.ledger = self.ledger.with_lease(lease);
        self
    }

    /// The prefix chunk and assembled objects are kept under.
    pub fn prefix(&self) -> &ObjectPath {
        &self.prefix
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The ledger chunks are recorded in.
    pub fn ledger(&self) -> &ChunkLedger {
        &self.ledger
    }

    fn chunk_path(&self, key: &UploadKey, number: u64) -> ObjectPath {
        self.prefix
            .clone()
            .join("chunks")
            .join(key.to_string())
            .join(number.to_string())
    }

    /// Where the assembled file of `key` is once complete.
    pub fn complete_path(&self, key: &UploadKey) -> ObjectPath {
        self.prefix.clone().join("complete").join(key.to_string())
    }

    /// Whether chunk `number` is in (for the client's test request).
    pub async fn has_chunk(&self, key: &UploadKey, number: u64) -> Result<bool, sea_orm::DbErr> {
        self.ledger.has(key, number).await
    }

    /// Stores chunk `number` (1-based) of the upload: exactly `len` bytes from `body`,
    /// then records it; the call whose chunk completes the file assembles it. The caller
    /// checks `len` against the upload's layout first ([`crate::service::layout::Layout::place`]):
    /// completion is decided by the recorded sizes adding up to the file's size.
    pub async fn put_chunk<S, E>(
        &self,
        key: &UploadKey,
        meta: &UploadMeta,
        number: u64,
        len: u64,
        body: S,
    ) -> Result<ChunkOutcome, ObjectChunksError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        self.store_chunk(key, meta, (number, len), body, Commit::Whole)
            .await?;
        self.finish(key).await
    }

    /// Stores and records chunk `number` as [`put_chunk`](Self::put_chunk) does, without
    /// assembling: the bytes from `(number − 1)·chunk size`, `len` of them, or with
    /// [`Commit::Prefix`] those that came before the body ended early (chunks that go in
    /// as parts are all or nothing). `None` if the chunk was in before (then nothing is
    /// read from `body`), else how many bytes are now recorded.
    pub(crate) async fn store_chunk<S, E>(
        &self,
        key: &UploadKey,
        meta: &UploadMeta,
        (number, len): (u64, u64),
        body: S,
        commit: Commit,
    ) -> Result<Option<u64>, ObjectChunksError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let most = most_chunks(meta);
        if number == 0 || number > most {
            return Err(ObjectChunksError::BadNumber { number, most });
        }
        let known = self.ledger.open(key, meta).await?;
        if known.total_size != meta.total_size || known.chunk_size != meta.chunk_size {
            return Err(ObjectChunksError::Mismatch);
        }
        if self.ledger.holds(key, number, len).await? {
            return Ok(None);
        }
        if self
            .ledger
            .clashes(key, meta.chunk_size, number, len)
            .await?
        {
            return Err(ObjectChunksError::Overlap { number });
        }
        if let Some(parts) = self.parts_for(meta) {
            return match self.put_part(parts, key, number, len, body).await? {
                Some(part) => Ok(self
                    .ledger
                    .record(key, number, len, Some(&part))
                    .await?
                    .then_some(len)),
                // The upload was completed meanwhile: a late duplicate.
                None => Ok(None),
            };
        }
        // A duplicate that raced the first copy (both found the chunk missing) writes the
        // same bytes to the same object; if the upload was assembled meanwhile, its copy
        // may land after the chunk objects were deleted and is deleted here.
        let path = self.chunk_path(key, number);
        let written = self.write_object(&path, len, body, commit).await?;
        if written == 0 && len > 0 {
            return Ok(Some(0));
        }
        if self.ledger.record(key, number, written, None).await? {
            return Ok(Some(written));
        }
        match self.ledger.state(key).await? {
            None => {
                // The upload was saved or expired while this chunk came in.
                self.store.delete(&path).await.or_else(not_found_is_fine)?;
                Err(ObjectChunksError::Gone)
            }
            Some(UploadState::Complete) => {
                self.store.delete(&path).await.or_else(not_found_is_fine)?;
                Ok(None)
            }
            Some(_) => Ok(None),
        }
    }

    /// Assembles the upload if every chunk is in and nobody else is at it: what the last
    /// chunk's request does, and what a test request should do once every chunk is in
    /// (an assembly that failed, or whose server died, is then taken up again: the
    /// client, told every chunk is there, sends nothing more).
    pub async fn finish(&self, key: &UploadKey) -> Result<ChunkOutcome, ObjectChunksError> {
        let token = match self.ledger.claim(key).await? {
            Claim::Won(token) => token,
            Claim::NotAllIn | Claim::Unknown => return Ok(ChunkOutcome::Recorded),
            Claim::Assembling => return Ok(ChunkOutcome::Assembling),
            Claim::Complete => return Ok(ChunkOutcome::AlreadyComplete),
        };
        let Some(meta) = self.ledger.meta(key).await? else {
            return Ok(ChunkOutcome::Recorded);
        };
        let parts = self.parts_for(&meta);
        let mut recorded = Vec::new();
        let assembly = async {
            recorded = self.check_chunks(key, &meta).await?;
            match parts {
                Some(parts) => self.complete_parts(parts, key, &meta).await,
                // S3 has no multipart upload without a part: an empty file is a PUT.
                None if meta.total_size == 0 => self
                    .store
                    .put(&self.complete_path(key), PutPayload::default())
                    .await
                    .map(|_| ())
                    .map_err(ObjectChunksError::from),
                None => self.assemble(key, &recorded).await,
            }
        };
        // The claim is renewed while the assembly runs, however long the file takes.
        let mut token = token;
        let assembled = {
            let mut assembly = std::pin::pin!(assembly);
            let every = self.ledger.lease() / 3;
            loop {
                tokio::select! {
                    done = &mut assembly => break done,
                    () = tokio::time::sleep(every) => {
                        match self.ledger.renew(key, token).await {
                            Ok(Some(renewed)) => token = renewed,
                            Ok(None) => break Err(ObjectChunksError::ClaimLost),
                            // Tried again at the next beat; the lease has two more.
                            Err(e) => tracing::warn!(%key, error = %e, "could not renew an assembly's claim"),
                        }
                    }
                }
            }
        };
        if let Err(e) = assembled {
            // A chunk whose object is gone (e.g. removed by a bucket rule) must be sent
            // again; the claim goes back so that the retry assembles at once, rather than
            // after the lease.
            if let ObjectChunksError::MissingChunk(lost) = e {
                self.ledger.forget_chunk(key, lost, token).await?;
            }
            self.ledger.release(key, token).await?;
            return Err(e);
        }
        if self.ledger.complete(key, token).await? {
            if parts.is_none() {
                // The upload is complete whatever happens to the chunk objects now; left
                // over, they go with the upload (`remove`).
                if let Err(e) = self.delete_chunks(key, &recorded).await {
                    tracing::warn!(%key, error = %e, "could not delete an assembled upload's chunks");
                }
            }
            Ok(ChunkOutcome::Completed)
        } else {
            // Our lease ran out meanwhile and another call took the claim over.
            Ok(ChunkOutcome::Assembling)
        }
    }

    /// Checks that the chunks in the ledger tile the file, each starting where the one
    /// before ends (chunk `n` at `(n − 1)·chunk size`) and the last ending at the file's
    /// end, before anything is assembled; returns them in order.
    async fn check_chunks(
        &self,
        key: &UploadKey,
        meta: &UploadMeta,
    ) -> Result<Vec<RecordedChunk>, ObjectChunksError> {
        let recorded = self.ledger.chunks(key).await?;
        let mut end = 0u64;
        for chunk in &recorded {
            let start = (chunk.number - 1).saturating_mul(meta.chunk_size);
            if start != end {
                return Err(ObjectChunksError::MissingChunk(
                    end / meta.chunk_size.max(1) + 1,
                ));
            }
            end = end.saturating_add(chunk.size);
        }
        if end != meta.total_size || recorded.is_empty() {
            return Err(ObjectChunksError::Sizes {
                chunks: recorded.len() as u64,
                bytes: end,
            });
        }
        Ok(recorded)
    }

    /// The whole assembled file (for tests and small files; stream large ones with the
    /// store's `get` of [`ObjectChunks::complete_path`]).
    pub async fn read_complete(&self, key: &UploadKey) -> Result<Bytes, object_store::Error> {
        self.store
            .get(&self.complete_path(key))
            .await?
            .bytes()
            .await
    }

    /// Forgets the upload: its ledger rows, chunk objects and assembled file.
    pub async fn remove(&self, key: &UploadKey) -> Result<(), ObjectChunksError> {
        let multipart_id = self.ledger.multipart_id(key).await?;
        self.remove_objects(key, multipart_id).await?;
        self.ledger.remove(key).await?;
        Ok(())
    }

    /// Deletes the upload's chunk objects and assembled file, and aborts its multipart
    /// upload (`multipart_id`) if any.
    async fn remove_objects(
        &self,
        key: &UploadKey,
        multipart_id: Option<String>,
    ) -> Result<(), ObjectChunksError> {
        if let (Some(parts), Some(id)) = (&self.parts, multipart_id) {
            // Fails harmlessly once the upload was completed.
            let _ = parts.abort_multipart(&self.complete_path(key), &id).await;
        }
        let prefix = self.prefix.clone().join("chunks").join(key.to_string());
        let chunk_objects = self.store.list(Some(&prefix)).map_ok(|o| o.location);
        self.delete_all(chunk_objects.boxed()).await?;
        self.store
            .delete(&self.complete_path(key))
            .await
            .or_else(not_found_is_fine)?;
        Ok(())
    }

    /// Removes uploads nobody finished within `incomplete_expiry` (counted from their last
    /// chunk) and complete ones no model saved within `complete_expiry` (see
    /// [`ChunkLedger::stale`]); returns how many of each. Run it from one server now and
    /// then, e.g. hourly.
    pub async fn expire(
        &self,
        incomplete_expiry: std::time::Duration,
        complete_expiry: std::time::Duration,
    ) -> Result<Expired, ObjectChunksError> {
        let stale = self
            .ledger
            .stale(incomplete_expiry, complete_expiry)
            .await?;
        let mut expired = Expired::default();
        for key in &stale {
            let complete = self.ledger.state(key).await? == Some(UploadState::Complete);
            let multipart_id = self.ledger.multipart_id(key).await?;
            // Forgotten in the ledger first, unless a save reserved it meanwhile (a save
            // checks the upload is still there after reserving): no save can then take
            // a file whose objects go next.
            if !self.ledger.remove_unless_saving(key).await? {
                continue;
            }
            self.remove_objects(key, multipart_id).await?;
            if complete {
                expired.complete += 1;
            } else {
                expired.incomplete += 1;
            }
        }
        Ok(expired)
    }

    /// Writes `len` bytes of `body` to `path`: one `PUT` when small, a multipart upload
    /// otherwise. With [`Commit::Whole`] exactly `len` bytes must come (the upload is
    /// aborted if the body goes wrong); with [`Commit::Prefix`] the bytes that came before
    /// it ended early are kept (none: no object). Returns how many bytes were written.
    async fn write_object<S, E>(
        &self,
        path: &ObjectPath,
        len: u64,
        body: S,
        commit: Commit,
    ) -> Result<u64, ObjectChunksError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let mut body = std::pin::pin!(body);
        let mut buffer = BytesMut::new();
        let mut received: u64 = 0;
        let mut upload: Option<WriteMultipart> = None;
        let mut ended = None;
        while let Some(piece) = body.next().await {
            let piece = match piece {
                Ok(piece) => piece,
                Err(e) => {
                    ended = Some(ObjectChunksError::Body(StoreError::Body(e.to_string())));
                    break;
                }
            };
            if received + piece.len() as u64 > len {
                ended = Some(ObjectChunksError::Body(StoreError::TooLong {
                    expected: len,
                }));
                break;
            }
            received += piece.len() as u64;
            match upload.as_mut() {
                Some(writer) => {
                    if let Err(e) = writer.wait_for_capacity(ASSEMBLY_PARTS_IN_FLIGHT).await {
                        return abort(upload, e.into()).await;
                    }
                    writer.put(piece);
                }
                None => {
                    buffer.extend_from_slice(&piece);
                    if buffer.len() > SMALL_CHUNK {
                        let mut writer = WriteMultipart::new_with_chunk_size(
                            self.store.put_multipart(path).await?,
                            ASSEMBLY_PART,
                        );
                        writer.put(buffer.split().freeze());
                        upload = Some(writer);
                    }
                }
            }
        }
        if ended.is_none() && received < len {
            ended = Some(ObjectChunksError::Body(StoreError::TooShort {
                got: received,
                expected: len,
            }));
        }
        if let Some(e) = ended
            && (commit == Commit::Whole || received == 0)
        {
            let aborted = abort(upload, e).await;
            return if commit == Commit::Prefix {
                Ok(0)
            } else {
                aborted
            };
        }
        match upload {
            Some(mut writer) => {
                if !buffer.is_empty() {
                    writer.put(buffer.freeze());
                }
                writer.finish().await?
            }
            None => {
                self.store
                    .put(path, PutPayload::from(buffer.freeze()))
                    .await?
            }
        };
        Ok(received)
    }

    /// Sends chunk `number` as part `number - 1` of the upload's multipart upload
    /// (creating that upload if no server has yet); returns the part's id, or `None` when
    /// the upload was completed meanwhile (a late duplicate).
    async fn put_part<S, E>(
        &self,
        parts: &Arc<dyn MultipartStore>,
        key: &UploadKey,
        number: u64,
        len: u64,
        body: S,
    ) -> Result<Option<String>, ObjectChunksError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let payload = read_exactly(body, len).await?;
        let path = self.complete_path(key);
        let id = match self.ledger.multipart_id(key).await? {
            Some(id) => id,
            None => {
                let ours = parts.create_multipart(&path).await?;
                if self.ledger.set_multipart_id(key, &ours).await? {
                    ours
                } else {
                    let _ = parts.abort_multipart(&path, &ours).await;
                    self.ledger
                        .multipart_id(key)
                        .await?
                        .ok_or_else(|| sea_orm::DbErr::RecordNotFound(format!("upload {key}")))?
                }
            }
        };
        let part_index = usize::try_from(number - 1).unwrap_or(usize::MAX);
        match parts.put_part(&path, &id, part_index, payload).await {
            Ok(part) => Ok(Some(part.content_id)),
            // The upload was completed (or aborted) meanwhile: nothing to add.
            Err(e)
                if matches!(
                    self.ledger.state(key).await?,
                    Some(UploadState::Complete | UploadState::Assembling)
                ) =>
            {
                tracing::debug!(%key, number, error = %e, "late duplicate part dropped");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Completes the upload's multipart upload from the parts in the ledger.
    async fn complete_parts(
        &self,
        parts: &Arc<dyn MultipartStore>,
        key: &UploadKey,
        meta: &UploadMeta,
    ) -> Result<(), ObjectChunksError> {
        let id = self
            .ledger
            .multipart_id(key)
            .await?
            .ok_or_else(|| sea_orm::DbErr::RecordNotFound(format!("upload {key}")))?;
        let recorded = self.ledger.chunks(key).await?;
        let mut ids = Vec::with_capacity(recorded.len());
        for chunk in recorded {
            let content_id = chunk
                .part
                .ok_or(ObjectChunksError::MissingChunk(chunk.number))?;
            ids.push(PartId { content_id });
        }
        let path = self.complete_path(key);
        match parts.complete_multipart(&path, &id, ids).await {
            Ok(_) => Ok(()),
            // Completed already by an assembler whose lease ran out (the upload id is
            // gone): the object is there, with the file's size.
            Err(e) => match self.store.head(&path).await {
                Ok(object) if object.size == meta.total_size => Ok(()),
                _ => Err(e.into()),
            },
        }
    }

    /// Streams the chunk objects, in order, into the complete object.
    async fn assemble(
        &self,
        key: &UploadKey,
        chunks: &[RecordedChunk],
    ) -> Result<(), ObjectChunksError> {
        let sources: Vec<_> = chunks
            .iter()
            .map(|chunk| self.chunk_path(key, chunk.number))
            .collect();
        concatenate(
            &*self.store,
            &sources,
            &*self.store,
            &self.complete_path(key),
        )
        .await
        .map_err(|e| match e {
            Concatenate::Missing(index) => {
                ObjectChunksError::MissingChunk(chunks.get(index).map_or(0, |c| c.number))
            }
            Concatenate::Store(e) => e.into(),
        })
    }

    async fn delete_chunks(
        &self,
        key: &UploadKey,
        chunks: &[RecordedChunk],
    ) -> Result<(), ObjectChunksError> {
        let paths: Vec<_> = chunks
            .iter()
            .map(|chunk| Ok(self.chunk_path(key, chunk.number)))
            .collect();
        self.delete_all(futures_util::stream::iter(paths).boxed())
            .await
    }

    /// Deletes every object of `paths`; objects already gone are fine.
    async fn delete_all(
        &self,
        paths: futures_util::stream::BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> Result<(), ObjectChunksError> {
        let results: Vec<_> = self.store.delete_stream(paths).collect().await;
        for result in results {
            result.map(|_| ()).or_else(not_found_is_fine)?;
        }
        Ok(())
    }
}

fn not_found_is_fine(e: object_store::Error) -> Result<(), object_store::Error> {
    match e {
        object_store::Error::NotFound { .. } => Ok(()),
        e => Err(e),
    }
}

/// How many source objects [`concatenate`] requests ahead of the one it copies.
const SOURCES_IN_FLIGHT: usize = 4;

/// Why [`concatenate`] failed.
#[derive(Debug)]
pub(crate) enum Concatenate {
    /// The source at this index is missing.
    Missing(usize),
    /// The store failed.
    Store(object_store::Error),
}

/// Streams the objects `sources` of `store`, in order, into one object at `to` in
/// `to_store` (a multipart upload of [`ASSEMBLY_PART`] parts, at most
/// [`ASSEMBLY_PARTS_IN_FLIGHT`] in flight: memory stays bounded whatever the sizes).
/// Aborted on any failure.
pub(crate) async fn concatenate(
    store: &dyn ObjectStore,
    sources: &[ObjectPath],
    to_store: &dyn ObjectStore,
    to: &ObjectPath,
) -> Result<(), Concatenate> {
    let mut writer = WriteMultipart::new_with_chunk_size(
        to_store
            .put_multipart(to)
            .await
            .map_err(Concatenate::Store)?,
        ASSEMBLY_PART,
    );
    // The next few GETs are sent while one body is copied, so that each request's latency
    // overlaps the copy (bodies are still read one at a time, in order: memory stays
    // bounded by the socket buffers).
    let requests = sources
        .iter()
        .cloned()
        .map(|source| async move { store.get(&source).await });
    let mut objects = futures_util::stream::iter(requests)
        .buffered(SOURCES_IN_FLIGHT)
        .enumerate();
    while let Some((index, object)) = objects.next().await {
        let failed = match object {
            Ok(object) => {
                let mut pieces = object.into_stream();
                let mut failed = None;
                while let Some(piece) = pieces.next().await {
                    let written = match piece {
                        Ok(piece) => writer
                            .wait_for_capacity(ASSEMBLY_PARTS_IN_FLIGHT)
                            .await
                            .map(|()| writer.put(piece)),
                        Err(e) => Err(e),
                    };
                    if let Err(e) = written {
                        failed = Some(Concatenate::Store(e));
                        break;
                    }
                }
                failed
            }
            Err(object_store::Error::NotFound { .. }) => Some(Concatenate::Missing(index)),
            Err(e) => Some(Concatenate::Store(e)),
        };
        if let Some(e) = failed {
            let _ = writer.abort().await;
            return Err(e);
        }
    }
    writer.finish().await.map_err(Concatenate::Store)?;
    Ok(())
}

/// Aborts the multipart upload under way, if any, and returns `error`.
async fn abort<T>(
    upload: Option<WriteMultipart>,
    error: ObjectChunksError,
) -> Result<T, ObjectChunksError> {
    if let Some(writer) = upload {
        // The body's error is the one to report; a failed abort leaves parts the
        // bucket's lifecycle rule for incomplete multipart uploads removes.
        let _ = writer.abort().await;
    }
    Err(error)
}

/// Exactly `len` bytes of `body`, gathered without copying.
async fn read_exactly<S, E>(body: S, len: u64) -> Result<PutPayload, ObjectChunksError>
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: std::fmt::Display,
{
    let mut body = std::pin::pin!(body);
    let mut pieces = Vec::new();
    let mut received: u64 = 0;
    while let Some(piece) = body.next().await {
        let piece = piece.map_err(|e| ObjectChunksError::Body(StoreError::Body(e.to_string())))?;
        received += piece.len() as u64;
        if received > len {
            return Err(ObjectChunksError::Body(StoreError::TooLong {
                expected: len,
            }));
        }
        pieces.push(piece);
    }
    if received < len {
        return Err(ObjectChunksError::Body(StoreError::TooShort {
            got: received,
            expected: len,
        }));
    }
    Ok(pieces.into_iter().collect())
}

/// The most chunks the file of `meta` can be cut into: ⌈size / chunk size⌉, at least 1
/// (resumable.js's default mode makes ⌊size / chunk size⌋, its last chunk the larger).
fn most_chunks(meta: &UploadMeta) -> u64 {
    meta.total_size.div_ceil(meta.chunk_size.max(1)).max(1)
}
