//! Expiry of abandoned uploads and of what interrupted saves left: unfinished uploads idle longer than
//! [`Settings::incomplete_expiry`](crate::Settings::incomplete_expiry), and complete ones no
//! model saved within [`Settings::complete_expiry`](crate::Settings::complete_expiry), are
//! removed by [`Uploads::expire`], by hand or from [`Uploads::spawn_expiry`]'s background
//! task. An upload being written (a chunk request under way) or being saved to a row is
//! never touched; a request that still held it gets a 503 and, on retry, starts it anew.

use std::{
    io,
    path::Path,
    time::{Duration, SystemTime},
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{UploadKey, Uploads, service::settings::STAGING_DIR};

/// What one expiry pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpiryReport {
    /// Unfinished uploads removed.
    pub incomplete: usize,
    /// Complete, never saved uploads removed.
    pub complete: usize,
    /// Leftovers of interrupted saves removed (reservations, copies).
    pub leftovers: usize,
}

impl Uploads {
    /// Removes the uploads that expired by now. See [`expire_as_of`](Self::expire_as_of).
    ///
    /// ```
    /// use sea_orm_resumable::{Secret, Settings, Uploads};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let media = tempfile::tempdir().unwrap();
    /// let uploads = Uploads::builder(Settings::new(media.path()), Secret::generate()).build().await.unwrap();
    /// let report = uploads.expire().await.unwrap();
    /// assert_eq!(report.incomplete + report.complete, 0);
    /// # });
    /// ```
    pub async fn expire(&self) -> io::Result<ExpiryReport> {
        self.expire_as_of(SystemTime::now()).await
    }

    /// Removes, from every chunk directory, the uploads that have expired at `now`: an
    /// unfinished upload last written more than `incomplete_expiry` before, a complete one
    /// finished more than `complete_expiry` before; and leftovers of interrupted saves
    /// (reservations, data kept for them, staged copies) older than `complete_expiry`.
    /// Uploads being written or saved are kept.
    ///
    /// In shared mode ([`UploadsBuilder::object_storage`](crate::UploadsBuilder::object_storage))
    /// the ledger's times decide, counted from the present (`now` is not used): see
    /// the ledger; uploads
    /// whose save is under way are kept.
    pub async fn expire_as_of(&self, now: SystemTime) -> io::Result<ExpiryReport> {
        let settings = self.settings();
        let mut report = ExpiryReport::default();
        #[cfg(feature = "object-store")]
        if let Some(shared) = self.shared() {
            // Saves cut short are finished or dropped first: a reservation keeps its upload.
            let recovered =
                super::recover_object_saves(shared, shared.chunks.ledger().connection())
                    .await
                    .map_err(io::Error::other)?;
            report.leftovers += recovered.dropped;
        }
        let media_root = settings.media_root.clone();
        let saving = |dir: Option<&str>, key: &UploadKey| super::saving(&media_root, dir, *key);
        let expired = self.expire_uploads(now, &saving).await?;
        report.incomplete += expired.incomplete;
        report.complete += expired.complete;
        let old = now.checked_sub(settings.complete_expiry);
        for dir in [
            settings.chunk_dir().join("saving"),
            media_root.join(STAGING_DIR),
        ] {
            report.leftovers += remove_older(&dir, old).await?;
        }
        Ok(report)
    }

    /// Runs [`expire`](Self::expire) every `every` on the tokio runtime until `stop` is
    /// cancelled (or the task is aborted). Failed passes are logged and retried next time.
    ///
    /// ```
    /// use std::time::Duration;
    /// use sea_orm_resumable::{Secret, Settings, Uploads};
    /// use tokio_util::sync::CancellationToken;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let media = tempfile::tempdir().unwrap();
    /// let uploads = Uploads::builder(Settings::new(media.path()), Secret::generate()).build().await.unwrap();
    /// let stop = CancellationToken::new();
    /// let task = uploads.spawn_expiry(Duration::from_secs(3600), stop.clone());
    /// stop.cancel();
    /// task.await.unwrap();
    /// # });
    /// ```
    pub fn spawn_expiry(&self, every: Duration, stop: CancellationToken) -> JoinHandle<()> {
        let uploads = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every.max(Duration::from_millis(10)));
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                match uploads.expire().await {
                    Ok(report) if report != ExpiryReport::default() => {
                        tracing::info!(?report, "expired abandoned uploads");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "expiry pass failed"),
                }
            }
        })
    }
}

/// Removes the files in `dir` last modified before `old` that no save under way holds;
/// how many. A missing directory holds nothing.
async fn remove_older(dir: &Path, old: Option<SystemTime>) -> io::Result<usize> {
    let Some(old) = old else { return Ok(0) };
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_file() && meta.modified()? < old && !super::holds_file(&entry.path()) {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    })
    .await
    .map_err(io::Error::other)?
}
