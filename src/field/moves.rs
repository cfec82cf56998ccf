//! The moves `before_save` prepares and `after_save` does: reserving a unique final path,
//! staging a copy when the chunks are on another file system, and linking the file into
//! place once the row is stored.
//!
//! sea-orm passes the hooks only the model and the connection, so a move prepared before
//! the row is written is found again after it through a process-wide table keyed by the
//! row's table, file column and reserved path. Reservation files in
//! `<chunk dir>/saving/` keep a path taken across processes.
//!
//! Several saves of one upload may be unfinished at once (a form submitted twice, or a
//! failed save and its retry). Each keeps its prepared move. The first to commit claims
//! the upload: its chunk files go (a later upload of the same identifier starts clean),
//! but its data file is moved aside while other saves of it are unfinished, so each of
//! them that stores its row still finds its file. A save not committed within
//! [`STALE_AFTER`] is taken for failed and dropped; if its row turns up after all, its
//! `after_save` fails loudly rather than leave a path without a file unnoticed.
//!
//! The table's lock is held only for bookkeeping and for the link itself (a directory
//! operation); the copy of a whole file across file systems happens outside it.

use sha2::{Digest, Sha256};
use std::{
    collections::HashMap,
    fs, io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use super::{
    PendingUpload,
    name::{NAME_ATTEMPTS, alternative_path},
};
use crate::service::settings::STAGING_DIR;

/// A prepared move not committed after this long belongs to a save that failed; it is
/// dropped (with its reservation and staged copy) the next time a save looks.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(10 * 60);

/// How long a dropped move is remembered, to fail its `after_save` if it comes after all.
const TOMBSTONE_FOR: Duration = Duration::from_secs(24 * 60 * 60);

/// Where a save is going: the row's table (with its schema, if any) and file column.
pub(crate) use crate::storage::ledger::SaveDestination as Destination;

/// One save: where its row goes, and through which connection (see `connection_id` in
/// the save hooks).
pub(crate) struct Save<'a> {
    pub destination: &'a Destination,
    pub connection: usize,
}

/// A prepared move, by its row's destination and its reserved path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct MoveKey {
    pub destination: Destination,
    pub relative: String,
}

/// An unfinished earlier save of the same upload.
pub(crate) struct EarlierSave {
    pub key: MoveKey,
    pub wanted: String,
    pub replaced: Option<String>,
}

/// What a reservation file holds: the upload and the row's destination, so that after a
/// crash `Uploads::recover_saves` can look the row up and finish or drop the save.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Reservation {
    pub key: String,
    pub instance: String,
    pub chunks_upload_to: Option<String>,
    pub path: String,
    pub schema: Option<String>,
    pub table: String,
    pub column: String,
}

impl Reservation {
    /// The row's table and file column.
    pub fn destination(&self) -> Destination {
        Destination {
            schema: self.schema.clone(),
            table: self.table.clone(),
            column: self.column.clone(),
        }
    }
}

/// Where the data of a claimed upload (`key`, `instance`) is kept for its other
/// unfinished saves, in the chunk directory's `saving/`.
pub(crate) fn kept_data_path(saving: &Path, key: &crate::UploadKey, instance: &str) -> PathBuf {
    saving.join(format!("{key}-{instance}.data"))
}

/// One upload (one instance of an upload key), across chunk directories and media roots.
#[derive(Clone, PartialEq, Eq, Hash)]
struct UploadId {
    media_root: PathBuf,
    chunks_upload_to: Option<&'static str>,
    key: crate::UploadKey,
    instance: String,
}

impl UploadId {
    fn of(upload: &PendingUpload) -> Self {
        Self {
            media_root: upload.uploads.settings().media_root.clone(),
            chunks_upload_to: upload.chunks_upload_to,
            key: upload.key,
            instance: upload.meta.instance.clone(),
        }
    }
}

/// A move prepared by `before_save`.
struct PreparedMove {
    upload: Arc<PendingUpload>,
    id: UploadId,
    /// The path asked for, before a unique alternative was chosen.
    wanted: String,
    /// The file to link: the upload's data file (or where it was moved aside), or a copy
    /// on the target's file system.
    source: PathBuf,
    staged: bool,
    /// The reservation file that keeps the path taken across processes.
    reservation: PathBuf,
    /// An old file to delete once the row is stored (`DELETE_REPLACED`).
    replaced: Option<String>,
    prepared_at: Instant,
    /// The connections of the saves sharing this move (one, or more after take-overs).
    connections: Vec<usize>,
}

#[derive(Default)]
struct Table {
    moves: HashMap<MoveKey, PreparedMove>,
    /// Uploads saved to a row, with where their data file was kept for other unfinished
    /// saves of them (`None`: no other save, the data goes with the chunk files).
    claimed: HashMap<UploadId, Option<PathBuf>>,
    /// Moves dropped as stale: when, and the connections of their saves.
    tombstones: HashMap<MoveKey, (Instant, Vec<usize>)>,
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);

/// The table, locked. Callers on async threads go through `spawn_blocking`: the lock is
/// held while a file is linked.
fn locked() -> MutexGuard<'static, Option<Table>> {
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

fn with_table<T>(f: impl FnOnce(&mut Table) -> T) -> T {
    f(locked().get_or_insert_with(Table::default))
}

/// The newest unfinished save of `upload` prepared in this process. Blocking.
pub(crate) fn earlier_save(upload: &PendingUpload) -> Option<EarlierSave> {
    let id = UploadId::of(upload);
    with_table(|table| {
        let (key, earlier) = table
            .moves
            .iter()
            .filter(|(_, m)| m.id == id)
            .max_by_key(|(_, m)| m.prepared_at)?;
        Some(EarlierSave {
            key: key.clone(),
            wanted: earlier.wanted.clone(),
            replaced: earlier.replaced.clone(),
        })
    })
}

/// Reserves a unique final path for `upload`, starting from `wanted` and avoiding
/// `avoid` (paths rows already hold), or takes over the unfinished earlier save `take_over`
/// of the same upload. Stages a copy if the chunks are on another file system. Blocking.
pub(crate) fn prepare(
    upload: Arc<PendingUpload>,
    wanted: String,
    replaced: Option<String>,
    save: &Save<'_>,
    take_over: Option<MoveKey>,
    avoid: &[String],
) -> io::Result<String> {
    let destination = save.destination;
    let settings = upload.uploads.settings();
    let media_root = settings.media_root.clone();
    let reservations = settings.chunk_dir().join("saving");
    fs::create_dir_all(&reservations)?;
    let id = UploadId::of(&upload);
    let (relative, target, needs_copy) = {
        let mut guard = locked();
        let table = guard.get_or_insert_with(Table::default);
        table.drop_stale();
        if table.claimed.contains_key(&id) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "this upload is already saved in another row",
            ));
        }
        if let Some(taken) = take_over.and_then(|key| table.moves.get_mut(&key).map(|m| (key, m)))
            && taken.1.id == id
        {
            taken.1.prepared_at = Instant::now();
            taken.1.connections.push(save.connection);
            return Ok(taken.0.relative);
        }
        let mut candidate = wanted.clone();
        let mut reserved = None;
        for _ in 0..NAME_ATTEMPTS {
            let target = media_root.join(&candidate);
            let reservation = reservations.join(reservation_name(&candidate));
            let free = !avoid.contains(&candidate)
                && !table.holds(&media_root, destination, &candidate)
                && !target.try_exists()?
                && reserve(&reservation, &upload, &candidate, destination)?;
            if free {
                reserved = Some((candidate, target, reservation));
                break;
            }
            candidate = alternative_path(&wanted);
        }
        let Some((relative, target, reservation)) = reserved else {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("no free name near {wanted:?}"),
            ));
        };
        let dir = target.parent().unwrap_or(&media_root);
        let needs_copy = fs::create_dir_all(dir)
            .and_then(|()| Ok(fs::metadata(&upload.data_path)?.dev() != fs::metadata(dir)?.dev()));
        let needs_copy = match needs_copy {
            Ok(needs_copy) => needs_copy,
            Err(e) => {
                let _ = fs::remove_file(&reservation);
                return Err(e);
            }
        };
        let key = MoveKey {
            destination: destination.clone(),
            relative: relative.clone(),
        };
        let source = upload.data_path.clone();
        table.moves.insert(
            key,
            PreparedMove {
                upload: upload.clone(),
                id,
                wanted,
                source,
                staged: false,
                reservation,
                replaced,
                prepared_at: Instant::now(),
                connections: vec![save.connection],
            },
        );
        (relative, target, needs_copy)
    };
    if needs_copy {
        let key = MoveKey {
            destination: destination.clone(),
            relative: relative.clone(),
        };
        let copied = stage(&upload, &media_root, &target);
        let mut guard = locked();
        let table = guard.get_or_insert_with(Table::default);
        match (copied, table.moves.get_mut(&key)) {
            (Ok(staged), Some(prepared)) => {
                prepared.source = staged;
                prepared.staged = true;
            }
            (Ok(staged), None) => {
                let _ = fs::remove_file(staged);
            }
            (Err(e), _) => {
                if let Some(prepared) = table.moves.remove(&key) {
                    prepared.discard();
                }
                return Err(e);
            }
        }
    }
    Ok(relative)
}

/// Ends the claim of an upload whose chunk files the first save removed, unless data is
/// kept for other unfinished saves of it (then the last of them ends it).
pub(crate) fn released(upload: &PendingUpload) {
    let id = UploadId::of(upload);
    with_table(|table| {
        if matches!(table.claimed.get(&id), Some(None)) {
            table.claimed.remove(&id);
        }
    });
}

/// Whether a save of the upload `key` (in `chunks_upload_to` under `media_root`) is under
/// way in this process: expiry leaves such an upload alone.
pub(crate) fn saving(
    media_root: &Path,
    chunks_upload_to: Option<&str>,
    key: crate::UploadKey,
) -> bool {
    with_table(|table| {
        let same = |id: &UploadId| {
            id.key == key && id.chunks_upload_to == chunks_upload_to && id.media_root == media_root
        };
        table.moves.values().any(|m| same(&m.id)) || table.claimed.keys().any(same)
    })
}

/// Whether a file under `<chunk dir>/saving/` or the staging directory belongs to a save
/// under way in this process.
pub(crate) fn holds_file(path: &Path) -> bool {
    with_table(|table| {
        table
            .moves
            .values()
            .any(|m| m.reservation == path || m.source == path)
            || table.claimed.values().flatten().any(|kept| kept == path)
    })
}

/// Withdraws the save through `connection` from the move prepared for `key` (its path
/// turned out to be held by a row), dropping the move if no other save shares it. True
/// if another save of the upload took the move over and still holds it: its row may be
/// the one holding the path, and it must still find its move when it commits.
pub(crate) fn cancel(key: &MoveKey, connection: usize) -> bool {
    with_table(|table| {
        let Some(prepared) = table.moves.get_mut(key) else {
            return false;
        };
        prepared.connections.retain(|c| *c != connection);
        if !prepared.connections.is_empty() {
            return true;
        }
        if let Some(prepared) = table.moves.remove(key) {
            prepared.discard();
        }
        false
    })
}

/// A move done by [`commit`].
pub(crate) struct Committed {
    pub upload: Arc<PendingUpload>,
    pub replaced: Option<String>,
    /// The path's reservation file, removed by the caller once the save is finished.
    pub reservation: PathBuf,
    /// The first save of the upload to be stored: its chunk files are to be removed.
    pub release_chunks: bool,
}

/// What [`commit`] found for a saved row's path.
pub(crate) enum Commit {
    /// The file is in place now.
    Done(Committed),
    /// This process prepared nothing for it (the path was not newly set).
    NotPrepared,
    /// It was prepared, then dropped as stale: the row names a file that was not moved.
    Dropped,
}

/// Does the move prepared for `key`, if this process prepared one: links the file there
/// (never over another file), claims the upload, and moves its data file aside if other
/// saves of it are unfinished. On failure the move stays prepared. Blocking.
pub(crate) fn commit(key: &MoveKey, connection: usize) -> io::Result<Commit> {
    with_table(|table| {
        let ours = |connections: &Vec<usize>| connections.contains(&connection);
        if !table.moves.get(key).is_some_and(|m| ours(&m.connections)) {
            let dropped = table.tombstones.get(key).is_some_and(|(_, c)| ours(c));
            if dropped {
                table.tombstones.remove(key);
                return Ok(Commit::Dropped);
            }
            return Ok(Commit::NotPrepared);
        }
        let Some(prepared) = table.moves.remove(key) else {
            return Ok(Commit::NotPrepared);
        };
        if let Err(e) = prepared.link_into_place(&key.relative) {
            table.moves.insert(key.clone(), prepared);
            return Err(e);
        }
        let others = table.moves.values().any(|m| m.id == prepared.id);
        let first = !table.claimed.contains_key(&prepared.id);
        let mut release_chunks = first;
        if first {
            // Claimed from now: no new save stages from files about to be removed.
            let mut kept = None;
            if others {
                // The first save of several: keep the data for the others, under a name
                // the upload key's next upload will not use.
                let data = &prepared.upload.data_path;
                let saving = prepared.reservation.parent().unwrap_or(Path::new("."));
                let aside = kept_data_path(saving, &prepared.upload.key, &prepared.id.instance);
                let keep = match fs::rename(data, &aside) {
                    Ok(()) => aside,
                    Err(e) => {
                        // Kept in place then, and the chunk files with it.
                        tracing::warn!(error = %e, "could not move a saved upload's data aside");
                        release_chunks = false;
                        data.clone()
                    }
                };
                for other in table.moves.values_mut().filter(|m| m.id == prepared.id) {
                    if !other.staged {
                        other.source = keep.clone();
                    }
                }
                kept = Some(keep);
            }
            table.claimed.insert(prepared.id.clone(), kept);
        } else if !others && let Some(kept) = table.claimed.remove(&prepared.id) {
            // The last of several: the data kept for them goes.
            if let Some(kept) = kept {
                let _ = fs::remove_file(kept);
            }
        }
        Ok(Commit::Done(Committed {
            upload: prepared.upload,
            replaced: prepared.replaced,
            reservation: prepared.reservation,
            release_chunks,
        }))
    })
}

impl Table {
    /// Whether a prepared move holds `relative` under `media_root`, or for the same
    /// column under any media root: `after_save` finds a move by column and path alone,
    /// so that pair is kept unique in the process even across upload services.
    fn holds(&self, media_root: &Path, destination: &Destination, relative: &str) -> bool {
        self.moves.iter().any(|(key, m)| {
            key.relative == relative
                && (m.id.media_root == media_root || key.destination == *destination)
        })
    }

    /// Drops prepared moves older than [`STALE_AFTER`] (remembering them as tombstones),
    /// and the data kept aside for a claimed upload once no save of it is left.
    fn drop_stale(&mut self) {
        self.tombstones
            .retain(|_, (dropped, _)| dropped.elapsed() < TOMBSTONE_FOR);
        let stale: Vec<MoveKey> = self
            .moves
            .iter()
            .filter(|(_, m)| m.prepared_at.elapsed() > STALE_AFTER)
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            let Some(old) = self.moves.remove(&key) else {
                continue;
            };
            old.discard();
            self.tombstones
                .insert(key, (Instant::now(), old.connections.clone()));
            if !self.moves.values().any(|m| m.id == old.id)
                && let Some(Some(kept)) = self.claimed.remove(&old.id)
            {
                let _ = fs::remove_file(kept);
            }
        }
    }
}

impl PreparedMove {
    /// Undoes a move that will not be committed.
    fn discard(&self) {
        if self.staged {
            let _ = fs::remove_file(&self.source);
        }
        let _ = fs::remove_file(&self.reservation);
    }

    /// Links the prepared file at its final path (never replacing a file), syncs the
    /// directory, and drops the staging copy (the reservation stays until the save is
    /// finished).
    fn link_into_place(&self, relative: &str) -> io::Result<()> {
        link_file(&self.source, &self.id.media_root.join(relative))?;
        if self.staged {
            let _ = fs::remove_file(&self.source);
        }
        Ok(())
    }
}

/// Links `source` at `target` (never replacing another file; a copy where hard links are
/// not possible, such as across file systems) and syncs the directory. Blocking.
pub(crate) fn link_file(source: &Path, target: &Path) -> io::Result<()> {
    match fs::hard_link(source, target) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if !same_file(source, target) {
                return Err(e);
            }
        }
        // No hard link possible: a copy, after checking the name is free.
        Err(e) if e.kind() != io::ErrorKind::NotFound && !target.try_exists()? => {
            fs::copy(source, target)?;
            fs::File::open(target)?.sync_all()?;
        }
        Err(e) => return Err(e),
    }
    if let Some(dir) = target.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
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
    destination: &Destination,
) -> io::Result<bool> {
    let record = Reservation {
        key: upload.key.to_string(),
        instance: upload.meta.instance.clone(),
        chunks_upload_to: upload.chunks_upload_to.map(str::to_owned),
        path: relative.to_owned(),
        schema: destination.schema.clone(),
        table: destination.table.clone(),
        column: destination.column.clone(),
    };
    let json = serde_json::to_vec(&record).map_err(io::Error::other)?;
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(reservation)
    {
        Ok(mut file) => {
            // On disk before the row can be: after a power loss, a stored row always has
            // the reservation that lets `recover_saves` finish its save.
            io::Write::write_all(&mut file, &json)?;
            file.sync_all()?;
            if let Some(dir) = reservation.parent() {
                fs::File::open(dir)?.sync_all()?;
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let held: Option<Reservation> = fs::read(reservation)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok());
            Ok(held.is_some_and(|held| {
                held.key == record.key
                    && held.instance == record.instance
                    && held.chunks_upload_to == record.chunks_upload_to
            }))
        }
        Err(e) => Err(e),
    }
}

/// Copies the upload's data file (synced) onto the file system of `target`, for a link
/// when the row is stored: into the media root's staging directory when that is on the
/// target's file system (it usually is), so a failed save leaves no file in the
/// `upload_to` directory; otherwise next to the target, hidden.
fn stage(upload: &PendingUpload, media_root: &Path, target: &Path) -> io::Result<PathBuf> {
    let dir = target.parent().unwrap_or(media_root);
    let staging = media_root.join(STAGING_DIR);
    fs::create_dir_all(&staging)?;
    let name = format!(
        "{}-{}.resumable-staging",
        upload.key,
        uuid::Uuid::new_v4().simple()
    );
    let staged = if fs::metadata(&staging)?.dev() == fs::metadata(dir)?.dev() {
        staging.join(name)
    } else {
        dir.join(format!(".{name}"))
    };
    let copied =
        fs::copy(&upload.data_path, &staged).and_then(|_| fs::File::open(&staged)?.sync_all());
    if let Err(e) = copied {
        let _ = fs::remove_file(&staged);
        return Err(e);
    }
    Ok(staged)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}
