//! The moves `before_save` prepares and `after_save` does: reserving a unique final path,
//! staging a copy when the chunks are on another file system, and linking the file into
//! place once the row is stored.
//!
//! sea-orm passes the hooks only the model and the connection, so a move prepared before
//! the row is written is found again after it through a process-wide table keyed by the
//! reserved path (unique in the process: reserving checks the table). Reservation files
//! in `<chunk dir>/saving/` keep a path taken across processes.
//!
//! Several saves of one upload may be unfinished at once (a form submitted twice, or a
//! failed save and its retry): each keeps its prepared move, and the upload's data file
//! stays until the last of them is committed or found stale ([`STALE_AFTER`]), so every
//! row that gets stored finds the file it names. The first commit claims the upload (its
//! token stops working).

use sha2::{Digest, Sha256};
use std::{
    collections::{HashMap, HashSet},
    fs, io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use super::{PendingUpload, name::alternative_path};
use crate::UploadKey;

/// The private directory under the media root for copies waiting to be linked.
pub(crate) const STAGING_DIR: &str = ".resumable_staging";

/// A prepared move not committed after this long belongs to a save that failed; it is
/// dropped (with its reservation and staged copy) the next time a save looks.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(10 * 60);

/// Attempts at a unique name before giving up (each alternative has 62^7 choices).
const NAME_ATTEMPTS: usize = 32;

/// Where a save is going: the row's table and the file column.
pub(crate) struct Destination<'a> {
    pub table: &'a str,
    pub column: &'a str,
}

/// An unfinished earlier save of the same upload: its path and where its row would be.
pub(crate) struct EarlierSave {
    pub relative: String,
    pub wanted: String,
    pub table: String,
    pub column: String,
}

/// What a reservation file holds: enough to finish or undo the save after a crash
/// between the row being stored and the file being moved (the row is found by table,
/// column and path).
#[derive(serde::Serialize, serde::Deserialize)]
struct Reservation {
    key: String,
    chunks_upload_to: Option<String>,
    path: String,
    table: String,
    column: String,
}

/// One upload, across chunk directories and media roots.
#[derive(Clone, PartialEq, Eq, Hash)]
struct UploadId {
    media_root: PathBuf,
    chunks_upload_to: Option<&'static str>,
    key: UploadKey,
}

impl UploadId {
    fn of(upload: &PendingUpload) -> Self {
        Self {
            media_root: upload.uploads.settings().media_root.clone(),
            chunks_upload_to: upload.chunks_upload_to,
            key: upload.key,
        }
    }
}

/// A move prepared by `before_save`.
struct PreparedMove {
    upload: Arc<PendingUpload>,
    id: UploadId,
    /// Final path relative to the media root (the column's value).
    relative: String,
    /// The path asked for, before a unique alternative was chosen.
    wanted: String,
    table: String,
    column: String,
    /// The file to link: the upload's data file, or a copy on the target's file system.
    source: PathBuf,
    staged: bool,
    /// The reservation file that keeps `relative` taken across processes.
    reservation: PathBuf,
    /// An old file to delete once the row is stored (`DELETE_REPLACED`).
    replaced: Option<String>,
    prepared_at: Instant,
}

#[derive(Default)]
struct Table {
    /// Prepared moves by final relative path.
    moves: HashMap<String, PreparedMove>,
    /// Uploads saved to a row, whose data file is kept for other unfinished saves.
    claimed: HashSet<UploadId>,
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);

fn table() -> MutexGuard<'static, Option<Table>> {
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The newest unfinished save of `upload` prepared in this process.
pub(crate) fn earlier_save(upload: &PendingUpload) -> Option<EarlierSave> {
    let guard = table();
    let id = UploadId::of(upload);
    let earlier = guard
        .as_ref()?
        .moves
        .values()
        .filter(|m| m.id == id)
        .max_by_key(|m| m.prepared_at)?;
    Some(EarlierSave {
        relative: earlier.relative.clone(),
        wanted: earlier.wanted.clone(),
        table: earlier.table.clone(),
        column: earlier.column.clone(),
    })
}

/// Reserves a unique final path for `upload`, starting from `wanted`, or takes over the
/// unfinished earlier save at `take_over` (same upload, same path wanted). Blocking.
pub(crate) fn prepare(
    upload: Arc<PendingUpload>,
    wanted: String,
    replaced: Option<String>,
    destination: &Destination<'_>,
    take_over: Option<String>,
) -> io::Result<String> {
    let settings = upload.uploads.settings();
    let media_root = settings.media_root.clone();
    let reservations = settings.chunk_dir().join("saving");
    fs::create_dir_all(&reservations)?;
    let id = UploadId::of(&upload);
    let mut guard = table();
    let table = guard.get_or_insert_with(Table::default);
    drop_stale(table);
    if table.claimed.contains(&id) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "this upload is already saved in another row",
        ));
    }
    if let Some(taken) = take_over.and_then(|path| table.moves.get_mut(&path))
        && taken.id == id
    {
        taken.replaced = replaced.or(taken.replaced.take());
        taken.prepared_at = Instant::now();
        return Ok(taken.relative.clone());
    }
    let mut candidate = wanted.clone();
    for _ in 0..NAME_ATTEMPTS {
        let target = media_root.join(&candidate);
        let reservation = reservations.join(reservation_name(&candidate));
        let free = !table.moves.contains_key(&candidate)
            && !target.try_exists()?
            && reserve(&reservation, &upload, &candidate, destination)?;
        if free {
            let (source, staged) = match stage(&upload, &media_root, &target) {
                Ok(staged) => staged,
                Err(e) => {
                    let _ = fs::remove_file(&reservation);
                    return Err(e);
                }
            };
            table.moves.insert(
                candidate.clone(),
                PreparedMove {
                    upload,
                    id,
                    relative: candidate.clone(),
                    wanted,
                    table: destination.table.to_owned(),
                    column: destination.column.to_owned(),
                    source,
                    staged,
                    reservation,
                    replaced,
                    prepared_at: Instant::now(),
                },
            );
            return Ok(candidate);
        }
        candidate = alternative_path(&wanted);
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free name near {wanted:?}"),
    ))
}

/// A move done by [`commit`].
pub(crate) struct Committed {
    pub upload: Arc<PendingUpload>,
    pub replaced: Option<String>,
    /// No other save of the upload is unfinished: its data file can go.
    pub last: bool,
}

/// Does the move prepared for `relative`, if this process prepared one: links the file
/// there (never over another file) and claims the upload. Blocking.
pub(crate) fn commit(relative: &str) -> io::Result<Option<Committed>> {
    let mut guard = table();
    let Some(table) = guard.as_mut() else {
        return Ok(None);
    };
    let Some(prepared) = table.moves.remove(relative) else {
        return Ok(None);
    };
    link_into_place(&prepared)?;
    // Claimed until its data file is gone (`unclaim`), so no new save stages from a file
    // about to be removed.
    table.claimed.insert(prepared.id.clone());
    let last = !table.moves.values().any(|m| m.id == prepared.id);
    Ok(Some(Committed {
        upload: prepared.upload,
        replaced: prepared.replaced,
        last,
    }))
}

/// Forgets that `upload` was claimed, once its data file is removed.
pub(crate) fn unclaim(upload: &PendingUpload) {
    if let Some(table) = table().as_mut() {
        table.claimed.remove(&UploadId::of(upload));
    }
}

/// Drops prepared moves older than [`STALE_AFTER`]; removes the data file of a claimed
/// upload once no save of it is left.
fn drop_stale(table: &mut Table) {
    let stale: Vec<String> = table
        .moves
        .iter()
        .filter(|(_, m)| m.prepared_at.elapsed() > STALE_AFTER)
        .map(|(path, _)| path.clone())
        .collect();
    for path in stale {
        let Some(old) = table.moves.remove(&path) else {
            continue;
        };
        discard(&old);
        let others = table.moves.values().any(|m| m.id == old.id);
        if !others && table.claimed.remove(&old.id) {
            let _ = fs::remove_file(&old.upload.data_path);
        }
    }
}

/// The reservation file name of a relative path: a hash, since paths nest.
fn reservation_name(relative: &str) -> String {
    format!(
        "{}.json",
        hex::encode(&Sha256::digest(relative.as_bytes())[..16])
    )
}

/// Takes the reservation file for `relative`; true if it is now ours (created, or left by
/// an earlier attempt of the same upload in a process that stopped).
fn reserve(
    reservation: &Path,
    upload: &PendingUpload,
    relative: &str,
    destination: &Destination<'_>,
) -> io::Result<bool> {
    let record = Reservation {
        key: upload.key.to_string(),
        chunks_upload_to: upload.chunks_upload_to.map(str::to_owned),
        path: relative.to_owned(),
        table: destination.table.to_owned(),
        column: destination.column.to_owned(),
    };
    let json = serde_json::to_vec(&record).map_err(io::Error::other)?;
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(reservation)
    {
        Ok(mut file) => {
            io::Write::write_all(&mut file, &json)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let held: Option<Reservation> = fs::read(reservation)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok());
            Ok(held.is_some_and(|held| {
                held.key == record.key && held.chunks_upload_to == record.chunks_upload_to
            }))
        }
        Err(e) => Err(e),
    }
}

/// The file to link at `target` when the row is stored: the upload's data file when it is
/// on the same file system as the target's directory; else a copy made now (synced) on
/// the target's file system, so the step after the row is stored is a link either way.
/// The copy goes to the media root's staging directory when that is on the target's file
/// system (it usually is), so a failed save leaves nothing in the `upload_to` directory;
/// otherwise next to the target, hidden.
fn stage(upload: &PendingUpload, media_root: &Path, target: &Path) -> io::Result<(PathBuf, bool)> {
    let dir = target.parent().unwrap_or(media_root);
    fs::create_dir_all(dir)?;
    let target_device = fs::metadata(dir)?.dev();
    if fs::metadata(&upload.data_path)?.dev() == target_device {
        return Ok((upload.data_path.clone(), false));
    }
    let staging = media_root.join(STAGING_DIR);
    fs::create_dir_all(&staging)?;
    let name = format!(
        "{}-{}.resumable-staging",
        upload.key,
        uuid::Uuid::new_v4().simple()
    );
    let staged = if fs::metadata(&staging)?.dev() == target_device {
        staging.join(name)
    } else {
        dir.join(format!(".{name}"))
    };
    fs::copy(&upload.data_path, &staged)?;
    fs::File::open(&staged)?.sync_all()?;
    Ok((staged, true))
}

/// Undoes a prepared move that will not be committed.
fn discard(prepared: &PreparedMove) {
    if prepared.staged {
        let _ = fs::remove_file(&prepared.source);
    }
    let _ = fs::remove_file(&prepared.reservation);
}

/// Links the prepared file at its final path (never replacing a file), syncs the
/// directory, and drops the staging copy and the reservation.
fn link_into_place(prepared: &PreparedMove) -> io::Result<()> {
    let target = prepared
        .upload
        .uploads
        .settings()
        .media_root
        .join(&prepared.relative);
    match fs::hard_link(&prepared.source, &target) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if !same_file(&prepared.source, &target) {
                return Err(e);
            }
        }
        // File systems without hard links: a rename, after checking the name is free.
        Err(e) if e.kind() != io::ErrorKind::NotFound && !target.try_exists()? => {
            fs::rename(&prepared.source, &target)?
        }
        Err(e) => return Err(e),
    }
    if let Some(dir) = target.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    if prepared.staged {
        let _ = fs::remove_file(&prepared.source);
    }
    let _ = fs::remove_file(&prepared.reservation);
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}
