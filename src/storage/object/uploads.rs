//! The `object` upload store: uploads on object storage, which ranges are in kept in the
//! chunk ledger in the app's database, so any number of servers serve one upload
//! together ([`UploadsBuilder::object_storage`]).

use futures_util::StreamExt;
use object_store::ObjectStoreExt;
use std::{ops::Range, path::PathBuf, sync::Arc};

use crate::{
    UploadKey,
    storage::ledger::UploadState,
    storage::object::chunks::{ChunkOutcome, ObjectChunks, ObjectChunksError},
    storage::quotas::Quotas,
    storage::{
        object::to_io,
        upload_store::{
            self, Body, Commit, Expired, ExpiryRule, Finish, Progress, StoreError, UploadMeta,
            UploadStore, Write,
        },
    },
};

/// Uploads on object storage: one object per chunk, the ledger deciding what is in and
/// who assembles the file, once.
#[derive(Debug)]
pub(crate) struct ObjectUploads {
    chunks: ObjectChunks,
    quotas: Arc<Quotas>,
}

impl ObjectUploads {
    pub fn new(chunks: ObjectChunks, quotas: Arc<Quotas>) -> Self {
        Self { chunks, quotas }
    }

    async fn meta(&self, key: &UploadKey) -> Result<UploadMeta, StoreError> {
        self.chunks
            .ledger()
            .meta(key)
            .await
            .map_err(ledger_error)?
            .ok_or_else(|| StoreError::Busy("this upload no longer exists: send it again".into()))
    }

    /// The chunk number `range` is, in an upload of chunks of `meta.chunk_size`.
    fn chunk_number(meta: &UploadMeta, range: &Range<u64>) -> Result<u64, StoreError> {
        let size = meta.chunk_size.max(1);
        if !range.start.is_multiple_of(size) {
            return Err(StoreError::Refused(format!(
                "object storage takes writes at chunk boundaries ({size} bytes) only"
            )));
        }
        Ok(range.start / size + 1)
    }
}

fn ledger_error(e: sea_orm::DbErr) -> StoreError {
    StoreError::Io(std::io::Error::other(e))
}

impl From<ObjectChunksError> for StoreError {
    fn from(e: ObjectChunksError) -> Self {
        match e {
            ObjectChunksError::Body(e) => e,
            ObjectChunksError::Store(e) => Self::Io(to_io(e)),
            ObjectChunksError::Ledger(e) => ledger_error(e),
            ObjectChunksError::MissingChunk(_)
            | ObjectChunksError::Gone
            | ObjectChunksError::ClaimLost => Self::Busy(e.to_string()),
            ObjectChunksError::Mismatch
            | ObjectChunksError::Overlap { .. }
            | ObjectChunksError::BadNumber { .. }
            | ObjectChunksError::Sizes { .. } => Self::Refused(e.to_string()),
        }
    }
}

#[async_trait::async_trait]
impl UploadStore for ObjectUploads {
    async fn find(&self, key: &UploadKey) -> Result<Option<UploadMeta>, StoreError> {
        self.chunks.ledger().meta(key).await.map_err(ledger_error)
    }

    async fn open(&self, key: &UploadKey, meta: &UploadMeta) -> Result<UploadMeta, StoreError> {
        let ledger = self.chunks.ledger();
        if let Some(known) = ledger.meta(key).await.map_err(ledger_error)? {
            return Ok(known);
        }
        // A new upload: within the quotas, as every server counts them in the ledger (two
        // servers starting uploads at once may both pass the last place).
        let held = ledger
            .held(&meta.scope, meta.client.as_deref())
            .await
            .map_err(ledger_error)?;
        self.quotas
            .check(held.map(Into::into), meta.client.is_some(), meta.total_size)
            .map_err(StoreError::Refused)?;
        // The first server's metadata, should another have opened it meanwhile.
        ledger.open(key, meta).await.map_err(ledger_error)
    }

    async fn has(&self, key: &UploadKey, range: Range<u64>) -> Result<bool, StoreError> {
        let Some(meta) = self.find(key).await? else {
            return Ok(false);
        };
        let number = Self::chunk_number(&meta, &range)?;
        let (len, ledger) = (range.end - range.start, self.chunks.ledger());
        if ledger.holds(key, number, len).await.map_err(ledger_error)?
            || ledger.state(key).await.map_err(ledger_error)? == Some(UploadState::Complete)
        {
            return Ok(true);
        }
        if len > 0
            && ledger
                .clashes(key, meta.chunk_size, number, len)
                .await
                .map_err(ledger_error)?
        {
            return Err(StoreError::Overlap(range));
        }
        Ok(false)
    }

    async fn write(
        &self,
        key: &UploadKey,
        range: Range<u64>,
        body: &mut Body<'_>,
        commit: Commit,
    ) -> Result<Write, StoreError> {
        if commit == Commit::Prefix {
            // Two cut-off appends from one start could write one chunk object with
            // different bytes (chunk objects are named by their number alone): not until
            // the ledger tells such writes apart.
            return Err(StoreError::Refused(
                "object storage keeps whole writes only, for now".into(),
            ));
        }
        let meta = self.meta(key).await?;
        upload_store::check_range(&meta, &range)?;
        let number = Self::chunk_number(&meta, &range)?;
        let len = range.end - range.start;
        let written = self
            .chunks
            .store_chunk(key, &meta, (number, len), body.by_ref(), commit)
            .await
            .map_err(|e| match e {
                ObjectChunksError::Overlap { .. } => StoreError::Overlap(range),
                e => e.into(),
            })?;
        Ok(written.map_or(Write::Stored, Write::Wrote))
    }

    async fn complete(&self, key: &UploadKey) -> Result<Finish, StoreError> {
        // On a task of its own, so that a client going away does not stop an assembly
        // halfway (a no-op unless every chunk is in and nobody is at it).
        let (chunks, key) = (self.chunks.clone(), *key);
        let outcome = tokio::spawn(async move { chunks.finish(&key).await })
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
        Ok(match outcome {
            ChunkOutcome::Completed => Finish::JustCompleted,
            ChunkOutcome::AlreadyComplete => Finish::AlreadyComplete,
            ChunkOutcome::Recorded | ChunkOutcome::Assembling => Finish::NotYet,
        })
    }

    async fn progress(&self, key: &UploadKey) -> Result<Progress, StoreError> {
        let ledger = self.chunks.ledger();
        let complete =
            ledger.state(key).await.map_err(ledger_error)? == Some(UploadState::Complete);
        Ok(Progress {
            complete,
            ranges: ledger.count(key).await.map_err(ledger_error)?,
            last: match ledger.last_chunk(key).await.map_err(ledger_error)? {
                Some(chunk) => {
                    let start = (chunk.number - 1).saturating_mul(self.meta(key).await?.chunk_size);
                    Some(start..start.saturating_add(chunk.size))
                }
                None => None,
            },
        })
    }

    async fn received(&self, key: &UploadKey) -> Result<Vec<Range<u64>>, StoreError> {
        let meta = self.meta(key).await?;
        let chunks = self
            .chunks
            .ledger()
            .chunks(key)
            .await
            .map_err(ledger_error)?;
        Ok(chunks
            .iter()
            .map(|chunk| {
                let start = (chunk.number - 1) * meta.chunk_size;
                start..start + chunk.size
            })
            .collect())
    }

    async fn head(&self, key: &UploadKey, n: usize) -> Result<Vec<u8>, StoreError> {
        let meta = self.meta(key).await?;
        let end = meta.total_size.min(n as u64);
        if end == 0 {
            return Ok(Vec::new());
        }
        let bytes = self
            .chunks
            .store()
            .get_range(&self.chunks.complete_path(key), 0..end)
            .await
            .map_err(to_io)?;
        Ok(bytes.to_vec())
    }

    fn location(&self, key: &UploadKey) -> PathBuf {
        PathBuf::from(self.chunks.complete_path(key).as_ref())
    }

    async fn remove(&self, key: &UploadKey) -> Result<(), StoreError> {
        Ok(self.chunks.remove(key).await?)
    }

    async fn expire(&self, rule: ExpiryRule<'_>) -> Result<Expired, StoreError> {
        // The ledger's times decide; saves under way hold a reservation there.
        let removed = self.chunks.expire(rule.incomplete, rule.complete).await?;
        Ok(Expired {
            incomplete: removed.incomplete,
            complete: removed.complete,
        })
    }
}
