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
    /// No piece of the body came within the idle timeout.
    #[error("the chunk body stalled for {0:?}")]
    Idle(std::time::Duration),
    /// The whole body took longer than its size allows at the minimum rate.
    #[error("the chunk body arrived too slowly (not complete within {0:?})")]
    TooSlow(std::time::Duration),
    /// The storage failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// How long a request body may take: at most `idle` between two pieces, and the whole body
/// within `limit` (when set).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyPace {
    pub idle: std::time::Duration,
    pub limit: Option<std::time::Duration>,
}

impl BodyPace {
    /// For a body read only to be dropped after a refusal: `idle` in all.
    pub fn refusal(idle: std::time::Duration) -> Self {
        Self {
            idle,
            limit: Some(idle),
        }
    }
}

/// `body` with `pace` enforced: an error item (and the end) once no piece came for
/// `pace.idle`, or the whole body is still coming after `pace.limit`; errors become their
/// text. The returned cell holds the reason when the pace cut the body (so the caller
/// can tell a slow client, who may retry, from a broken body).
#[cfg(feature = "object-store")]
pub(crate) fn paced<S, E>(
    body: S,
    pace: BodyPace,
) -> (
    impl futures_util::Stream<Item = Result<bytes::Bytes, String>> + Send,
    std::sync::Arc<std::sync::OnceLock<String>>,
)
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Send,
    E: std::fmt::Display,
{
    use futures_util::StreamExt;
    let cut = std::sync::Arc::new(std::sync::OnceLock::new());
    let reason = cut.clone();
    let limit = pace.limit.unwrap_or(std::time::Duration::MAX / 4);
    let deadline = tokio::time::Instant::now() + limit;
    let stream = futures_util::stream::unfold((Box::pin(body), false), move |(mut body, ended)| {
        let reason = reason.clone();
        async move {
            if ended {
                return None;
            }
            let next =
                tokio::time::timeout_at(deadline, tokio::time::timeout(pace.idle, body.next()))
                    .await;
            let (item, ended) = match next {
                Ok(Ok(Some(Ok(piece)))) => (Ok(piece), false),
                Ok(Ok(Some(Err(e)))) => (Err(e.to_string()), true),
                Ok(Ok(None)) => return None,
                Ok(Err(_)) => (Err(cut_off(&reason, WriteError::Idle(pace.idle))), true),
                Err(_) => (Err(cut_off(&reason, WriteError::TooSlow(limit))), true),
            };
            Some((item, (body, ended)))
        }
    });
    (stream, cut)
}

/// Notes why the pace cut a body off, and returns it.
#[cfg(feature = "object-store")]
fn cut_off(reason: &std::sync::OnceLock<String>, e: WriteError) -> String {
    let text = e.to_string();
    let _ = reason.set(text.clone());
    text
}
