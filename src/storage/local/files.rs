//! Uploads as files under one directory.
//!
//! Each upload is three files, all named by the upload key (never by anything the client
//! sent):
//!
//! * `<key>.part` — the file itself, created sparse at its full size. Each range is
//!   written straight from the request body at its offset (a resumable.js chunk `n` at
//!   `(n − 1)·C`), so there is no assembly pass: when the ranges tile the file, it is
//!   renamed to `<key>.data`, which is the durable "complete" mark and happens once (a
//!   second rename finds no `.part`).
//! * `<key>.ranges` — the ranges received: a 16-byte record (start, end: little-endian
//!   `u64`) appended only after all the range's bytes are written (and, with
//!   `sync_data`, flushed). A restarted server reads it to know what is in; no directory
//!   is ever listed. A record cut short by a crash is ignored (its bytes come again).
//!   Uploads begun by an older version keep a `<key>.marks` file instead (one byte per
//!   chunk number), turned into ranges when first loaded.
//! * `<key>.meta` — the [`UploadMeta`] as JSON, written last (temp file + rename) when the
//!   upload is created, so an upload without it never had a range recorded.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use std::{
    fs::{File, OpenOptions},
    io::{self, Write as _},
    ops::Range,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};
use tokio::task::{JoinHandle, spawn_blocking};

use crate::{
    UploadKey,
    storage::upload_store::{Body, Commit, StoreError, UploadMeta},
};

/// Every file an upload may have, by extension.
const EXTENSIONS: [&str; 5] = ["meta", "ranges", "marks", "part", "data"];

/// Bytes of one record in `<key>.ranges`.
const RECORD: usize = 16;

/// Bytes gathered from the body before one positioned write: large enough to keep the
/// number of system calls low, small enough that a chunk is never held whole in memory.
const WRITE_BUFFER: usize = 256 * 1024;

/// Uploads on the local filesystem, under one directory.
#[derive(Debug)]
pub(crate) struct FsStore {
    dir: PathBuf,
    sync_data: bool,
}

/// An upload as found on disk.
#[derive(Debug)]
pub(crate) struct StoredUpload {
    pub meta: UploadMeta,
    /// The ranges recorded, in the order they were.
    pub ranges: Vec<Range<u64>>,
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

    fn path(&self, key: &UploadKey, extension: &str) -> PathBuf {
        self.dir.join(format!("{key}.{extension}"))
    }

    /// Where a complete upload's bytes are.
    pub(crate) fn data_path(&self, key: &UploadKey) -> PathBuf {
        self.path(key, "data")
    }

    /// Up to `len` bytes from the start of a complete upload's file.
    pub(crate) async fn read_head(&self, key: &UploadKey, len: usize) -> io::Result<Vec<u8>> {
        let part = self.data_path(key);
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
        let (meta_path, ranges_path, marks_path, data_path) = (
            self.path(key, "meta"),
            self.path(key, "ranges"),
            self.path(key, "marks"),
            self.data_path(key),
        );
        let sync = self.sync_data;
        blocking(move || {
            let meta: UploadMeta = match std::fs::read(&meta_path) {
                Ok(bytes) => serde_json::from_slice(&bytes)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let ranges = match std::fs::read(&ranges_path) {
                Ok(records) => {
                    let whole = records.len() - records.len() % RECORD;
                    if whole < records.len() {
                        // A record cut short by a crash: dropped, so that the next one
                        // appended starts at a record's place.
                        OpenOptions::new()
                            .write(true)
                            .open(&ranges_path)?
                            .set_len(whole as u64)?;
                    }
                    records
                        .chunks_exact(RECORD)
                        .map(|record| {
                            let (start, end) = record.split_at(8);
                            let number =
                                |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
                            number(start)..number(end)
                        })
                        .collect()
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // An upload begun by an older version: its chunk marks become ranges.
                    // The marks stay (they go with the upload), so that the older version,
                    // started again, still finds them.
                    let ranges = ranges_of_marks(&meta, &std::fs::read(&marks_path)?)?;
                    let records: Vec<u8> = ranges.iter().flat_map(record).collect();
                    write_replacing(&ranges_path, &records, sync)?;
                    ranges
                }
                Err(e) => return Err(e),
            };
            let complete = data_path.try_exists()?;
            Ok(Some(StoredUpload {
                meta,
                ranges,
                complete,
            }))
        })
        .await
    }

    /// Creates the upload's files: the sparse data file, an empty range record, then the
    /// metadata, which makes the upload exist.
    pub(crate) async fn create(&self, key: &UploadKey, meta: &UploadMeta) -> io::Result<()> {
        let (meta_path, ranges_path, part_path) = (
            self.path(key, "meta"),
            self.path(key, "ranges"),
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
            create(&ranges_path, 0)?;
            write_replacing(&meta_path, &json, sync)?;
            if sync {
                File::open(&dir)?.sync_all()?;
            }
            Ok(())
        })
        .await
    }

    /// Streams `body` into the data file over `range`; never writes past its end. With
    /// [`Commit::Whole`] exactly the range's bytes must come (a shorter or longer body is
    /// refused); with [`Commit::Prefix`] the bytes that came before the body ended early
    /// are written too. Returns how many bytes from the range's start are written (and,
    /// with `sync_data`, flushed), only once no write of this call is under way.
    pub(crate) async fn write_range(
        &self,
        key: &UploadKey,
        range: Range<u64>,
        body: &mut Body<'_>,
        commit: Commit,
    ) -> Result<u64, StoreError> {
        let path = self.path(key, "part");
        let file = Arc::new(blocking(move || OpenOptions::new().write(true).open(path)).await?);
        let mut writer = PositionedWriter {
            file,
            position: range.start,
            in_flight: None,
            write_back_early: self.sync_data,
        };
        let result = writer.copy(body, range.end - range.start, commit).await;
        // Whatever happened, wait for the last write so no byte lands after we return.
        let finished = writer.wait().await;
        let written = result?;
        finished?;
        if self.sync_data && written > 0 {
            let file = writer.file;
            blocking(move || file.sync_data()).await?;
        }
        Ok(written)
    }

    /// Records `range` as received (after its bytes are written).
    pub(crate) async fn record(&self, key: &UploadKey, range: Range<u64>) -> io::Result<()> {
        let path = self.path(key, "ranges");
        blocking(move || {
            // One append of one record: whole, or cut short by a crash and then ignored.
            let mut file = OpenOptions::new().append(true).open(path)?;
            file.write_all(&record(&range))
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
                    .and_then(|(k, ext)| EXTENSIONS.contains(&ext).then_some(k));
                if let Some(key) = key.and_then(UploadKey::from_hex) {
                    keys.insert(key);
                }
            }
            let mut found = Vec::new();
            for key in keys {
                let mut last = None::<SystemTime>;
                let mut complete = false;
                for extension in EXTENSIONS {
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
        let paths = EXTENSIONS.map(|extension| self.path(key, extension));
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
    /// Copies `body` (at most `len` bytes) from the current position; how many bytes
    /// were written (with [`Commit::Whole`], `len` or an error).
    async fn copy(
        &mut self,
        body: &mut Body<'_>,
        len: u64,
        commit: Commit,
    ) -> Result<u64, StoreError> {
        let mut buffer = BytesMut::new();
        let mut received: u64 = 0;
        let ended = loop {
            let Some(frame) = body.next().await else {
                break (received < len).then_some(StoreError::TooShort {
                    got: received,
                    expected: len,
                });
            };
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => break Some(StoreError::Body(e.to_string())),
            };
            if received + frame.len() as u64 > len {
                break Some(StoreError::TooLong { expected: len });
            }
            received += frame.len() as u64;
            if buffer.is_empty() && frame.len() >= WRITE_BUFFER {
                self.submit(frame).await?;
                continue;
            }
            buffer.extend_from_slice(&frame);
            if buffer.len() >= WRITE_BUFFER {
                self.submit(buffer.split().freeze()).await?;
            }
        };
        match ended {
            Some(e) if commit == Commit::Whole => Err(e),
            _ => {
                if !buffer.is_empty() {
                    self.submit(buffer.freeze()).await?;
                }
                Ok(received)
            }
        }
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

/// The record of `range` in `<key>.ranges`.
fn record(range: &Range<u64>) -> [u8; RECORD] {
    let mut record = [0; RECORD];
    record[..8].copy_from_slice(&range.start.to_le_bytes());
    record[8..].copy_from_slice(&range.end.to_le_bytes());
    record
}

/// Writes `bytes` to `path` through a temporary file and a rename: whole or not at all.
fn write_replacing(path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)?;
    if sync {
        File::open(&tmp)?.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// The ranges an older version's chunk marks (one byte per chunk number: 0 absent, 1 in,
/// 2 in and the last of the standard mode, 3 in and of the forced mode) stand for.
fn ranges_of_marks(meta: &UploadMeta, marks: &[u8]) -> io::Result<Vec<Range<u64>>> {
    let mut ranges = Vec::new();
    for (index, &mark) in marks.iter().enumerate() {
        let start = (index as u64)
            .saturating_mul(meta.chunk_size)
            .min(meta.total_size);
        let rest = meta.total_size - start;
        let len = match mark {
            0 => continue,
            2 => rest,
            1 | 3 => rest.min(meta.chunk_size),
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unknown chunk mark {other}"),
                ));
            }
        };
        ranges.push(start..start + len);
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scope;

    fn meta(total_size: u64, chunk_size: u64) -> UploadMeta {
        UploadMeta {
            scope: String::new(),
            identifier: "old".into(),
            file_name: "old.bin".into(),
            relative_path: None,
            content_type: None,
            total_size,
            chunk_size,
            created_at: 0,
            instance: "1".into(),
            client: None,
        }
    }

    #[tokio::test]
    async fn an_older_versions_chunk_marks_become_ranges_when_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path(), false).await.unwrap();
        // 25 bytes in chunks of 10: chunks 1 (plain) and 2 (15 bytes, standard) are in.
        let key = UploadKey::derive(&Scope::anonymous(), "old");
        store.create(&key, &meta(25, 10)).await.unwrap();
        std::fs::remove_file(store.path(&key, "ranges")).unwrap();
        std::fs::write(store.path(&key, "marks"), [1, 2, 0]).unwrap();
        let loaded = store.load(&key).await.unwrap().unwrap();
        assert_eq!(loaded.ranges, vec![0..10, 10..25]);
        assert!(store.path(&key, "ranges").exists(), "converted once");
        // Forced mode: chunks 2 (10 bytes) and 3 (5 bytes).
        let forced = UploadKey::derive(&Scope::anonymous(), "forced");
        store.create(&forced, &meta(25, 10)).await.unwrap();
        std::fs::remove_file(store.path(&forced, "ranges")).unwrap();
        std::fs::write(store.path(&forced, "marks"), [0, 3, 3]).unwrap();
        let loaded = store.load(&forced).await.unwrap().unwrap();
        assert_eq!(loaded.ranges, vec![10..20, 20..25]);
    }

    #[tokio::test]
    async fn a_range_record_cut_short_by_a_crash_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path(), false).await.unwrap();
        let key = UploadKey::derive(&Scope::anonymous(), "torn");
        store.create(&key, &meta(25, 10)).await.unwrap();
        store.record(&key, 0..10).await.unwrap();
        let mut file = OpenOptions::new()
            .append(true)
            .open(store.path(&key, "ranges"))
            .unwrap();
        file.write_all(&record(&(10..20))[..7]).unwrap();
        assert_eq!(store.load(&key).await.unwrap().unwrap().ranges, vec![0..10]);
        // The torn record is gone: the next one is read back whole.
        store.record(&key, 10..20).await.unwrap();
        let ranges = store.load(&key).await.unwrap().unwrap().ranges;
        assert_eq!(ranges, vec![0..10, 10..20]);
    }
}
