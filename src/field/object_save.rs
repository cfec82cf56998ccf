//! Saving a file field when uploads are on object storage ([`crate::UploadsBuilder::object_storage`]).
//!
//! The same order as for local files, with the database in place of reservation files:
//! `before_save` reserves a free path for the upload in the ledger's `resumable_save`
//! table (unique, so two uploads saved at once, on any servers, never get one name) and
//! puts it in the column; once the row is stored, `after_save` copies the assembled
//! upload to that key (inside the store when it can), then forgets the upload (its objects and ledger
//! rows) and, last, the reservation. A failed INSERT/UPDATE leaves the upload as it was
//! (a retry takes the reservation over); a save cut short by a crash is finished or
//! dropped by [`Uploads::recover_saves`](crate::Uploads::recover_saves) from any server.

use sea_orm::{ConnectionTrait, DbErr};
use std::{
    collections::HashMap,
    io,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::{
    PendingUpload, RecoveryReport,
    moves::{Destination, MoveKey, STALE_AFTER},
    name::{NAME_ATTEMPTS, alternative_path},
    row::{ALREADY_SAVED, row_holds},
    value::hook_error,
};
use crate::{
    UploadKey,
    storage::FileStorage,
    storage::ledger::{Reserved, UploadState},
    storage::object::ObjectStorage,
};

/// A save between its two hooks in this process.
struct ObjectMove {
    upload: Arc<PendingUpload>,
    replaced: Option<String>,
    since: Instant,
}

/// The message of a save refused while another save of the upload, to another place, is
/// under way.
const SAVING_ELSEWHERE: &str =
    "this upload is being saved in another row right now; try again in a moment";

/// Whether a reservation made at `reserved_at` (ms) is older than a save may take.
fn is_stale(reserved_at: i64) -> bool {
    let age = crate::storage::ledger::now_millis().saturating_sub(reserved_at);
    u128::try_from(age).unwrap_or(0) > STALE_AFTER.as_millis()
}

/// Saves between `before_save` and `after_save` in this process, by row and path.
static MOVES: Mutex<Option<HashMap<MoveKey, ObjectMove>>> = Mutex::new(None);

fn with_moves<T>(f: impl FnOnce(&mut HashMap<MoveKey, ObjectMove>) -> T) -> T {
    let mut guard = MOVES.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(HashMap::new))
}

/// Remembers a reserved save for `after_save` (and drops entries whose `after_save`
/// never came: their INSERT failed long ago).
fn remember(key: MoveKey, upload: Arc<PendingUpload>, replaced: Option<String>) {
    with_moves(|moves| {
        moves.retain(|_, m| m.since.elapsed() < Duration::from_secs(24 * 60 * 60));
        moves.insert(
            key,
            ObjectMove {
                upload,
                replaced,
                since: Instant::now(),
            },
        );
    });
}

/// The `before_save` half on object storage: reserves a free path near `wanted` for
/// `upload` and returns it.
pub(super) async fn before_save<Db: ConnectionTrait>(
    upload: Arc<PendingUpload>,
    shared: &ObjectStorage,
    wanted: String,
    replaced: Option<String>,
    destination: Destination,
    db: &Db,
) -> Result<String, DbErr> {
    let ledger = shared.chunks.ledger();
    let key = upload.key;
    let mut candidate = wanted.clone();
    for _ in 0..NAME_ATTEMPTS {
        // An unfinished earlier save of this upload: refused if its row is stored (the
        // upload is taken); taken over if it goes to the same place (a retry after a
        // failed INSERT, or the same form twice); else given up for this one.
        if let Some(earlier) = ledger.save_reservation(&key).await? {
            let held = MoveKey {
                destination: earlier.destination.clone(),
                relative: earlier.path.clone(),
            };
            let stored = row_holds(db, &held).await?;
            if earlier.instance != upload.meta.instance {
                // Left by an earlier upload of the same file (same key), removed since
                // (its save stopped between removing it and ending the reservation): its
                // file is in place if its row was stored; either way it is over.
                if stored {
                    ledger.end_save(&key, &earlier.path).await?;
                } else {
                    ledger.drop_save(&earlier).await?;
                }
                continue;
            }
            if stored {
                return Err(hook_error(ALREADY_SAVED));
            }
            if earlier.wanted == wanted && earlier.destination == destination {
                if ledger.renew_save(&earlier).await?.is_some() {
                    remember(held, upload, replaced);
                    crate::faults::fault_point!("save-reserved");
                    return Ok(earlier.path);
                }
            } else if is_stale(earlier.reserved_at) {
                // A save that failed (or whose server died) long ago: given up for this one.
                ledger.drop_save(&earlier).await?;
            } else {
                // Another save of this upload, to another place, may still store its row.
                return Err(hook_error(SAVING_ELSEWHERE));
            }
            continue;
        }
        if ledger.state(&key).await? != Some(UploadState::Complete) {
            // Saved and forgotten by another save meanwhile.
            return Err(hook_error(ALREADY_SAVED));
        }
        let target = MoveKey {
            destination: destination.clone(),
            relative: candidate.clone(),
        };
        let exists = shared.files.exists(&candidate).await.map_err(hook_error)?;
        if !exists && !row_holds(db, &target).await? {
            match ledger
                .reserve_save(
                    (&key, &upload.meta.instance),
                    &candidate,
                    &wanted,
                    &destination,
                )
                .await?
            {
                Reserved::Yes(reservation) => {
                    // The upload may have been saved and removed since the check above.
                    if ledger.state(&key).await? != Some(UploadState::Complete) {
                        ledger.drop_save(&reservation).await?;
                        return Err(hook_error(ALREADY_SAVED));
                    }
                    remember(target, upload, replaced);
                    crate::faults::fault_point!("save-reserved");
                    return Ok(candidate);
                }
                // Another save of this upload got there first: decided above.
                Reserved::UploadTaken => continue,
                Reserved::PathTaken => {}
            }
        }
        candidate = alternative_path(&wanted);
    }
    Err(hook_error(format!("no free name near {wanted:?}")))
}

/// The `after_save` half on object storage: if `key` is a save this process reserved,
/// puts the file in place and returns true.
pub(super) async fn after_save(key: &MoveKey) -> Result<bool, DbErr> {
    let Some(save) = with_moves(|moves| moves.remove(key)) else {
        return Ok(false);
    };
    let Some(shared) = save.upload.uploads.shared() else {
        return Ok(false);
    };
    crate::faults::fault_point!("save-stored");
    // Only while the upload's reservation still names this path: an entry whose save
    // failed long ago must not act on a later save of this row (nor delete its old file).
    let ours = shared
        .chunks
        .ledger()
        .save_reservation(&save.upload.key)
        .await?
        .is_some_and(|r| r.path == key.relative);
    if !ours {
        // Another save of the upload to this path finished it, or this entry is stale.
        return Ok(true);
    }
    let upload = &save.upload;
    finish(
        shared,
        (&upload.key, &upload.meta.instance),
        &key.relative,
        upload.meta.total_size,
    )
    .await
    .map_err(|e| hook_error(format!("the row is saved but its file was not: {e}")))?;
    if let Some(old) = save.replaced.filter(|old| old != &key.relative)
        && let Err(e) = shared.files.delete(&old).await
    {
        tracing::warn!(path = old, error = %e, "could not delete a replaced file");
    }
    Ok(true)
}

/// Copies upload `key`'s file (the upload `instance` of that key) to `path` unless it is
/// there, then, if the upload's reservation names `path`, forgets the upload and ends the
/// reservation. An upload of the same key made since (another instance) is never copied
/// from nor removed.
async fn finish(
    shared: &ObjectStorage,
    (key, instance): (&UploadKey, &str),
    path: &str,
    size: u64,
) -> io::Result<()> {
    let ledger = shared.chunks.ledger();
    let same_upload = ledger
        .meta(key)
        .await
        .map_err(io::Error::other)?
        .is_some_and(|meta| meta.instance == instance);
    if same_upload {
        let source = shared.chunks.complete_path(key);
        shared
            .files
            .copy_in(shared.chunks.store(), &source, path, size)
            .await?;
    } else if !shared.files.exists(path).await? {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("the upload of {path:?} is gone"),
        ));
    }
    crate::faults::fault_point!("save-linked");
    let reservation = ledger
        .save_reservation(key)
        .await
        .map_err(io::Error::other)?;
    if reservation.is_some_and(|r| r.path == path) {
        if same_upload && let Err(e) = shared.chunks.remove(key).await {
            // The reservation stays, so that recovery removes the upload later (until
            // then it cannot be saved again: its reservation's row is stored).
            tracing::warn!(%key, error = %e, "could not remove a saved upload's objects");
            return Ok(());
        }
        crate::faults::fault_point!("save-released");
        ledger.end_save(key, path).await.map_err(io::Error::other)?;
    }
    Ok(())
}

/// [`Uploads::recover_saves`](crate::Uploads::recover_saves) on object storage: every
/// reservation not under way in this process is finished if its row is stored (finishing
/// twice is harmless, should its save still be running on another server), dropped if
/// not and older than a save may take.
pub(crate) async fn recover<Db: ConnectionTrait>(
    shared: &ObjectStorage,
    db: &Db,
) -> Result<RecoveryReport, DbErr> {
    let mut report = RecoveryReport::default();
    let ledger = shared.chunks.ledger();
    let stale_before = crate::storage::ledger::now_millis()
        .saturating_sub(i64::try_from(STALE_AFTER.as_millis()).unwrap_or(i64::MAX));
    for reservation in ledger.stale_save_reservations(Duration::ZERO).await? {
        let key = MoveKey {
            destination: reservation.destination.clone(),
            relative: reservation.path.clone(),
        };
        if with_moves(|moves| moves.contains_key(&key)) {
            report.left += 1;
            continue;
        }
        match row_holds(db, &key).await {
            Err(e) => {
                tracing::warn!(path = reservation.path, error = %e, "save left: its table is not in this database");
                report.left += 1;
            }
            Ok(false) if reservation.reserved_at >= stale_before => report.left += 1,
            Ok(false) => {
                ledger.drop_save(&reservation).await?;
                report.dropped += 1;
            }
            Ok(true) => {
                let size = ledger
                    .meta(&reservation.key)
                    .await?
                    .map_or(0, |meta| meta.total_size);
                let upload = (&reservation.key, reservation.instance.as_str());
                match finish(shared, upload, &reservation.path, size).await {
                    Ok(()) => report.finished += 1,
                    Err(e) => {
                        tracing::error!(path = reservation.path, error = %e, "a stored row's file could not be put in place");
                        report.lost += 1;
                    }
                }
            }
        }
    }
    Ok(report)
}
