//! Chunk arithmetic: where a chunk lives in the file and which chunks make a whole.
//!
//! resumable.js and flow.js cut a file of `T` bytes into chunks of `C` bytes in one of two
//! ways, and the server cannot know which in advance:
//!
//! * **standard** (the default): `max(1, ⌊T/C⌋)` chunks, the last one taking the
//!   remainder, so it holds `C..2C` bytes;
//! * **forced** (`forceChunkSize: true`): `max(1, ⌈T/C⌉)` chunks, the last holding `1..=C`.
//!
//! Both agree on every chunk but the last one or two, and chunk `n` always starts at
//! `(n − 1)·C`. When `T` is a multiple of `C`, or smaller than `C`, the two are the same.
//! Otherwise chunk `⌊T/C⌋` tells them apart (`C + r` bytes in standard, `C` in forced),
//! and chunk `⌊T/C⌋ + 1` exists only in forced.

use std::fmt;

/// How the client cut the file: see the module docs.
///
/// ```
/// use sea_orm_resumable::testing::{Layout, Mode};
/// // 25 bytes in chunks of 10: chunk 2 of 15 bytes proves the standard mode.
/// assert_eq!(Layout::new(25, 10).unwrap().place(2, 15).unwrap().implies, Some(Mode::Standard));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// resumable.js / flow.js default: the last chunk takes the remainder (`C..2C` bytes).
    Standard,
    /// `forceChunkSize: true`: every chunk but the last is `C` bytes, the last `1..=C`.
    Forced,
}

/// The size of a file and the chunk size it is sent in.
///
/// ```
/// use sea_orm_resumable::testing::{Layout, Mode};
///
/// let layout = Layout::new(2_500, 1_000).unwrap();
/// // Standard: 2 chunks, the second holds 1_500 bytes; forced: 3 chunks.
/// assert_eq!(layout.chunk_count(Mode::Standard), 2);
/// assert_eq!(layout.chunk_count(Mode::Forced), 3);
/// let place = layout.place(2, 1_500).unwrap();
/// assert_eq!((place.offset, place.implies), (1_000, Some(Mode::Standard)));
/// assert!(layout.place(2, 999).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    total_size: u64,
    chunk_size: u64,
}

/// Where one chunk goes, as checked by [`Layout::place`].
///
/// ```
/// use sea_orm_resumable::testing::Layout;
/// let place = Layout::new(100, 10).unwrap().place(3, 10).unwrap();
/// assert_eq!((place.offset, place.len, place.implies), (20, 10, None));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkPlace {
    /// Byte offset of the chunk in the file: `(n − 1)·C`.
    pub offset: u64,
    /// Number of bytes the chunk holds.
    pub len: u64,
    /// The mode this chunk proves the client is using, if it tells them apart.
    pub implies: Option<Mode>,
}

/// Why a chunk does not fit the layout; the message is one line for the client.
///
/// ```
/// use sea_orm_resumable::testing::Layout;
/// let error = Layout::new(100, 10).unwrap().place(3, 9).unwrap_err();
/// assert_eq!(error.to_string(), "chunk 3 must hold 10 bytes, not 9");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutError(String);

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LayoutError {}

impl Layout {
    /// A layout for a file of `total_size` bytes sent in chunks of `chunk_size` bytes.
    ///
    /// ```
    /// use sea_orm_resumable::testing::Layout;
    /// assert!(Layout::new(10, 0).is_err());
    /// assert!(Layout::new(0, 1024).is_ok()); // a zero-byte file is one empty chunk
    /// ```
    pub fn new(total_size: u64, chunk_size: u64) -> Result<Self, LayoutError> {
        if chunk_size == 0 {
            return Err(LayoutError("chunk size must be at least 1 byte".into()));
        }
        Ok(Self {
            total_size,
            chunk_size,
        })
    }

    fn full_chunks(&self) -> u64 {
        self.total_size / self.chunk_size
    }

    fn remainder(&self) -> u64 {
        self.total_size % self.chunk_size
    }

    /// Number of chunks the client sends in `mode`.
    ///
    /// ```
    /// use sea_orm_resumable::testing::{Layout, Mode};
    /// assert_eq!(Layout::new(0, 10).unwrap().chunk_count(Mode::Standard), 1);
    /// assert_eq!(Layout::new(30, 10).unwrap().chunk_count(Mode::Forced), 3);
    /// ```
    pub fn chunk_count(&self, mode: Mode) -> u64 {
        let q = self.full_chunks();
        match mode {
            _ if q == 0 => 1,
            Mode::Forced if self.remainder() > 0 => q + 1,
            _ => q,
        }
    }

    /// Number of chunk numbers that can occur in either mode (the larger count).
    pub fn slots(&self) -> u64 {
        self.chunk_count(Mode::Forced)
    }

    /// Checks that chunk `number` (1-based) of `len` bytes fits this file, and places it.
    ///
    /// Every chunk but the last is exactly `C` bytes; the last ends exactly at `T`.
    pub fn place(&self, number: u64, len: u64) -> Result<ChunkPlace, LayoutError> {
        let slots = self.slots();
        if number == 0 {
            return Err(LayoutError("chunk numbers start at 1".into()));
        }
        if number > slots {
            return Err(LayoutError(format!(
                "chunk {number} is past the last chunk ({slots}) of this file"
            )));
        }
        let (c, q, r) = (self.chunk_size, self.full_chunks(), self.remainder());
        // number ≤ slots ≤ T/C + 1, so this cannot overflow.
        let offset = (number - 1) * c;
        let fits = |expected: u64, implies| {
            if len == expected {
                Ok(ChunkPlace {
                    offset,
                    len,
                    implies,
                })
            } else {
                Err(LayoutError(format!(
                    "chunk {number} must hold {expected} bytes, not {len}"
                )))
            }
        };
        if q == 0 {
            return fits(self.total_size, None);
        }
        if r == 0 || number < q {
            return fits(c, None);
        }
        if number == q {
            return match len {
                l if l == c => fits(c, Some(Mode::Forced)),
                l if l == c + r => fits(c + r, Some(Mode::Standard)),
                _ => Err(LayoutError(format!(
                    "chunk {number} must hold {c} or {} bytes, not {len}",
                    c + r
                ))),
            };
        }
        fits(r, Some(Mode::Forced))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covers(layout: &Layout, mode: Mode) -> bool {
        let mut end = 0;
        for n in 1..=layout.chunk_count(mode) {
            let len = if n < layout.chunk_count(mode) {
                layout.chunk_size
            } else {
                layout.total_size - end
            };
            let place = layout.place(n, len).unwrap();
            assert_eq!(place.offset, end);
            end += place.len;
        }
        end == layout.total_size
    }

    #[test]
    fn both_modes_cover_the_file_exactly() {
        for total in [0, 1, 9, 10, 11, 19, 20, 21, 99, 100, 101] {
            let layout = Layout::new(total, 10).unwrap();
            assert!(covers(&layout, Mode::Standard), "standard {total}");
            assert!(covers(&layout, Mode::Forced), "forced {total}");
        }
    }

    #[test]
    fn the_last_standard_chunk_holds_up_to_two_chunk_sizes() {
        let layout = Layout::new(29, 10).unwrap();
        assert_eq!(layout.place(2, 19).unwrap().implies, Some(Mode::Standard));
        assert_eq!(layout.place(2, 10).unwrap().implies, Some(Mode::Forced));
        assert_eq!(layout.place(3, 9).unwrap().implies, Some(Mode::Forced));
        assert!(layout.place(3, 10).is_err());
        assert!(layout.place(4, 9).is_err());
    }

    #[test]
    fn chunk_zero_and_wrong_sizes_are_refused() {
        let layout = Layout::new(100, 10).unwrap();
        assert!(layout.place(0, 10).is_err());
        assert!(layout.place(11, 10).is_err());
        assert!(layout.place(3, 9).is_err());
        assert!(layout.place(10, 11).is_err());
    }

    #[test]
    fn huge_sizes_do_not_overflow() {
        let layout = Layout::new(u64::MAX, 1).unwrap();
        assert_eq!(layout.place(u64::MAX, 1).unwrap().offset, u64::MAX - 1);
        let layout = Layout::new(u64::MAX, u64::MAX).unwrap();
        assert_eq!(layout.slots(), 1);
        assert!(layout.place(2, 0).is_err());
    }
}
