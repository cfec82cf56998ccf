//! A chunk of a chunked upload (resumable.js and flow.js cut files this way), as the
//! service takes it: the protocol adapter reads and checks it from a request.

/// The parameters of one test or upload request, checked.
///
/// ```
/// use sea_orm_resumable::{ChunkParams, ParameterNames};
///
/// let query = "resumableChunkNumber=2&resumableChunkSize=1024&resumableCurrentChunkSize=1024\
///     &resumableTotalSize=4096&resumableIdentifier=4096-reportpdf&resumableFilename=report.pdf";
/// let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
/// let params = ChunkParams::parse(&[ParameterNames::resumable()], |k| {
///     pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
/// })
/// .unwrap();
/// assert_eq!((params.chunk_number, params.total_size), (2, 4096));
/// assert_eq!(params.filename, "report.pdf");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkParams {
    /// 1-based chunk number.
    pub chunk_number: u64,
    /// Configured chunk size `C`.
    pub chunk_size: u64,
    /// Bytes in this chunk.
    pub current_chunk_size: u64,
    /// File size `T`.
    pub total_size: u64,
    /// Client-chosen identifier (never used as a path).
    pub identifier: String,
    /// Original file name (metadata only, never used as a path).
    pub filename: String,
    /// Folder-relative path, when the client sent one.
    pub relative_path: Option<String>,
    /// Browser-claimed MIME type, when sent and not empty.
    pub content_type: Option<String>,
    /// Name of the multipart part holding the chunk, in this request's scheme.
    pub file_part: String,
    /// The model field the upload is for, when the client named one
    /// ([`UploadsBuilder::field`](crate::UploadsBuilder::field)).
    pub field: Option<String>,
}
