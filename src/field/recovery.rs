//! Finishing saves a crash cut short. A save leaves a reservation file in
//! `<chunk dir>/saving/` from before its row is written until its file is in place and
//! the upload's chunk files are gone; one found by a new process belongs to a save that
//! stopped somewhere in between. The row decides: stored, the save is finished (the file
//! linked, the chunk files removed); not stored, the reservation goes once it is older
//! than a save may take, leaving the upload as it was for the user to save again.

use sea_orm::{ConnectionTrait, DbErr};
use std::{
    collections::HashMap,
    fs, io,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use super::{
    moves::{self, MoveKey, Reservation, STALE_AFTER},
    row::row_holds,
    save::blocking,
};
use crate::{UploadKey, Uploads, storage::media::check_relative};

/// What [`Uploads::recover_saves`] found in the reservations of interrupted saves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Saves whose row was stored, finished now (file linked, chunk files removed).
    pub finished: usize,
    /// Reservations of saves whose row was never stored, dropped (the upload is intact).
    pub dropped: usize,
    /// Reservations left for now: too recent to tell a crashed save from one under way in
    /// another process, or their table is not in this database.
    pub left: usize,
    /// Rows stored whose file could not be put in place: its data is gone. Logged.
    pub lost: usize,
}

impl Uploads {
    /// Finishes or drops the saves a crash interrupted, using `db` to see which rows were
    /// stored. Run it at start, after migrations and before serving (the example does);
    /// running it again later is harmless: saves under way in this process are left alone.
    ///
    /// For every reservation left in a chunk directory's `saving/` by a save not under
    /// way in this process: if its row holds the reserved path, the upload's file is
    /// linked there (if it is not yet) and the upload's chunk files are removed; if no
    /// row holds it and the reservation is older than the time a save may take (10
    /// minutes), the reservation is dropped and the upload stays, to be saved again.
    ///
    /// ```
    /// use sea_orm_resumable::{Secret, Settings, Uploads};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let media = tempfile::tempdir().unwrap();
    /// let db = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
    /// let uploads = Uploads::builder(Settings::new(media.path()), Secret::generate()).build().await.unwrap();
    /// let report = uploads.recover_saves(&db).await.unwrap();
    /// assert_eq!(report.finished + report.dropped + report.left + report.lost, 0);
    /// # });
    /// ```
    pub async fn recover_saves<Db: ConnectionTrait>(
        &self,
        db: &Db,
    ) -> Result<RecoveryReport, DbErr> {
        #[cfg(feature = "object-store")]
        if let Some(shared) = self.shared() {
            return super::object_save::recover(shared, db).await;
        }
        let mut report = RecoveryReport::default();
        for chunk_dir in self.chunk_dirs() {
            let saving = chunk_dir.join("saving");
            // Every stored row gets its file first; only then does an upload's data go
            // (one upload may have several saves, each with its reservation).
            let mut stored: HashMap<UploadId, Vec<PathBuf>> = HashMap::new();
            for (path, age) in reservation_files(&saving).map_err(io_error)? {
                if let Some(upload) = self
                    .finish_row(db, &saving, &path, age, &mut report)
                    .await?
                {
                    stored.entry(upload).or_default().push(path);
                }
            }
            for ((chunks_upload_to, key, instance), reservations) in stored {
                let dir = chunks_upload_to.as_deref();
                if self.still_holds(dir, key, &instance).await
                    && let Err(e) = self.release(dir, key).await
                {
                    tracing::warn!(%key, error = %e, "could not remove a saved upload's chunk files");
                }
                let _ = fs::remove_file(moves::kept_data_path(&saving, &key, &instance));
                for reservation in reservations {
                    let _ = fs::remove_file(reservation);
                }
            }
        }
        if report != RecoveryReport::default() {
            tracing::info!(?report, "recovered interrupted saves");
        }
        Ok(report)
    }

    /// Whether the chunk directory still holds this instance of the upload `key` (not a
    /// later upload of the same identifier).
    async fn still_holds(
        &self,
        chunks_upload_to: Option<&str>,
        key: UploadKey,
        instance: &str,
    ) -> bool {
        let Some(store) = self.store(chunks_upload_to) else {
            return false;
        };
        matches!(store.find(&key).await, Ok(Some(meta)) if meta.instance == instance)
    }

    /// Looks at one reservation: if its row is stored, puts the file in place and returns
    /// the upload (whose chunk files the caller removes); otherwise drops it once stale.
    async fn finish_row<Db: ConnectionTrait>(
        &self,
        db: &Db,
        saving: &Path,
        path: &Path,
        age: Duration,
        report: &mut RecoveryReport,
    ) -> Result<Option<UploadId>, DbErr> {
        let reservation: Option<Reservation> = fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let Some(reservation) = reservation.filter(|r| check_relative(&r.path).is_ok()) else {
            // Cut short while being written (or not ours): no row can name it.
            drop_if_stale(path, age, report);
            return Ok(None);
        };
        let Ok(key) = reservation.key.parse::<UploadKey>() else {
            drop_if_stale(path, age, report);
            return Ok(None);
        };
        let chunks_upload_to = reservation.chunks_upload_to.clone();
        let under_way = {
            let (path, root) = (path.to_owned(), self.settings().media_root.clone());
            let dir = chunks_upload_to.clone();
            blocking(move || {
                Ok(moves::holds_file(&path) || moves::saving(&root, dir.as_deref(), key))
            })
            .await?
        };
        if under_way {
            // A save of this upload in this process: it finishes by itself.
            report.left += 1;
            return Ok(None);
        }
        let move_key = MoveKey {
            destination: reservation.destination(),
            relative: reservation.path.clone(),
        };
        match row_holds(db, &move_key).await {
            Ok(true) => {}
            Ok(false) => {
                drop_if_stale(path, age, report);
                return Ok(None);
            }
            Err(e) => {
                // Another database's table (apps with several share a chunk directory).
                tracing::warn!(table = %reservation.table, error = %e, "cannot check an interrupted save");
                report.left += 1;
                return Ok(None);
            }
        }
        let Some(store) = self.store(chunks_upload_to.as_deref()) else {
            report.left += 1;
            return Ok(None);
        };
        let ours = self
            .still_holds(chunks_upload_to.as_deref(), key, &reservation.instance)
            .await;
        let target = self.settings().media_root.join(&reservation.path);
        let kept = moves::kept_data_path(saving, &key, &reservation.instance);
        let data = store.location(&key);
        let linked = blocking(move || {
            if target.try_exists().map_err(io_error)? {
                return Ok(true);
            }
            let source = [Some(kept), ours.then_some(data)]
                .into_iter()
                .flatten()
                .find(|source| source.is_file());
            let Some(source) = source else {
                return Ok(false);
            };
            if let Some(dir) = target.parent() {
                fs::create_dir_all(dir).map_err(io_error)?;
            }
            moves::link_file(&source, &target).map_err(io_error)?;
            Ok(true)
        })
        .await?;
        if linked {
            report.finished += 1;
        } else {
            tracing::error!(path = %reservation.path, table = %reservation.table,
                "a stored row names a file whose upload is gone: it cannot be recovered");
            report.lost += 1;
        }
        Ok(Some((chunks_upload_to, key, reservation.instance)))
    }
}

/// One upload: its chunk directory, key and instance.
type UploadId = (Option<String>, UploadKey, String);

/// The reservation files (`*.json`) in `saving`, with their age.
fn reservation_files(saving: &Path) -> io::Result<Vec<(PathBuf, Duration)>> {
    let entries = match fs::read_dir(saving) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let now = SystemTime::now();
    let mut found = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let modified = fs::metadata(&path).and_then(|m| m.modified());
            let age = modified.map_or(Duration::ZERO, |m| {
                now.duration_since(m).unwrap_or_default()
            });
            found.push((path, age));
        }
    }
    Ok(found)
}

/// Drops the reservation of a save whose row was never stored, once no save can still be
/// under way for it.
fn drop_if_stale(path: &Path, age: Duration, report: &mut RecoveryReport) {
    if age > STALE_AFTER && fs::remove_file(path).is_ok() {
        report.dropped += 1;
    } else {
        report.left += 1;
    }
}

fn io_error(e: io::Error) -> DbErr {
    DbErr::Custom(format!("recovering interrupted saves: {e}"))
}
