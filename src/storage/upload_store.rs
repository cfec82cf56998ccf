//! The one interface the upload service keeps uploads through: [`UploadStore`], with a
//! `local` backend (files under a chunk directory) and an `object` one (object storage and
//! the ledger in the app's database), chosen once when the service is built.
//!
//! An upload is its [`UploadMeta`] (total size included) and the set of byte ranges
//! durably received. Nothing here knows chunk numbers, protocols, HTTP or timeouts: a
//! resumable.js chunk is the range [`Layout::place`](crate::service::layout::Layout::place) gives
//! it, written whole or not at all ([`Commit::Whole`]); an append protocol writes from the
//! current offset and keeps what arrived before a connection dropped ([`Commit::Prefix`]).
//! The upload is complete once its ranges tile `[0, size)`, decided exactly once.

use bytes::Bytes;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    fmt, io,
    ops::{Bound, Range},
    path::PathBuf,
    time::SystemTime,
};

/// The server-side name of an upload: 128 bits derived from scope and identifier.
///
/// ```
/// use sea_orm_resumable::{Scope, UploadKey};
/// let a = UploadKey::derive(&Scope::new("alice"), "1024-report");
/// let b = UploadKey::derive(&Scope::new("bob"), "1024-report");
/// assert_ne!(a, b);
/// assert_eq!(a.to_string().len(), 32);
/// assert_eq!(a.to_string().parse::<UploadKey>().unwrap(), a);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadKey([u8; 16]);

impl UploadKey {
    /// The key of these 16 bytes.
    pub(crate) fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The key's 16 bytes.
    pub(crate) fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The key written as 32 hex digits ([`Display`](fmt::Display)), if `text` is one.
    pub(crate) fn from_hex(text: &str) -> Option<Self> {
        let mut key = [0; 16];
        hex::decode_to_slice(text, &mut key).ok()?;
        Some(Self(key))
    }
}

impl fmt::Display for UploadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for UploadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UploadKey({self})")
    }
}

/// What is known of an upload apart from its bytes; kept beside them.
///
/// The identifier and file name are the client's words, kept as metadata only: no path is
/// ever made from them here. Stored as JSON beside the upload's bytes.
///
/// ```
/// use sea_orm_resumable::UploadMeta;
/// let meta: UploadMeta = serde_json::from_str(r#"{"scope": "", "identifier": "5-ab",
///     "file_name": "../ab", "relative_path": null, "content_type": null,
///     "total_size": 5, "chunk_size": 1048576, "created_at": 0}"#).unwrap();
/// assert_eq!(meta.file_name, "../ab");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadMeta {
    /// Owner of the upload.
    pub scope: String,
    /// Client-chosen identifier.
    pub identifier: String,
    /// Original file name, unsanitised.
    pub file_name: String,
    /// Folder-relative path, when the client sent one.
    pub relative_path: Option<String>,
    /// MIME type the browser claimed, if any.
    pub content_type: Option<String>,
    /// File size in bytes.
    pub total_size: u64,
    /// Chunk size the client uses.
    pub chunk_size: u64,
    /// When the first chunk arrived (seconds since the Unix epoch).
    pub created_at: u64,
    /// Random id of this upload, telling it apart from a later upload of the same
    /// identifier (which gets the same key once this one is saved and gone).
    #[serde(default)]
    pub instance: String,
    /// The network address (IPv6: its /64) of the client that started the upload, when
    /// known: what the per-address limits count.
    #[serde(default)]
    pub client: Option<String>,
}

/// A body on its way to a store: pieces of bytes, or the reason it broke off.
pub(crate) type Body<'a> = BoxStream<'a, io::Result<Bytes>>;

/// What a write keeps when its body ends early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Commit {
    /// All of the range or nothing (a resumable.js chunk).
    Whole,
    /// The bytes that arrived, from the range's start (an append cut off mid-body: the
    /// tus and IETF protocols, next).
    #[cfg_attr(not(test), allow(dead_code))]
    Prefix,
}

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Write {
    /// The range was received before: nothing was read from the body.
    Stored,
    /// This many bytes from the range's start are now received (the whole range for
    /// [`Commit::Whole`]).
    Wrote(u64),
}

/// Whether a call made the upload complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Finish {
    /// Some bytes are missing (or another call is putting the file together).
    NotYet,
    /// Complete before this call.
    AlreadyComplete,
    /// This call completed it: exactly one call over the upload's life.
    JustCompleted,
}

/// What is received of an upload, at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Every byte is in and the upload is complete.
    pub complete: bool,
    /// Number of writes received (for resumable.js, chunks).
    pub ranges: u64,
    /// The received range that starts furthest into the file (for resumable.js, it tells
    /// how the client cuts the file once one of the last chunks is in).
    pub last: Option<Range<u64>>,
}

/// Why a store refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The body ended before the range's end ([`Commit::Whole`]).
    #[error("the chunk body has {got} bytes, expected {expected}")]
    TooShort {
        /// Bytes received.
        got: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// The body went on past the range's end.
    #[error("the chunk body is longer than the announced {expected} bytes")]
    TooLong {
        /// Bytes announced.
        expected: u64,
    },
    /// Reading the body failed: the client went away or sent garbage.
    #[error("the chunk body was cut off: {0}")]
    Body(String),
    /// The range overlaps bytes received (or being written) otherwise than exactly.
    #[error("bytes {}..{} overlap bytes of this upload received or being received otherwise", .0.start, .0.end)]
    Overlap(Range<u64>),
    /// The request can never succeed as sent: it lies outside the file, or breaks a
    /// limit (the sentence says which).
    #[error("{0}")]
    Refused(String),
    /// Not now: the range is being written by another request, or the upload is being
    /// removed; the same write may succeed later.
    #[error("{0}")]
    Busy(String),
    /// The storage failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// What one expiry pass of a store removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Expired {
    /// Unfinished uploads.
    pub incomplete: usize,
    /// Complete uploads no model saved.
    pub complete: usize,
}

/// When uploads expire: see [`Settings::incomplete_expiry`](crate::Settings::incomplete_expiry).
#[derive(Clone, Copy)]
pub(crate) struct ExpiryRule<'a> {
    /// The moment to judge at (local files; the ledger counts from its own clock).
    pub now: SystemTime,
    /// How long an unfinished upload may stay idle.
    pub incomplete: std::time::Duration,
    /// How long a complete upload may wait for a model to save it.
    pub complete: std::time::Duration,
    /// Whether a save of the upload is under way in this process (kept then).
    pub saving: &'a (dyn Fn(&UploadKey) -> bool + Send + Sync),
}

/// Uploads as byte ranges: the interface between the upload service and a backend.
///
/// Every method takes the upload's key (derived from its scope and identifier, never a
/// client's word). Backends are free in how they keep things, bound by these rules:
/// * a range starts at a multiple of the upload's `chunk_size` (an append protocol, whose
///   writes start anywhere, opens its uploads with a chunk size of 1);
/// * a range counts only once all its bytes are durably stored (per the flush setting);
/// * ranges are disjoint: a write overlapping a range received (or being written by
///   another request) otherwise than exactly is [`StoreError::Overlap`], even if the
///   bytes are all in; an exact repeat of a received range writes nothing
///   ([`Write::Stored`]); of one being written, waits for it;
/// * [`complete`](Self::complete) returns [`Finish::JustCompleted`] once per upload,
///   whatever the races, and only when the ranges tile `[0, size)`.
#[async_trait::async_trait]
pub(crate) trait UploadStore: std::fmt::Debug + Send + Sync {
    /// The upload's metadata, if it exists.
    async fn find(&self, key: &UploadKey) -> Result<Option<UploadMeta>, StoreError>;

    /// The upload, created with `meta` if it does not exist yet (then within the quotas
    /// and the free space): the metadata it was created with, which may be an earlier
    /// request's.
    async fn open(&self, key: &UploadKey, meta: &UploadMeta) -> Result<UploadMeta, StoreError>;

    /// Whether `range` is received, exactly as written before (an empty range: whether
    /// it was written), or the upload is complete. A range overlapping received bytes
    /// otherwise than exactly is [`StoreError::Overlap`].
    async fn has(&self, key: &UploadKey, range: Range<u64>) -> Result<bool, StoreError>;

    /// Writes `body` to `range` of an opened upload (see the trait's rules). The body
    /// must fill the range exactly; [`Commit`] says what counts when it ends early.
    /// Bytes past the range's end are never written.
    async fn write(
        &self,
        key: &UploadKey,
        range: Range<u64>,
        body: &mut Body<'_>,
        commit: Commit,
    ) -> Result<Write, StoreError>;

    /// Completes the upload if its ranges tile the file and nobody did yet.
    async fn complete(&self, key: &UploadKey) -> Result<Finish, StoreError>;

    /// What is received now.
    async fn progress(&self, key: &UploadKey) -> Result<Progress, StoreError>;

    /// The ranges received, in order (what an append protocol's offset query reads).
    #[cfg_attr(not(test), allow(dead_code))]
    async fn received(&self, key: &UploadKey) -> Result<Vec<Range<u64>>, StoreError>;

    /// Up to `n` bytes from the start of a complete upload's file.
    async fn head(&self, key: &UploadKey, n: usize) -> Result<Vec<u8>, StoreError>;

    /// Where a complete upload's file is: a local path, or an object key.
    fn location(&self, key: &UploadKey) -> PathBuf;

    /// Forgets the upload (a model saved it): its bytes and records go.
    async fn remove(&self, key: &UploadKey) -> Result<(), StoreError>;

    /// Removes the uploads that expired by `rule`.
    async fn expire(&self, rule: ExpiryRule<'_>) -> Result<Expired, StoreError>;
}

/// Refuses a range that cannot be a write of the upload of `meta`: past its end, empty in
/// a file that is not, or not at a multiple of its chunk size.
pub(crate) fn check_range(meta: &UploadMeta, range: &Range<u64>) -> Result<(), StoreError> {
    let fits = if meta.total_size == 0 {
        range.start == 0 && range.end == 0
    } else {
        range.start < range.end && range.end <= meta.total_size
    };
    if !fits || !range.start.is_multiple_of(meta.chunk_size.max(1)) {
        return Err(StoreError::Refused(format!(
            "bytes {}..{} are not a write of this upload of {} bytes",
            range.start, range.end, meta.total_size
        )));
    }
    Ok(())
}

/// Disjoint byte ranges in order: what a backend holds of an upload in memory (the
/// tests below show its rules). Every operation is O(log n) in the number of ranges, so
/// a file sent as a million one-byte chunks costs no more per chunk than one of ten.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RangeSet {
    /// Start → end.
    ranges: BTreeMap<u64, u64>,
    /// The bytes the ranges hold, together.
    bytes: u64,
}

impl RangeSet {
    /// The ranges, in order.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn ranges(&self) -> Vec<Range<u64>> {
        self.ranges
            .iter()
            .map(|(&start, &end)| start..end)
            .collect()
    }

    /// How many ranges.
    pub fn len(&self) -> u64 {
        self.ranges.len() as u64
    }

    /// Whether `range` is one of the ranges.
    pub fn holds(&self, range: &Range<u64>) -> bool {
        self.ranges.get(&range.start) == Some(&range.end)
    }

    /// Whether `range` shares a byte with any range (an empty one: starts the same, or
    /// lies inside one).
    pub fn overlaps(&self, range: &Range<u64>) -> bool {
        let before = self.ranges.range(..=range.start).next_back();
        if before.is_some_and(|(&start, &end)| start == range.start || end > range.start) {
            return true;
        }
        let after = self
            .ranges
            .range((Bound::Excluded(range.start), Bound::Unbounded))
            .next();
        after.is_some_and(|(&start, _)| start < range.end)
    }

    /// Adds `range`, which must not overlap the set (true if added).
    pub fn insert(&mut self, range: Range<u64>) -> bool {
        if range.start > range.end || self.overlaps(&range) {
            return false;
        }
        self.bytes += range.end - range.start;
        self.ranges.insert(range.start, range.end);
        true
    }

    /// Whether the ranges, all within `[0, size)`, tile it: their bytes add up to it (a
    /// zero-byte file: once something was written).
    pub fn tiles(&self, size: u64) -> bool {
        if size == 0 {
            return !self.ranges.is_empty();
        }
        self.bytes == size
    }

    /// The range that starts furthest into the file.
    pub fn last(&self) -> Option<Range<u64>> {
        let (&start, &end) = self.ranges.last_key_value()?;
        Some(start..end)
    }
}

/// Whether `range` shares a byte with one of `ranges` (an empty range: one starting at
/// the same place, or one containing it).
pub(crate) fn overlaps_any<'a>(
    ranges: impl IntoIterator<Item = &'a Range<u64>>,
    range: &Range<u64>,
) -> bool {
    ranges.into_iter().any(|r| {
        if r.is_empty() || range.is_empty() {
            r.start == range.start
                || (r.start < range.start && range.start < r.end)
                || (range.start < r.start && r.start < range.end)
        } else {
            r.start < range.end && range.start < r.end
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_tile_and_refuse_overlaps() {
        let mut set = RangeSet::default();
        assert!(set.insert(10..20));
        assert!(set.insert(0..10));
        assert!(!set.insert(5..15), "overlap refused");
        assert!(!set.insert(19..25), "overlap refused");
        assert!(!set.insert(0..10), "a repeat overlaps");
        assert!(!set.insert(12..12), "an empty range inside one overlaps");
        assert!(set.holds(&(10..20)) && !set.holds(&(5..15)) && !set.holds(&(0..20)));
        assert!(set.tiles(20) && !set.tiles(21));
        assert!(set.insert(20..21));
        assert_eq!(set.last(), Some(20..21));
        assert_eq!(set.len(), 3);
        assert_eq!(set.ranges(), vec![0..10, 10..20, 20..21]);
    }

    #[test]
    fn a_zero_byte_file_is_complete_once_its_empty_range_is_in() {
        let mut set = RangeSet::default();
        assert!(!set.tiles(0) && !set.holds(&(0..0)));
        assert!(set.insert(0..0));
        assert!(!set.insert(0..0), "an empty range twice overlaps");
        assert!(set.tiles(0) && set.holds(&(0..0)));
    }

    #[test]
    fn gaps_are_not_tiled() {
        let mut set = RangeSet::default();
        assert!(set.insert(20..30) && set.insert(0..10));
        assert!(!set.tiles(30));
        assert!(set.overlaps(&(9..11)) && !set.overlaps(&(10..20)));
        assert!(set.overlaps(&(0..0)) && !set.overlaps(&(10..10)));
    }

    #[test]
    fn a_million_one_byte_ranges_take_no_more_per_range_than_a_few() {
        let started = std::time::Instant::now();
        let mut set = RangeSet::default();
        for start in (0..1_000_000u64).rev() {
            assert!(!set.holds(&(start..start + 1)) && !set.overlaps(&(start..start + 1)));
            assert!(set.insert(start..start + 1));
            assert_eq!(set.tiles(1_000_000), start == 0);
        }
        // Quadratic work (the first version's) takes minutes here; logarithmic, a second.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }
}
