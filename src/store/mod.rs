//! Where chunks are kept. The protocol code never touches the filesystem itself; it goes
//! through a store. [`fs`] is the default: local files under the chunk directory.

pub mod fs;

use serde::{Deserialize, Serialize};

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

/// How a chunk was recorded: a non-zero byte per slot in the chunk record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Mark {
    /// The chunk is in and says nothing of the mode.
    Plain = 1,
    /// The chunk is in and proves the standard mode.
    Standard = 2,
    /// The chunk is in and proves the forced mode.
    Forced = 3,
}

impl Mark {
    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Plain),
            2 => Some(Self::Standard),
            3 => Some(Self::Forced),
            _ => None,
        }
    }

    pub(crate) fn for_mode(mode: Option<crate::layout::Mode>) -> Self {
        match mode {
            None => Self::Plain,
            Some(crate::layout::Mode::Standard) => Self::Standard,
            Some(crate::layout::Mode::Forced) => Self::Forced,
        }
    }

    pub(crate) fn mode(self) -> Option<crate::layout::Mode> {
        match self {
            Self::Plain => None,
            Self::Standard => Some(crate::layout::Mode::Standard),
            Self::Forced => Some(crate::layout::Mode::Forced),
        }
    }
}

/// Why writing a chunk's bytes failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// The body ended before the announced number of bytes.
    #[error("the chunk body has {got} bytes, expected {expected}")]
    TooShort { got: u64, expected: u64 },
    /// The body went on past the announced number of bytes.
    #[error("the chunk body is longer than the announced {expected} bytes")]
    TooLong { expected: u64 },
    /// Reading the body failed: the client went away or sent garbage.
    #[error("the chunk body was cut off: {0}")]
    Body(String),
    /// The storage failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
