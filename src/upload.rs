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

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
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
            }),
            released: Notify::new(),
            finishing: tokio::sync::Mutex::new(()),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state half-changed (each
        // change is a few assignments), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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

/// The uploads of one chunk store, each loaded once per process.
#[derive(Debug)]
pub(crate) struct Registry {
    pub store: FsStore,
    uploads: Mutex<HashMap<UploadKey, Arc<OnceCell<Arc<Upload>>>>>,
}

impl Registry {
    pub fn new(store: FsStore) -> Self {
        Self {
            store,
            uploads: Mutex::new(HashMap::new()),
        }
    }

    fn cell(&self, key: UploadKey) -> Arc<OnceCell<Arc<Upload>>> {
        let mut uploads = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        uploads.entry(key).or_default().clone()
    }

    fn loaded(key: UploadKey, stored: StoredUpload) -> Result<Arc<Upload>, UploadError> {
        Upload::new(key, stored.meta, Some((stored.marks, stored.complete))).map(Arc::new)
    }

    /// The upload `key`, if it exists in memory or in the store. Looking up an upload that
    /// does not exist leaves no trace.
    pub async fn find(&self, key: UploadKey) -> Result<Option<Arc<Upload>>, UploadError> {
        let known = {
            let uploads = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
            uploads.get(&key).and_then(|cell| cell.get().cloned())
        };
        if known.is_some() {
            return Ok(known);
        }
        let Some(stored) = self.store.load(&key).await? else {
            return Ok(None);
        };
        let cell = self.cell(key);
        let upload = cell
            .get_or_try_init(|| async { Self::loaded(key, stored) })
            .await?;
        Ok(Some(upload.clone()))
    }

    /// Expires the upload `key` if it is not being written: marks its in-memory value (if
    /// loaded) expired and forgets it. False if a chunk of it is being written now.
    pub fn expire(&self, key: UploadKey) -> bool {
        let mut uploads = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(upload) = uploads.get(&key).and_then(|cell| cell.get())
            && !upload.expire()
        {
            return false;
        }
        uploads.remove(&key);
        true
    }

    /// Forgets the upload `key` in this process (its files are removed by the caller).
    pub fn forget(&self, key: UploadKey) {
        let mut uploads = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        uploads.remove(&key);
    }

    /// The upload `key`, created with `meta` if it does not exist yet.
    pub async fn find_or_create(
        &self,
        key: UploadKey,
        meta: &UploadMeta,
    ) -> Result<Arc<Upload>, UploadError> {
        let cell = self.cell(key);
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
