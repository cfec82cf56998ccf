//! The upload service in shared mode ([`UploadsBuilder::object_storage`]): chunks and
//! files on object storage, which chunks are in kept in the database's chunk ledger, so
//! any number of servers serve one upload together. The protocol checks are the same as
//! for local files (sizes, layout, field rules); what differs is where things are kept.

use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use std::{path::PathBuf, sync::Arc};

use crate::{
    ChunkParams, CompletedUpload, FileFieldError, Scope, UploadError, UploadKey, UploadMeta,
    UploadStatus, Uploads, UploadsBuilder,
    field::PendingUpload,
    layout::{ChunkPlace, Layout, Mode},
    ledger::UploadState,
    object_chunks::{ChunkOutcome, ObjectChunks, ObjectChunksError},
    pace::{Cut, drain},
    rules::FieldRules,
    sniff::SNIFF_BYTES,
    storage::object::ObjectFiles,
};

/// Chunks and files on object storage, as the upload service holds them.
#[derive(Clone, Debug)]
pub(crate) struct SharedStorage {
    pub chunks: ObjectChunks,
    pub files: ObjectFiles,
}

impl UploadsBuilder {
    /// Keeps chunks and saved files on object storage, with which chunks are in recorded
    /// in the database (`chunks`' [`ChunkLedger`](crate::ledger::ChunkLedger)): every
    /// server built with the same store and database serves the same uploads, so a load
    /// balancer may send each chunk anywhere. Saved files go to `files` at the key their
    /// column holds (keys under the chunks' prefix are refused). The media root is then
    /// not used for uploads, nor are the fields' `CHUNKS_UPLOAD_TO` (one prefix for all).
    /// The upload quotas count what the ledger holds, for every server together.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use sea_orm::{ConnectionTrait, Database};
    /// use sea_orm_resumable::{Secret, Settings, Uploads, ledger::{ChunkLedger, create_tables}};
    /// use sea_orm_resumable::{object_chunks::ObjectChunks, storage::object::ObjectFiles};
    /// use std::sync::Arc;
    ///
    /// let db = Database::connect("sqlite::memory:").await.unwrap();
    /// for table in create_tables() {
    ///     db.execute(&table).await.unwrap();
    /// }
    /// // In production: object_store::aws::AmazonS3Builder (and `.with_signer` for URLs).
    /// let bucket = Arc::new(object_store::memory::InMemory::new());
    /// # let media = tempfile::tempdir().unwrap();
    /// let uploads = Uploads::builder(Settings::new(media.path()), Secret::generate())
    ///     .object_storage(ObjectChunks::new(bucket.clone(), ChunkLedger::new(db)), ObjectFiles::new(bucket))
    ///     .build()
    ///     .await
    ///     .unwrap();
    /// assert!(uploads.is_shared());
    /// # });
    /// ```
    pub fn object_storage(mut self, chunks: ObjectChunks, files: ObjectFiles) -> Self {
        let prefix = chunks.prefix().as_ref();
        let files = if prefix.is_empty() {
            // Chunks at the top of the bucket: their two directories are off limits.
            files.with_private("chunks").with_private("complete")
        } else {
            files.with_private(prefix)
        };
        self.shared = Some(SharedStorage { chunks, files });
        self
    }
}

fn chunk_error(e: ObjectChunksError) -> UploadError {
    match e {
        ObjectChunksError::Store(e) => UploadError::Unavailable(crate::storage::object::to_io(e)),
        ObjectChunksError::Ledger(e) => UploadError::Unavailable(std::io::Error::other(e)),
        ObjectChunksError::MissingChunk(_)
        | ObjectChunksError::Gone
        | ObjectChunksError::ClaimLost => UploadError::Retry(e.to_string()),
        other => UploadError::BadRequest(other.to_string()),
    }
}

fn ledger_error(e: sea_orm::DbErr) -> UploadError {
    UploadError::Unavailable(std::io::Error::other(e))
}

/// The first `at_least` bytes of `body` (fewer if it is shorter), and the body again
/// from its start.
async fn peek<S, E>(
    body: S,
    at_least: usize,
) -> (Vec<u8>, impl Stream<Item = Result<Bytes, E>> + Send)
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: Send,
{
    let mut body = Box::pin(body);
    let mut seen = Vec::new();
    let mut head = Vec::new();
    while head.len() < at_least {
        match body.next().await {
            Some(Ok(piece)) => {
                head.extend_from_slice(&piece);
                seen.push(Ok(piece));
            }
            Some(Err(e)) => {
                seen.push(Err(e));
                break;
            }
            None => break,
        }
    }
    (head, stream::iter(seen).chain(body))
}

impl Uploads {
    /// Whether chunks and files are on object storage, shared by several servers.
    pub fn is_shared(&self) -> bool {
        self.inner.shared.is_some()
    }

    pub(crate) fn shared(&self) -> Option<&SharedStorage> {
        self.inner.shared.as_ref()
    }

    /// The upload's metadata in the ledger, checked against the request's sizes.
    async fn shared_meta(
        shared: &SharedStorage,
        key: &UploadKey,
        params: &ChunkParams,
    ) -> Result<Option<UploadMeta>, UploadError> {
        let Some(meta) = shared
            .chunks
            .ledger()
            .meta(key)
            .await
            .map_err(ledger_error)?
        else {
            return Ok(None);
        };
        Self::check_sizes(&meta, params)?;
        Ok(Some(meta))
    }

    /// The status of an upload the ledger knows.
    async fn shared_status(
        &self,
        shared: &SharedStorage,
        scope: &Scope,
        key: &UploadKey,
        meta: &UploadMeta,
    ) -> Result<UploadStatus, UploadError> {
        let ledger = shared.chunks.ledger();
        let complete =
            ledger.state(key).await.map_err(ledger_error)? == Some(UploadState::Complete);
        let received = ledger.count(key).await.map_err(ledger_error)?;
        let layout = Layout::new(meta.total_size, meta.chunk_size)
            .map_err(|e| UploadError::Unavailable(std::io::Error::other(e)))?;
        let standard = layout.chunk_count(Mode::Standard);
        Ok(UploadStatus {
            token: self.inner.secret.sign(scope, key),
            complete,
            chunks_received: received,
            // Which of the client's two ways of cutting the file it uses shows only once
            // every chunk is in.
            total_chunks: if complete {
                received
            } else {
                standard.max(received)
            },
            size: meta.total_size,
            file_name: meta.file_name.clone(),
        })
    }

    /// [`Uploads::test_chunk`] in shared mode.
    pub(crate) async fn test_chunk_shared(
        &self,
        shared: &SharedStorage,
        scope: &Scope,
        params: &ChunkParams,
    ) -> Result<Option<UploadStatus>, UploadError> {
        let key = UploadKey::derive(scope, &params.identifier);
        let Some(meta) = Self::shared_meta(shared, &key, params).await? else {
            return Ok(None);
        };
        // Takes up an assembly that failed or whose server died (a no-op unless every
        // chunk is in and nobody is at it), on a task of its own, so that a client going
        // away does not stop it halfway.
        let chunks = shared.chunks.clone();
        let outcome = tokio::spawn(async move { chunks.finish(&key).await })
            .await
            .map_err(|e| UploadError::Unavailable(std::io::Error::other(e)))?
            .map_err(chunk_error)?;
        self.completed(shared, scope, &key, &meta, outcome);
        if shared
            .chunks
            .has_chunk(&key, params.chunk_number)
            .await
            .map_err(ledger_error)?
            || outcome != ChunkOutcome::Recorded
        {
            return self
                .shared_status(shared, scope, &key, &meta)
                .await
                .map(Some);
        }
        Ok(None)
    }

    /// [`Uploads::receive_chunk`] in shared mode.
    pub(crate) async fn receive_chunk_shared<S, E>(
        &self,
        shared: &SharedStorage,
        scope: &Scope,
        (rules, place): (FieldRules, ChunkPlace),
        params: &ChunkParams,
        meta: UploadMeta,
        (body, cut): (S, &Cut),
    ) -> Result<UploadStatus, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display + Send,
    {
        let key = UploadKey::derive(scope, &params.identifier);
        let earlier = Self::shared_meta(shared, &key, params).await?;
        if earlier.is_none() {
            // A new upload: within the quotas, as every server counts them in the ledger
            // (two servers starting uploads at once may both pass the last place).
            let held = shared
                .chunks
                .ledger()
                .held(&meta.scope, meta.client.as_deref())
                .await
                .map_err(ledger_error)?;
            self.quotas()
                .check(held.map(Into::into), meta.client.is_some(), meta.total_size)
                .map_err(UploadError::BadRequest)?;
        }
        if let Some(known) = &earlier
            && shared
                .chunks
                .has_chunk(&key, params.chunk_number)
                .await
                .map_err(ledger_error)?
        {
            // A duplicate: read and dropped at a written chunk's pace.
            drain(body, place.len, self.pace()).await;
            let outcome = shared.chunks.finish(&key).await.map_err(chunk_error)?;
            self.completed(shared, scope, &key, known, outcome);
            return self.shared_status(shared, scope, &key, known).await;
        }
        let outcome = if place.offset == 0 && !rules.content_types.is_empty() {
            // The file's first bytes are checked before anything is stored.
            let (head, body) = peek(body, SNIFF_BYTES.min(place.len as usize)).await;
            if let Some(reason) = cut.get() {
                // Too slow to show its type: the client may try again.
                return Err(UploadError::Retry(reason.to_string()));
            }
            if let Err(e) = rules.check_head(&head) {
                drain(body, place.len, self.pace()).await;
                return Err(e);
            }
            shared
                .chunks
                .put_chunk(&key, &meta, params.chunk_number, place.len, body)
                .await
        } else {
            shared
                .chunks
                .put_chunk(&key, &meta, params.chunk_number, place.len, body)
                .await
        };
        let outcome = outcome.map_err(|e| match cut.get() {
            // Too slow or stalled: the client may send the chunk again.
            Some(reason) => UploadError::Retry(reason.to_string()),
            None => chunk_error(e),
        })?;
        // What the ledger holds (the first server's metadata); read again only for a new
        // upload, and never in the way of telling the hooks of a completion.
        let known = match earlier {
            Some(known) => known,
            None => match shared.chunks.ledger().meta(&key).await {
                Ok(known) => known.unwrap_or(meta),
                Err(e) => {
                    tracing::warn!(%key, error = %e, "could not read an upload's metadata");
                    meta
                }
            },
        };
        self.completed(shared, scope, &key, &known, outcome);
        self.shared_status(shared, scope, &key, &known).await
    }

    /// Tells the hooks when `outcome` says this call completed the upload.
    fn completed(
        &self,
        shared: &SharedStorage,
        scope: &Scope,
        key: &UploadKey,
        meta: &UploadMeta,
        outcome: ChunkOutcome,
    ) {
        if outcome != ChunkOutcome::Completed {
            return;
        }
        tracing::info!(%key, size = meta.total_size, "upload complete");
        let done = CompletedUpload {
            key: *key,
            scope: scope.clone(),
            token: self.inner.secret.sign(scope, key),
            meta: meta.clone(),
            path: PathBuf::from(shared.chunks.complete_path(key).as_ref()),
        };
        for hook in &self.inner.on_complete {
            hook(&done);
        }
    }

    /// [`Uploads::pending_upload`] in shared mode.
    pub(crate) async fn pending_upload_shared(
        &self,
        shared: &SharedStorage,
        scope: &Scope,
        key: UploadKey,
    ) -> Result<PendingUpload, FileFieldError> {
        let io = |e: sea_orm::DbErr| FileFieldError::Io(std::io::Error::other(e));
        let ledger = shared.chunks.ledger();
        let meta = ledger
            .meta(&key)
            .await
            .map_err(io)?
            .ok_or(FileFieldError::UnknownUpload)?;
        let outcome = shared
            .chunks
            .finish(&key)
            .await
            .map_err(|e| FileFieldError::Io(std::io::Error::other(e)))?;
        self.completed(shared, scope, &key, &meta, outcome);
        if ledger.state(&key).await.map_err(io)? != Some(UploadState::Complete) {
            let total = Layout::new(meta.total_size, meta.chunk_size)
                .map_or(0, |layout| layout.chunk_count(Mode::Standard));
            return Err(FileFieldError::Incomplete {
                received: ledger.count(&key).await.map_err(io)?,
                total,
            });
        }
        Ok(PendingUpload {
            uploads: self.clone(),
            chunks_upload_to: None,
            key,
            meta,
            data_path: PathBuf::from(shared.chunks.complete_path(&key).as_ref()),
        })
    }

    /// [`Uploads::upload_status`] in shared mode.
    pub(crate) async fn upload_status_shared(
        &self,
        shared: &SharedStorage,
        scope: &Scope,
        key: UploadKey,
    ) -> Result<UploadStatus, FileFieldError> {
        let io = |e: UploadError| FileFieldError::Io(std::io::Error::other(e.to_string()));
        let meta = shared
            .chunks
            .ledger()
            .meta(&key)
            .await
            .map_err(|e| FileFieldError::Io(std::io::Error::other(e)))?
            .ok_or(FileFieldError::UnknownUpload)?;
        self.shared_status(shared, scope, &key, &meta)
            .await
            .map_err(io)
    }

    /// The file storage saved files go to: the object store in shared mode.
    pub(crate) fn shared_storage(&self) -> Option<Arc<dyn crate::storage::FileStorage>> {
        self.shared()
            .map(|shared| Arc::new(shared.files.clone()) as Arc<dyn crate::storage::FileStorage>)
    }
}
