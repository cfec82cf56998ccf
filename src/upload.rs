//! The per-upload state machine: which chunks are in, who is writing which chunk, and the
//! one moment the upload becomes complete.
//!
//! One [`Upload`] value exists per upload key in a process ([`Registry`]), loaded from the
//! store on first use, so a restarted server carries on where the last one stopped.
//! Within it:
//! * a chunk is written by one request at a time ([`Upload::claim`]); a duplicate that
//!   arrives meanwhile waits, then finds the chunk stored and writes nothing;
//! * a chunk counts only once all its bytes are written and it is marked in the store;
//! * completion is decided under a lock and done once ([`Upload::finish_if_all_in`]).
//!
//! Everything an [`Upload`] knows is on disk before it is in memory, so the registry
//! drops values nobody holds and nobody used for [`KEEP_IDLE`]: memory follows the
//! uploads in progress, not every upload since the start.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};
use tokio::sync::{Notify, OnceCell};

use crate::faults::fault_point;
use crate::{
    UploadError, UploadKey,
    layout::{Layout, Mode},
    store::{Mark, UploadMeta, fs::FsStore, fs::StoredUpload},
};

/// One upload, shared by every request about it in this process.
#[derive(Debug)]
pub(crate) struct Upload {
    pub key: UploadKey,
    pub meta: UploadMeta,
    pub layout: Layout,
    state: Mutex<State>,
    /// Woken when a chunk claim is released.
    released: Notify,
    /// Held while the upload is being marked complete.
    finishing: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct State {
    /// One byte per chunk number: 0, or the [`Mark`] it was recorded with.
    marks: Vec<u8>,
    /// Number of non-zero marks.
    received: u64,
    /// The mode proven by recorded chunks.
    mode: Option<Mode>,
    /// Chunk numbers being written now, with the mode each would prove.
    writing: HashMap<u64, Option<Mode>>,
    complete: bool,
    /// Removed by expiry: requests still holding this value must not write to it.
    expired: bool,
    /// When a request last looked at the upload.
    used: Instant,
}

/// What is known of an upload at one moment, for answers to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Progress {
    pub complete: bool,
    pub received: u64,
    pub total_chunks: u64,
}

/// The outcome of asking to write a chunk.
pub(crate) enum Claim<'a> {
    /// The chunk was stored before: nothing to write.
    Stored,
    /// This request writes the chunk; dropping the claim releases it.
    Write(ChunkClaim<'a>),
}

/// The right to write one chunk. Released on drop, whatever happened.
pub(crate) struct ChunkClaim<'a> {
    upload: &'a Upload,
    number: u64,
}

/// Whether this call made the upload complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Finish {
    NotYet,
    AlreadyComplete,
    JustCompleted,
}

impl Upload {
    fn new(
        key: UploadKey,
        meta: UploadMeta,
        stored: Option<(Vec<u8>, bool)>,
    ) -> Result<Self, UploadError> {
        let layout = Layout::new(meta.total_size, meta.chunk_size)
            .map_err(|e| UploadError::Unavailable(std::io::Error::other(e)))?;
        let slots = layout.slots() as usize;
        let (marks, complete) = stored.unwrap_or_else(|| (vec![0; slots], false));
        if marks.len() != slots {
            return Err(UploadError::Unavailable(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "chunk record of upload {key} has {} bytes, expected {slots}",
                    marks.len()
                ),
            )));
        }
        let mut mode = None;
        let mut received = 0;
        for mark in marks.iter().filter_map(|&b| Mark::from_byte(b)) {
            received += 1;
            mode = mode.or(mark.mode());
        }
        Ok(Self {
            key,
            meta,
            layout,
            state: Mutex::new(State {
                marks,
                received,
                mode,
                writing: HashMap::new(),
                complete,
                expired: false,
                used: Instant::now(),
            }),
            released: Notify::new(),
            finishing: tokio::sync::Mutex::new(()),
        })
    }

    /// When a request last looked at the upload (reading it does not count).
    fn last_used(&self) -> Instant {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).used
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state half-changed (each
        // change is a few assignments), so a poisoned lock is still usable.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.used = Instant::now();
        state
    }

    /// Refuses a chunk that proves a different mode than the chunks recorded or being
    /// written.
    fn check_mode(state: &State, number: u64, implies: Option<Mode>) -> Result<(), UploadError> {
        let Some(mode) = implies else { return Ok(()) };
        let other = state
            .mode
            .into_iter()
            .chain(state.writing.values().flatten().copied())
            .any(|m| m != mode);
        if other {
            return Err(UploadError::BadRequest(format!(
                "chunk {number} disagrees with earlier chunks of this upload on where the file ends"
            )));
        }
        Ok(())
    }

    /// Whether chunk `number` is stored (or the whole upload complete). A chunk whose size
    /// proves another mode than the stored chunks is refused.
    pub fn has_chunk(&self, number: u64, implies: Option<Mode>) -> Result<bool, UploadError> {
        let state = self.state();
        if state.complete {
            return Ok(true);
        }
        Self::check_mode(&state, number, implies)?;
        Ok(state.marks[(number - 1) as usize] != 0)
    }

    /// Asks to write chunk `number`. Waits while another request writes the same chunk,
    /// for at most `wait` (then: retry later).
    pub async fn claim(
        &self,
        number: u64,
        implies: Option<Mode>,
        wait: Duration,
    ) -> Result<Claim<'_>, UploadError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let released = self.released.notified();
            let mut released = std::pin::pin!(released);
            released.as_mut().enable();
            {
                let mut state = self.state();
                if state.expired {
                    return Err(UploadError::Retry(
                        "this upload expired and was removed; send it again".into(),
                    ));
                }
                if state.complete || state.marks[(number - 1) as usize] != 0 {
                    return Ok(Claim::Stored);
                }
                if !state.writing.contains_key(&number) {
                    Self::check_mode(&state, number, implies)?;
                    state.writing.insert(number, implies);
                    return Ok(Claim::Write(ChunkClaim {
                        upload: self,
                        number,
                    }));
                }
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return Err(UploadError::Retry(format!(
                    "chunk {number} is being received by another request, try again"
                )));
            }
        }
    }

    /// Marks the upload expired unless a chunk is being written now; true if it is now
    /// expired (and so will never be written again through this value).
    pub fn expire(&self) -> bool {
        let mut state = self.state();
        if !state.writing.is_empty() {
            return false;
        }
        state.expired = true;
        true
    }

    /// The current progress.
    pub fn progress(&self) -> Progress {
        let state = self.state();
        Progress {
            complete: state.complete,
            received: state.received,
            total_chunks: self
                .layout
                .chunk_count(state.mode.unwrap_or(Mode::Standard)),
        }
    }

    fn all_in(&self) -> bool {
        let state = self.state();
        !state.complete && self.layout.needed(state.mode) == Some(state.received)
    }

    /// Marks the upload complete in the store if every chunk is in. Exactly one call
    /// returns [`Finish::JustCompleted`] over the upload's life.
    pub async fn finish_if_all_in(&self, store: &FsStore) -> Result<Finish, UploadError> {
        if !self.all_in() {
            return Ok(if self.state().complete {
                Finish::AlreadyComplete
            } else {
                Finish::NotYet
            });
        }
        let _finishing = self.finishing.lock().await;
        if self.state().complete {
            return Ok(Finish::AlreadyComplete);
        }
        fault_point!("upload-finishing");
        store.finish(&self.key).await?;
        self.state().complete = true;
        Ok(Finish::JustCompleted)
    }
}

impl ChunkClaim<'_> {
    /// Records the chunk as stored, after its bytes are written and marked in the store.
    pub fn record(self, mark: Mark) {
        let mut state = self.upload.state();
        let slot = &mut state.marks[(self.number - 1) as usize];
        if *slot == 0 {
            *slot = mark as u8;
            state.received += 1;
            state.mode = state.mode.or(mark.mode());
        }
    }
}

impl Drop for ChunkClaim<'_> {
    fn drop(&mut self) {
        self.upload.state().writing.remove(&self.number);
        self.upload.released.notify_waiters();
    }
}

/// An upload value nobody holds is kept in memory this long after its last use (a
/// client between two chunks), then dropped; the next request loads it from disk.
pub(crate) const KEEP_IDLE: Duration = Duration::from_secs(60);

/// The registry looks for values to drop once it holds this many (then again at twice
/// what it kept), so the cost is spread over the uploads it adds.
const FIRST_SWEEP_AT: usize = 1024;

type Cell = Arc<OnceCell<Arc<Upload>>>;

/// What the registry's lock guards.
#[derive(Debug)]
struct Cells {
    cells: HashMap<UploadKey, Cell>,
    /// The size at which adding an upload sweeps next.
    sweep_at: usize,
    /// Uploads whose files are being removed: not loaded again until that is done.
    removing: HashSet<UploadKey>,
}

/// The uploads of one chunk store, each loaded at most once at a time per process.
#[derive(Debug)]
pub(crate) struct Registry {
    pub store: FsStore,
    /// How long a value nobody holds is kept after its last use ([`KEEP_IDLE`]).
    keep_idle: Duration,
    uploads: Mutex<Cells>,
}

impl Registry {
    pub fn new(store: FsStore) -> Self {
        Self {
            store,
            keep_idle: KEEP_IDLE,
            uploads: Mutex::new(Cells {
                cells: HashMap::new(),
                sweep_at: FIRST_SWEEP_AT,
                removing: HashSet::new(),
            }),
        }
    }

    fn locked(&self) -> MutexGuard<'_, Cells> {
        self.uploads.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cell of `key`, made if needed; refused while the upload's files are removed.
    fn cell(&self, key: UploadKey) -> Result<Cell, UploadError> {
        let mut guard = self.locked();
        let uploads = &mut *guard;
        if uploads.removing.contains(&key) {
            return Err(UploadError::Retry(
                "this upload is being removed; try again".into(),
            ));
        }
        if uploads.cells.len() >= uploads.sweep_at && !uploads.cells.contains_key(&key) {
            Self::sweep_locked(&mut uploads.cells, self.keep_idle);
            uploads.sweep_at = (uploads.cells.len() * 2).max(FIRST_SWEEP_AT);
        }
        Ok(uploads.cells.entry(key).or_default().clone())
    }

    /// Drops the values nobody holds and nobody used for [`KEEP_IDLE`]; returns how many
    /// are left. Safe at any moment: a value is only dropped under the registry's lock,
    /// when no request holds it or its cell, so the next request loads a fresh one from
    /// disk and there is never more than one value per upload.
    pub fn sweep(&self) -> usize {
        let mut guard = self.locked();
        Self::sweep_locked(&mut guard.cells, self.keep_idle);
        guard.cells.len()
    }

    fn sweep_locked(cells: &mut HashMap<UploadKey, Cell>, idle: Duration) {
        cells.retain(|_, cell| {
            let Some(upload) = cell.get() else {
                // Being loaded (or found absent): dropped only when nobody waits on it.
                return Arc::strong_count(cell) > 1;
            };
            Arc::strong_count(cell) > 1
                || Arc::strong_count(upload) > 1
                || upload.last_used().elapsed() < idle
        });
    }

    fn loaded(key: UploadKey, stored: StoredUpload) -> Result<Arc<Upload>, UploadError> {
        Upload::new(key, stored.meta, Some((stored.marks, stored.complete))).map(Arc::new)
    }

    /// The upload `key`, if it exists in memory or in the store. Looking up an upload that
    /// does not exist leaves no trace.
    pub async fn find(&self, key: UploadKey) -> Result<Option<Arc<Upload>>, UploadError> {
        let known = {
            let guard = self.locked();
            guard.cells.get(&key).and_then(|cell| cell.get().cloned())
        };
        if known.is_some() {
            return Ok(known);
        }
        // Loaded inside the cell, so the value is made from what is on disk once no other
        // value of the upload exists (`None` inside: not on disk).
        let cell = self.cell(key)?;
        let found = cell
            .get_or_try_init(|| async {
                match self.store.load(&key).await {
                    Ok(Some(stored)) => Self::loaded(key, stored).map_err(Some),
                    Ok(None) => Err(None),
                    Err(e) => Err(Some(e.into())),
                }
            })
            .await;
        match found {
            Ok(upload) => Ok(Some(upload.clone())),
            Err(absent_or_error) => {
                let mut guard = self.locked();
                let unused = guard.cells.get(&key).is_some_and(|c| {
                    Arc::ptr_eq(c, &cell) && c.get().is_none() && Arc::strong_count(c) == 2
                });
                if unused {
                    guard.cells.remove(&key);
                }
                absent_or_error.map_or(Ok(None), Err)
            }
        }
    }

    /// Starts removing the upload `key` if it is not being written: marks its in-memory
    /// value (if loaded) expired, forgets it, and keeps it from being loaded again until
    /// [`removed`](Self::removed). False if a chunk of it is being written now.
    pub fn expire(&self, key: UploadKey) -> bool {
        let mut guard = self.locked();
        if let Some(upload) = guard.cells.get(&key).and_then(|cell| cell.get())
            && !upload.expire()
        {
            return false;
        }
        guard.cells.remove(&key);
        guard.removing.insert(key);
        true
    }

    /// Starts removing the upload `key`, which a model saved: forgets it in this process
    /// and keeps it from being loaded again until [`removed`](Self::removed).
    pub fn forget(&self, key: UploadKey) {
        let mut guard = self.locked();
        guard.cells.remove(&key);
        guard.removing.insert(key);
    }

    /// The files of `key` are removed (or their removal failed): it may be loaded again.
    pub fn removed(&self, key: UploadKey) {
        self.locked().removing.remove(&key);
    }

    /// The upload `key`, created with `meta` if it does not exist yet.
    pub async fn find_or_create(
        &self,
        key: UploadKey,
        meta: &UploadMeta,
    ) -> Result<Arc<Upload>, UploadError> {
        let cell = self.cell(key)?;
        let upload = cell
            .get_or_try_init(|| async {
                if let Some(stored) = self.store.load(&key).await? {
                    return Self::loaded(key, stored);
                }
                let upload = Upload::new(key, meta.clone(), None)?;
                self.store.create(&key, meta, upload.layout.slots()).await?;
                Ok(Arc::new(upload))
            })
            .await?;
        Ok(upload.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChunkParams, Scope, Secret, Settings, Uploads};
    use bytes::Bytes;

    fn chunk(number: u64) -> (ChunkParams, Vec<Result<Bytes, std::io::Error>>) {
        let params = ChunkParams {
            chunk_number: number,
            chunk_size: 4,
            current_chunk_size: 4,
            total_size: 8,
            identifier: "8-idle".into(),
            filename: "idle.bin".into(),
            relative_path: None,
            content_type: None,
            file_part: "file".into(),
            field: None,
        };
        let bytes = if number == 1 { "abcd" } else { "efgh" };
        (params, vec![Ok(Bytes::from(bytes))])
    }

    #[tokio::test]
    async fn an_idle_upload_nobody_holds_leaves_memory_and_comes_back_from_disk() {
        let media = tempfile::tempdir().unwrap();
        let uploads = Uploads::builder(Settings::new(media.path()), Secret::generate())
            .build()
            .await
            .unwrap();
        let registry = uploads.registry(None).unwrap();
        let scope = Scope::new("u");
        let (first, body) = chunk(1);
        uploads
            .receive_chunk(&scope, &first, futures_util::stream::iter(body))
            .await
            .unwrap();
        assert_eq!(registry.sweep(), 1, "recently used: kept");

        let key = UploadKey::derive(&scope, "8-idle");
        let held = registry.find(key).await.unwrap().unwrap();
        let sweep_idle = |registry: &Registry| {
            let mut guard = registry.locked();
            Registry::sweep_locked(&mut guard.cells, Duration::ZERO);
            guard.cells.len()
        };
        assert_eq!(sweep_idle(registry), 1, "held by a request: kept");
        drop(held);
        assert_eq!(sweep_idle(registry), 0, "idle and unheld: dropped");

        // Loaded again from disk: chunk 1 is still in, chunk 2 completes it.
        let status = uploads.test_chunk(&scope, &first).await.unwrap();
        assert!(status.is_some_and(|s| !s.complete));
        let (second, body) = chunk(2);
        assert!(uploads.test_chunk(&scope, &second).await.unwrap().is_none());
        let status = uploads
            .receive_chunk(&scope, &second, futures_util::stream::iter(body))
            .await
            .unwrap();
        assert!(status.complete);
        let data = std::fs::read(registry.store.data_path(&key)).unwrap();
        assert_eq!(data, b"abcdefgh");
    }

    #[tokio::test]
    async fn adding_uploads_sweeps_idle_ones_without_dropping_busy_ones() {
        let media = tempfile::tempdir().unwrap();
        let store = FsStore::open(media.path(), false).await.unwrap();
        let mut registry = Registry::new(store);
        registry.keep_idle = Duration::ZERO;
        let meta = |n: usize| UploadMeta {
            scope: String::new(),
            identifier: n.to_string(),
            file_name: format!("{n}.bin"),
            relative_path: None,
            content_type: None,
            total_size: 8,
            chunk_size: 4,
            created_at: 0,
            instance: n.to_string(),
            client: None,
        };
        let mut held = Vec::new();
        for n in 0..FIRST_SWEEP_AT + 10 {
            let key = UploadKey::derive(&Scope::anonymous(), &n.to_string());
            let upload = registry.find_or_create(key, &meta(n)).await.unwrap();
            if n % 100 == 0 {
                held.push(upload);
            }
        }
        let left = registry.locked().cells.len();
        assert!(left < 100, "{left} values left after the sweep");
        for upload in &held {
            let found = registry.find(upload.key).await.unwrap().unwrap();
            assert!(
                Arc::ptr_eq(&found, upload),
                "held values stay the one value"
            );
        }
    }
}

#[cfg(test)]
mod removal_tests {
    use super::*;
    use crate::{Scope, store::fs::FsStore};

    #[tokio::test]
    async fn an_upload_being_removed_is_not_loaded_again_until_its_files_are_gone() {
        let media = tempfile::tempdir().unwrap();
        let registry = Registry::new(FsStore::open(media.path(), false).await.unwrap());
        let key = UploadKey::derive(&Scope::anonymous(), "gone");
        let meta = UploadMeta {
            scope: String::new(),
            identifier: "gone".into(),
            file_name: "gone.bin".into(),
            relative_path: None,
            content_type: None,
            total_size: 8,
            chunk_size: 4,
            created_at: 0,
            instance: "1".into(),
            client: None,
        };
        registry.find_or_create(key, &meta).await.unwrap();
        assert!(registry.expire(key));
        // Meanwhile a request comes for it: told to retry, nothing loaded or made.
        assert!(matches!(
            registry.find(key).await,
            Err(UploadError::Retry(_))
        ));
        assert!(matches!(
            registry.find_or_create(key, &meta).await,
            Err(UploadError::Retry(_))
        ));
        registry.store.remove(&key).await.unwrap();
        registry.removed(key);
        assert!(registry.find(key).await.unwrap().is_none());
        assert_eq!(registry.locked().cells.len(), 0, "a miss leaves no trace");
    }
}
