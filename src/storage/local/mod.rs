//! The `local` upload store: uploads as files under a chunk directory on this server's
//! disk ([`files`]), their state in this process ([`state`]). One store per chunk
//! directory (the default one, and each field's own `CHUNKS_UPLOAD_TO`); the quotas are
//! counted in memory for all of them together, again from disk at start.

mod files;
mod state;

use std::{io, ops::Range, path::PathBuf, sync::Arc, time::Duration};

use crate::{
    UploadKey,
    storage::quotas::Quotas,
    storage::upload_store::{
        self, Body, Commit, Expired, ExpiryRule, Finish, Progress, StoreError, UploadMeta,
        UploadStore, Write,
    },
};
use files::FsStore;
use state::{Claim, Registry, Upload};

/// Uploads in one local chunk directory.
#[derive(Debug)]
pub(crate) struct LocalUploads {
    /// The field directory (`CHUNKS_UPLOAD_TO`) this store is for; `None`: the default.
    dir: Option<&'static str>,
    registry: Registry,
    quotas: Arc<Quotas>,
    /// How long a write waits for another request writing the same range.
    wait: Duration,
}

impl LocalUploads {
    /// The uploads in `path` (created if missing), the chunk directory of `dir`, counted
    /// against `quotas` (those found there now are counted at once).
    pub async fn open(
        path: PathBuf,
        dir: Option<&'static str>,
        sync_data: bool,
        quotas: Arc<Quotas>,
        wait: Duration,
    ) -> io::Result<Self> {
        let store = FsStore::open(path, sync_data).await?;
        for (key, _, _) in store.uploads().await? {
            match store.load(&key).await {
                // Counted even past the limits: they exist; new ones wait.
                Ok(Some(stored)) => quotas.force_hold((dir, key), (&stored.meta).into()),
                Ok(None) => {}
                // One upload's damaged files do not keep the server from starting; its
                // requests fail until it expires.
                Err(e) => tracing::warn!(%key, error = %e, "an upload's files cannot be read"),
            }
        }
        Ok(Self {
            dir,
            registry: Registry::new(store),
            quotas,
            wait,
        })
    }

    /// The upload `key`, which must exist.
    async fn upload(&self, key: &UploadKey) -> Result<Arc<Upload>, StoreError> {
        self.registry
            .find(*key)
            .await?
            .ok_or_else(|| StoreError::Busy("this upload no longer exists: send it again".into()))
    }

    /// Counts a new upload against the quotas and the free space.
    fn admit(&self, key: &UploadKey, meta: &UploadMeta) -> Result<(), StoreError> {
        let ours = self
            .quotas
            .try_hold((self.dir, *key), meta.into())
            .map_err(StoreError::Refused)?;
        // Given up: released only if this call counted it (a request opening the same
        // upload at the same moment may have).
        let give_up = || {
            if ours {
                self.quotas.release((self.dir, *key));
            }
        };
        let free = self
            .registry
            .store
            .free_space()
            .inspect_err(|_| give_up())?;
        if let Some(free) = free
            && free < meta.total_size
        {
            give_up();
            return Err(StoreError::Refused(format!(
                "the server has not enough free space for this file ({} bytes; {free} \
                 free): try again later or with a smaller file",
                meta.total_size
            )));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl UploadStore for LocalUploads {
    async fn find(&self, key: &UploadKey) -> Result<Option<UploadMeta>, StoreError> {
        Ok(self.registry.find(*key).await?.map(|u| u.meta.clone()))
    }

    async fn open(&self, key: &UploadKey, meta: &UploadMeta) -> Result<UploadMeta, StoreError> {
        if let Some(upload) = self.registry.find(*key).await? {
            return Ok(upload.meta.clone());
        }
        self.admit(key, meta)?;
        match self.registry.find_or_create(*key, meta).await {
            Ok(upload) => Ok(upload.meta.clone()),
            Err(e) => {
                if self.registry.find(*key).await.ok().flatten().is_none() {
                    self.quotas.release((self.dir, *key));
                }
                Err(e)
            }
        }
    }

    async fn has(&self, key: &UploadKey, range: Range<u64>) -> Result<bool, StoreError> {
        match self.registry.find(*key).await? {
            Some(upload) => upload.has(&range),
            None => Ok(false),
        }
    }

    async fn write(
        &self,
        key: &UploadKey,
        range: Range<u64>,
        body: &mut Body<'_>,
        commit: Commit,
    ) -> Result<Write, StoreError> {
        let upload = self.upload(key).await?;
        upload_store::check_range(&upload.meta, &range)?;
        let claim = match upload.claim(range.clone(), self.wait).await? {
            Claim::Stored => return Ok(Write::Stored),
            Claim::Write(claim) => claim,
        };
        let store = &self.registry.store;
        let written = store.write_range(key, range.clone(), body, commit).await?;
        crate::faults::fault_point!("chunk-written");
        if written > 0 || range.is_empty() {
            let written = range.start..range.start + written;
            store.record(key, written.clone()).await?;
            claim.record(written);
            crate::faults::fault_point!("chunk-marked");
        }
        Ok(Write::Wrote(written))
    }

    async fn complete(&self, key: &UploadKey) -> Result<Finish, StoreError> {
        match self.registry.find(*key).await? {
            Some(upload) => upload.finish_if_all_in(&self.registry.store).await,
            None => Ok(Finish::NotYet),
        }
    }

    async fn progress(&self, key: &UploadKey) -> Result<Progress, StoreError> {
        Ok(self.upload(key).await?.progress())
    }

    async fn received(&self, key: &UploadKey) -> Result<Vec<Range<u64>>, StoreError> {
        Ok(self.upload(key).await?.received())
    }

    async fn head(&self, key: &UploadKey, n: usize) -> Result<Vec<u8>, StoreError> {
        Ok(self.registry.store.read_head(key, n).await?)
    }

    fn location(&self, key: &UploadKey) -> PathBuf {
        self.registry.store.data_path(key)
    }

    async fn remove(&self, key: &UploadKey) -> Result<(), StoreError> {
        self.registry.forget(*key);
        let removed = self.registry.store.remove(key).await;
        self.registry.removed(*key);
        removed?;
        self.quotas.release((self.dir, *key));
        Ok(())
    }

    async fn expire(&self, rule: ExpiryRule<'_>) -> Result<Expired, StoreError> {
        let registry = &self.registry;
        // Idle uploads leave memory (they are on disk), whether or not they expire.
        registry.sweep();
        let mut expired = Expired::default();
        for (key, last, complete) in registry.store.uploads().await? {
            let limit = if complete {
                rule.complete
            } else {
                rule.incomplete
            };
            let idle = rule.now.duration_since(last).unwrap_or(Duration::ZERO);
            if idle <= limit || (rule.saving)(&key) || !registry.expire(key) {
                continue;
            }
            let removed = registry.store.remove(&key).await;
            registry.removed(key);
            removed?;
            self.quotas.release((self.dir, key));
            tracing::info!(%key, complete, ?idle, "upload expired");
            if complete {
                expired.complete += 1;
            } else {
                expired.incomplete += 1;
            }
        }
        Ok(expired)
    }
}
