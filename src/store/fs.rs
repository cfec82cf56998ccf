//! The local-filesystem chunk store.
//!
//! Each upload is three files in the chunk directory, all named by the upload key (never
//! by anything the client sent):
//!
//! * `<key>.part` — the file itself, created sparse at its full size. Chunk `n` is written
//!   straight from the request body to offset `(n − 1)·C`, so there is no assembly pass:
//!   when the last chunk is in, the file is renamed to `<key>.data`, which is the durable
//!   "complete" mark and happens once (a second rename finds no `.part`).
//! * `<key>.marks` — one byte per chunk number, set (with `pwrite`) only after all the
//!   chunk's bytes are written (and, with `sync_data`, flushed). A restarted server reads
//!   it to know which chunks are in; no directory is ever listed.
//! * `<key>.meta` — the [`UploadMeta`] as JSON, written last (temp file + rename) when the
//!   upload is created, so an upload without it never had a chunk recorded.

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use std::{
    fs::{File, OpenOptions},
    io,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};
use tokio::task::{JoinHandle, spawn_blocking};

use super::{UploadMeta, WriteError};
use crate::UploadKey;

/// Bytes gathered from the body before one positioned write: large enough to keep the
/// number of system calls low, small enough that a chunk is never held whole in memory.
const WRITE_BUFFER: usize = 256 * 1024;

/// Chunks on the local filesystem, under one directory.
#[derive(Debug)]
pub struct FsStore {
    dir: PathBuf,
    sync_data: bool,
}

/// An upload as found on disk.
#[derive(Debug)]
pub(crate) struct StoredUpload {
    pub meta: UploadMeta,
    pub marks: Vec<u8>,
    pub complete: bool,
}

/// Runs blocking file I/O off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    spawn_blocking(f).await.map_err(io::Error::other)?
}

impl FsStore {
    /// A store in `dir` (created if missing). With `sync_data`, chunk bytes are flushed to
    /// the disk before the chunk is recorded, so a power cut cannot record lost bytes.
    pub async fn open(dir: impl Into<PathBuf>, sync_data: bool) -> io::Result<Self> {
        let dir = dir.into();
        tokio::fs::create_dir_all(&dir).await?;
        Ok(Self { dir, sync_data })
    }

    /// Bytes free for us on the chunk directory's file system, where the platform tells.
    pub(crate) fn free_space(&self) -> io::Result<Option<u64>> {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::ffi::OsStrExt;
            let path = std::ffi::CString::new(self.dir.as_os_str().as_bytes())
                .map_err(io::Error::other)?;
            let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
            // SAFETY: a NUL-terminated path and a statvfs struct to fill, both ours.
            if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Some(
                (stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64),
            ))
        }
        #[cfg(not(target_os = "linux"))]
        Ok(None)
    }

    /// The chunk directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &UploadKey, extension: &str) -> PathBuf {
        self.dir.join(format!("{key}.{extension}"))
    }

    /// Where a complete upload's bytes are.
    pub(crate) fn data_path(&self, key: &UploadKey) -> PathBuf {
        self.path(key, "data")
    }

    /// Up to `len` bytes from the start of an unfinished upload's file.
    pub(crate) async fn read_head(&self, key: &UploadKey, len: usize) -> io::Result<Vec<u8>> {
        let part = self.path(key, "part");
        blocking(move || {
            let mut head = Vec::with_capacity(len);
            std::io::Read::read_to_end(
                &mut std::io::Read::take(File::open(part)?, len as u64),
                &mut head,
            )?;
            Ok(head)
        })
        .await
    }

    /// The upload `key` as stored, or `None` if it was never created.
    pub(crate) async fn load(&self, key: &UploadKey) -> io::Result<Option<StoredUpload>> {
        let (meta_path, marks_path, data_path) = (
            self.path(key, "meta"),
            self.path(key, "marks"),
            self.data_path(key),
        );
        blocking(move || {
            let meta = match std::fs::read(&meta_path) {
                Ok(bytes) => serde_json::from_slice(&bytes)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let marks = std::fs::read(&marks_path)?;
            let complete = data_path.try_exists()?;
            Ok(Some(StoredUpload {
                meta,
                marks,
                complete,
            }))
        })
        .await
    }

    /// Creates the upload's files: the sparse data file, an empty chunk record of `slots`
    /// bytes, then the metadata, which makes the upload exist.
    pub(crate) async fn create(
        &self,
        key: &UploadKey,
        meta: &UploadMeta,
        slots: u64,
    ) -> io::Result<()> {
        let (meta_path, marks_path, part_path) = (
            self.path(key, "meta"),
            self.path(key, "marks"),
            self.path(key, "part"),
        );
        let (dir, sync, total) = (self.dir.clone(), self.sync_data, meta.total_size);
        let json = serde_json::to_vec(meta).map_err(io::Error::other)?;
        blocking(move || {
            let create = |path: &Path, len: u64| {
                let file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(path)?;
                file.set_len(len)?;
                if sync {
                    file.sync_all()?;
                }
                Ok::<_, io::Error>(())
            };
            create(&part_path, total)?;
            create(&marks_path, slots)?;
            let tmp = meta_path.with_extension("meta.tmp");
            std::fs::write(&tmp, json)?;
            if sync {
                File::open(&tmp)?.sync_all()?;
            }
            std::fs::rename(&tmp, &meta_path)?;
            if sync {
                File::open(&dir)?.sync_all()?;
            }
            Ok(())
        })
        .await
    }

    /// Streams `body` into the data file at `offset`. Exactly `len` bytes must come: a
    /// shorter or longer body is refused, and nothing is written past the chunk's end.
    /// Returns only when no write of this call is still under way.
    pub(crate) async fn write_chunk<S, E>(
        &self,
        key: &UploadKey,
        offset: u64,
        len: u64,
        body: S,
    ) -> Result<(), WriteError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let path = self.path(key, "part");
        let file = Arc::new(blocking(move || OpenOptions::new().write(true).open(path)).await?);
        let mut writer = PositionedWriter {
            file,
            position: offset,
            in_flight: None,
            write_back_early: self.sync_data,
        };
        let result = writer.copy(body, len).await;
        // Whatever happened, wait for the last write so no byte lands after we return.
        let finished = writer.wait().await;
        result?;
        finished?;
        if self.sync_data {
            let file = writer.file;
            blocking(move || file.sync_data()).await?;
        }
        Ok(())
    }

    /// Records chunk `number` (1-based) with `mark` in the chunk record.
    pub(crate) async fn mark(&self, key: &UploadKey, number: u64, mark: u8) -> io::Result<()> {
        let path = self.path(key, "marks");
        blocking(move || {
            let file = OpenOptions::new().write(true).open(path)?;
            file.write_all_at(&[mark], number - 1)
        })
        .await
    }

    /// Every upload in the directory with when it was last written to (the newest
    /// modification time of its files) and whether it is complete. Used by expiry only:
    /// lists the directory.
    pub(crate) async fn uploads(&self) -> io::Result<Vec<(UploadKey, SystemTime, bool)>> {
        let dir = self.dir.clone();
        blocking(move || {
            // Keyed by any of an upload's files: a removal cut short by a crash (the
            // metadata goes first) leaves the others, which expire like an upload.
            let mut keys = std::collections::BTreeSet::new();
            for entry in std::fs::read_dir(&dir)? {
                let name = entry?.file_name();
                let key = name
                    .to_str()
                    .and_then(|n| n.split_once('.'))
                    .and_then(|(k, ext)| {
                        ["meta", "marks", "part", "data"]
                            .contains(&ext)
                            .then_some(k)
                    });
                if let Some(key) = key.and_then(|k| k.parse::<UploadKey>().ok()) {
                    keys.insert(key);
                }
            }
            let mut found = Vec::new();
            for key in keys {
                let mut last = None::<SystemTime>;
                let mut complete = false;
                for extension in ["meta", "marks", "part", "data"] {
                    if let Ok(meta) = std::fs::metadata(dir.join(format!("{key}.{extension}"))) {
                        let modified = meta.modified()?;
                        last = Some(last.map_or(modified, |l| l.max(modified)));
                        complete |= extension == "data";
                    }
                }
                if let Some(last) = last {
                    found.push((key, last, complete));
                }
            }
            Ok(found)
        })
        .await
    }

    /// Removes an upload's files: the metadata first (without it the upload does not
    /// exist), then the rest. Files already gone are fine.
    pub(crate) async fn remove(&self, key: &UploadKey) -> io::Result<()> {
        let paths = ["meta", "marks", "part", "data"].map(|extension| self.path(key, extension));
        blocking(move || {
            for path in paths {
                match std::fs::remove_file(path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            Ok(())
        })
        .await
    }

    /// Marks the upload complete: renames `<key>.part` to `<key>.data`. Idempotent: an
    /// upload already renamed (by an earlier call whose directory flush failed) is fine.
    pub(crate) async fn finish(&self, key: &UploadKey) -> io::Result<()> {
        let (part, data, dir, sync) = (
            self.path(key, "part"),
            self.data_path(key),
            self.dir.clone(),
            self.sync_data,
        );
        blocking(move || {
            match std::fs::rename(&part, &data) {
                Err(e) if e.kind() == io::ErrorKind::NotFound && data.try_exists()? => {}
                other => other?,
            }
            if sync {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        })
        .await
    }
}

/// Writes a stream at increasing offsets, one buffer on the blocking pool while the next
/// one fills.
struct PositionedWriter {
    file: Arc<File>,
    position: u64,
    /// Start each buffer's way to the disk as soon as it is written (the chunk is flushed
    /// when complete; by then most of it is on the disk, so the flush waits less).
    write_back_early: bool,
    in_flight: Option<JoinHandle<io::Result<()>>>,
}

impl PositionedWriter {
    async fn copy<S, E>(&mut self, body: S, len: u64) -> Result<(), WriteError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let mut body = std::pin::pin!(body);
        let mut buffer = BytesMut::new();
        let mut received: u64 = 0;
        loop {
            let frame = body.next().await;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| WriteError::Body(e.to_string()))?;
            received += frame.len() as u64;
            if received > len {
                return Err(WriteError::TooLong { expected: len });
            }
            if buffer.is_empty() && frame.len() >= WRITE_BUFFER {
                self.submit(frame).await?;
                continue;
            }
            buffer.extend_from_slice(&frame);
            if buffer.len() >= WRITE_BUFFER {
                self.submit(buffer.split().freeze()).await?;
            }
        }
        if received < len {
            return Err(WriteError::TooShort {
                got: received,
                expected: len,
            });
        }
        if !buffer.is_empty() {
            self.submit(buffer.freeze()).await?;
        }
        Ok(())
    }

    /// Starts writing `bytes` at the current position once the previous write is done.
    async fn submit(&mut self, bytes: Bytes) -> io::Result<()> {
        self.wait().await?;
        let (file, at) = (self.file.clone(), self.position);
        self.position += bytes.len() as u64;
        let write_back = self.write_back_early;
        self.in_flight = Some(spawn_blocking(move || {
            file.write_all_at(&bytes, at)?;
            if write_back {
                start_write_back(&file, at, bytes.len());
            }
            Ok(())
        }));
        Ok(())
    }

    /// Waits for the write under way, if any.
    async fn wait(&mut self) -> io::Result<()> {
        match self.in_flight.take() {
            Some(handle) => handle.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

/// Asks the kernel to start writing `len` bytes at `offset` of `file` to the disk, without
/// waiting (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`). Only a head start for the
/// flush that follows, never a durability step itself, so a failure is ignored; elsewhere
/// than Linux it does nothing.
fn start_write_back(file: &File, offset: u64, len: usize) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (
            libc::off64_t::try_from(offset),
            libc::off64_t::try_from(len),
        ) else {
            return;
        };
        // SAFETY: a plain system call on a file descriptor we own for the whole call; it
        // reads no memory of ours.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}
