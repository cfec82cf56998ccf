//! The in-process state of local uploads: which ranges are in, which are being written
//! by whom, and the one moment an upload becomes complete.
//!
//! One [`Upload`] value exists per upload key in a process ([`Registry`]), loaded from the
//! files on first use, so a restarted server carries on where the last one stopped.
//! Within it:
//! * a range is written by one request at a time ([`Upload::claim`]); a duplicate that
//!   arrives meanwhile waits, then finds the range stored and writes nothing; a write
//!   overlapping another otherwise than exactly is refused;
//! * a range counts only once all its bytes are written and recorded in the files;
//! * completion is decided under a lock and done once ([`Upload::finish_if_all_in`]).
//!
//! Everything an [`Upload`] knows is on disk before it is in memory, so the registry
//! drops values nobody holds and nobody used for [`KEEP_IDLE`]: memory follows the
//! uploads in progress, not every upload since the start.

use std::{
    collections::{HashMap, HashSet},
    ops::Range,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};
use tokio::sync::{Notify, OnceCell};

use super::files::{FsStore, StoredUpload};
use crate::faults::fault_point;
use crate::{
    UploadKey,
    storage::upload_store::{Finish, Progress, RangeSet, StoreError, UploadMeta, overlaps_any},
};

/// One upload, shared by every request about it in this process.
#[derive(Debug)]
pub(crate) struct Upload {
    pub key: UploadKey,
    pub meta: UploadMeta,
    state: Mutex<State>,
    /// Woken when a range claim is released.
    released: Notify,
    /// Held while the upload is being marked complete.
    finishing: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct State {
    /// The ranges recorded.
    received: RangeSet,
    /// Ranges being written now.
    writing: Vec<Range<u64>>,
    complete: bool,
    /// Removed by expiry: requests still holding this value must not write to it.
    expired: bool,
    /// When a request last looked at the upload.
    used: Instant,
}

/// The outcome of asking to write a range.
pub(crate) enum Claim<'a> {
    /// The range was stored before: nothing to write.
    Stored,
    /// This request writes the range; dropping the claim releases it.
    Write(RangeClaim<'a>),
}

/// The right to write one range. Released on drop, whatever happened.
pub(crate) struct RangeClaim<'a> {
    upload: &'a Upload,
    range: Range<u64>,
}

impl Upload {
    fn new(key: UploadKey, meta: UploadMeta, stored: Option<(Vec<Range<u64>>, bool)>) -> Self {
        let (ranges, complete) = stored.unwrap_or_default();
        let mut received = RangeSet::default();
        let size = meta.total_size;
        for range in ranges {
            // A record written twice (its request cut off between the file and memory,
            // then sent again) counts once; one that cannot be a write of this upload
            // (zeros a crash left, say) is skipped: its bytes are asked for again.
            let fits = range.start < range.end && range.end <= size
                || range.is_empty() && size == 0 && range.start == 0;
            let aligned = range.start.is_multiple_of(meta.chunk_size.max(1));
            if received.holds(&range) {
                continue;
            }
            if !fits || !aligned || !received.insert(range.clone()) {
                tracing::warn!(%key, ?range, "skipping a range record that does not fit the upload");
            }
        }
        Self {
            key,
            meta,
            state: Mutex::new(State {
                received,
                writing: Vec::new(),
                complete,
                expired: false,
                used: Instant::now(),
            }),
            released: Notify::new(),
            finishing: tokio::sync::Mutex::new(()),
        }
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

    /// Whether `range` is stored (or the whole upload complete). A range overlapping
    /// what is stored or being written otherwise than exactly is refused.
    pub fn has(&self, range: &Range<u64>) -> Result<bool, StoreError> {
        let state = self.state();
        if state.complete || state.received.holds(range) {
            return Ok(true);
        }
        let other_write = state.writing.iter().filter(|w| *w != range);
        if state.received.overlaps(range) || overlaps_any(other_write, range) {
            return Err(StoreError::Overlap(range.clone()));
        }
        Ok(false)
    }

    /// Asks to write `range`. Waits while another request writes the same range, for at
    /// most `wait` (then: try again later).
    pub async fn claim(&self, range: Range<u64>, wait: Duration) -> Result<Claim<'_>, StoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let released = self.released.notified();
            let mut released = std::pin::pin!(released);
            released.as_mut().enable();
            {
                let mut state = self.state();
                if state.expired {
                    return Err(StoreError::Busy(
                        "this upload expired and was removed; send it again".into(),
                    ));
                }
                if state.complete || state.received.holds(&range) {
                    return Ok(Claim::Stored);
                }
                if state.received.overlaps(&range) {
                    return Err(StoreError::Overlap(range.clone()));
                }
                if !state.writing.contains(&range) {
                    if overlaps_any(&state.writing, &range) {
                        return Err(StoreError::Overlap(range.clone()));
                    }
                    state.writing.push(range.clone());
                    return Ok(Claim::Write(RangeClaim {
                        upload: self,
                        range,
                    }));
                }
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return Err(StoreError::Busy(format!(
                    "bytes {}..{} are being received by another request, try again",
                    range.start, range.end
                )));
            }
        }
    }

    /// Marks the upload expired unless a range is being written now; true if it is now
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
            ranges: state.received.len(),
            last: state.received.last(),
        }
    }

    /// The ranges received, in order.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn received(&self) -> Vec<Range<u64>> {
        self.state().received.ranges()
    }

    fn all_in(&self) -> bool {
        let state = self.state();
        !state.complete && state.received.tiles(self.meta.total_size)
    }

    /// Marks the upload complete in the files if every byte is in. Exactly one call
    /// returns [`Finish::JustCompleted`] over the upload's life.
    pub async fn finish_if_all_in(&self, store: &FsStore) -> Result<Finish, StoreError> {
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

impl RangeClaim<'_> {
    /// Records `written` (the claimed range, or the start of it) as stored, after its
    /// bytes are written and recorded in the files.
    pub fn record(self, written: Range<u64>) {
        debug_assert!(written.start == self.range.start && written.end <= self.range.end);
        self.upload.state().received.insert(written);
    }
}

impl Drop for RangeClaim<'_> {
    fn drop(&mut self) {
        let mut state = self.upload.state();
        if let Some(at) = state.writing.iter().position(|w| *w == self.range) {
            state.writing.swap_remove(at);
        }
        drop(state);
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
    fn cell(&self, key: UploadKey) -> Result<Cell, StoreError> {
        let mut guard = self.locked();
        let uploads = &mut *guard;
        if uploads.removing.contains(&key) {
            return Err(StoreError::Busy(
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

    fn loaded(key: UploadKey, stored: StoredUpload) -> Result<Arc<Upload>, StoreError> {
        Ok(Arc::new(Upload::new(
            key,
            stored.meta,
            Some((stored.ranges, stored.complete)),
        )))
    }

    /// The upload `key`, if it exists in memory or in the store. Looking up an upload that
    /// does not exist leaves no trace.
    pub async fn find(&self, key: UploadKey) -> Result<Option<Arc<Upload>>, StoreError> {
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
    ) -> Result<Arc<Upload>, StoreError> {
        let cell = self.cell(key)?;
        let upload = cell
            .get_or_try_init(|| async {
                if let Some(stored) = self.store.load(&key).await? {
                    return Self::loaded(key, stored);
                }
                let upload = Upload::new(key, meta.clone(), None);
                self.store.create(&key, meta).await?;
                Ok(Arc::new(upload))
            })
            .await?;
        Ok(upload.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scope;

    fn meta(identifier: &str, total_size: u64) -> UploadMeta {
        UploadMeta {
            scope: String::new(),
            identifier: identifier.into(),
            file_name: format!("{identifier}.bin"),
            relative_path: None,
            content_type: None,
            total_size,
            chunk_size: 4,
            created_at: 0,
            instance: identifier.into(),
            client: None,
        }
    }

    async fn write(registry: &Registry, key: UploadKey, range: Range<u64>, bytes: &'static str) {
        let upload = registry.find(key).await.unwrap().unwrap();
        let Claim::Write(claim) = upload.claim(range.clone(), Duration::ZERO).await.unwrap() else {
            panic!("{range:?} was in");
        };
        let mut body: crate::storage::upload_store::Body<'_> =
            Box::pin(futures_util::stream::iter([Ok(bytes::Bytes::from(bytes))]));
        let commit = crate::storage::upload_store::Commit::Whole;
        let written = registry
            .store
            .write_range(&key, range.clone(), &mut body, commit)
            .await
            .unwrap();
        assert_eq!(written, range.end - range.start);
        registry.store.record(&key, range.clone()).await.unwrap();
        claim.record(range);
    }

    #[tokio::test]
    async fn an_idle_upload_nobody_holds_leaves_memory_and_comes_back_from_disk() {
        let media = tempfile::tempdir().unwrap();
        let registry = Registry::new(FsStore::open(media.path(), false).await.unwrap());
        let key = UploadKey::derive(&Scope::new("u"), "8-idle");
        registry
            .find_or_create(key, &meta("8-idle", 8))
            .await
            .unwrap();
        write(&registry, key, 0..4, "abcd").await;
        assert_eq!(registry.sweep(), 1, "recently used: kept");

        let held = registry.find(key).await.unwrap().unwrap();
        let sweep_idle = |registry: &Registry| {
            let mut guard = registry.locked();
            Registry::sweep_locked(&mut guard.cells, Duration::ZERO);
            guard.cells.len()
        };
        assert_eq!(sweep_idle(&registry), 1, "held by a request: kept");
        drop(held);
        assert_eq!(sweep_idle(&registry), 0, "idle and unheld: dropped");

        // Loaded again from disk: bytes 0..4 are still in, 4..8 complete it.
        let upload = registry.find(key).await.unwrap().unwrap();
        assert!(upload.has(&(0..4)).unwrap() && !upload.has(&(4..8)).unwrap());
        drop(upload);
        write(&registry, key, 4..8, "efgh").await;
        let upload = registry.find(key).await.unwrap().unwrap();
        assert_eq!(
            upload.finish_if_all_in(&registry.store).await.unwrap(),
            Finish::JustCompleted
        );
        let data = std::fs::read(registry.store.data_path(&key)).unwrap();
        assert_eq!(data, b"abcdefgh");
    }

    #[tokio::test]
    async fn adding_uploads_sweeps_idle_ones_without_dropping_busy_ones() {
        let media = tempfile::tempdir().unwrap();
        let store = FsStore::open(media.path(), false).await.unwrap();
        let mut registry = Registry::new(store);
        registry.keep_idle = Duration::ZERO;
        let mut held = Vec::new();
        for n in 0..FIRST_SWEEP_AT + 10 {
            let key = UploadKey::derive(&Scope::anonymous(), &n.to_string());
            let upload = registry
                .find_or_create(key, &meta(&n.to_string(), 8))
                .await
                .unwrap();
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

    #[tokio::test]
    async fn an_upload_being_removed_is_not_loaded_again_until_its_files_are_gone() {
        let media = tempfile::tempdir().unwrap();
        let registry = Registry::new(FsStore::open(media.path(), false).await.unwrap());
        let key = UploadKey::derive(&Scope::anonymous(), "gone");
        let meta = meta("gone", 8);
        registry.find_or_create(key, &meta).await.unwrap();
        assert!(registry.expire(key));
        // Meanwhile a request comes for it: told to retry, nothing loaded or made.
        assert!(matches!(registry.find(key).await, Err(StoreError::Busy(_))));
        assert!(matches!(
            registry.find_or_create(key, &meta).await,
            Err(StoreError::Busy(_))
        ));
        registry.store.remove(&key).await.unwrap();
        registry.removed(key);
        assert!(registry.find(key).await.unwrap().is_none());
        assert_eq!(registry.locked().cells.len(), 0, "a miss leaves no trace");
    }

    #[tokio::test]
    async fn ranges_overlapping_otherwise_than_exactly_are_refused_and_exact_repeats_wait() {
        let media = tempfile::tempdir().unwrap();
        let registry = Registry::new(FsStore::open(media.path(), false).await.unwrap());
        let key = UploadKey::derive(&Scope::anonymous(), "overlap");
        let upload = registry
            .find_or_create(key, &meta("overlap", 8))
            .await
            .unwrap();
        let Claim::Write(first) = upload.claim(0..4, Duration::ZERO).await.unwrap() else {
            panic!()
        };
        // Being written: the same range waits (then is busy), another overlapping one is refused.
        assert!(matches!(
            upload.claim(0..4, Duration::from_millis(10)).await,
            Err(StoreError::Busy(_))
        ));
        assert!(matches!(
            upload.claim(2..6, Duration::ZERO).await,
            Err(StoreError::Overlap(_))
        ));
        assert!(matches!(upload.has(&(0..6)), Err(StoreError::Overlap(_))));
        first.record(0..4);
        assert!(matches!(
            upload.claim(0..4, Duration::ZERO).await,
            Ok(Claim::Stored)
        ));
        assert!(matches!(
            upload.claim(3..8, Duration::ZERO).await,
            Err(StoreError::Overlap(_))
        ));
        assert!(matches!(
            upload.claim(4..8, Duration::ZERO).await,
            Ok(Claim::Write(_))
        ));
    }

    #[test]
    fn a_record_written_twice_counts_once_and_one_that_cannot_be_a_write_is_skipped() {
        let key = UploadKey::derive(&Scope::anonymous(), "records");
        let records = vec![0..4, 4..8, 0..4, 0..0, 5..6, 6..9, 4..5];
        let upload = Upload::new(key, meta("records", 8), Some((records, false)));
        // 0..0 (zeros), 5..6 (not at a chunk boundary), 6..9 (past the end) and 4..5
        // (overlaps 4..8) are skipped; the repeat of 0..4 counts once.
        assert_eq!(upload.received(), vec![0..4, 4..8]);
        assert!(upload.all_in());
    }
}
