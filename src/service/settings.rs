//! Settings of the upload endpoint, with safe defaults.

use serde::Deserialize;
use std::{path::PathBuf, time::Duration};

use crate::Media;

/// The private directory under the media root for copies of uploads waiting to be put in
/// place by a save.
pub(crate) const STAGING_DIR: &str = ".resumable_staging";

/// The default chunk subdirectory under the media root (the original's `RESUMABLE_SUBDIR`).
pub const DEFAULT_CHUNK_SUBDIR: &str = "resumable_chunks";

/// Settings of [`Uploads`](crate::Uploads). Plain data: build it in code or deserialise it
/// from your app's configuration (every field has a default).
///
/// ```
/// use sea_orm_resumable::Settings;
///
/// let settings = Settings {
///     max_file_size: 10 << 30, // 10 GiB
///     ..Settings::new("./media")
/// };
/// assert_eq!(settings.chunk_dir(), std::path::Path::new("./media/resumable_chunks"));
///
/// let from_config: Settings = serde_json::from_str(r#"{"media_root": "/srv/media", "chunk_subdir": "tmp"}"#).unwrap();
/// assert_eq!(from_config.chunk_dir(), std::path::Path::new("/srv/media/tmp"));
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Root of all stored files (Django's `MEDIA_ROOT`).
    pub media_root: PathBuf,
    /// URL prefix under which the app serves the media root (Django's `MEDIA_URL`,
    /// default `/media/`); links to stored files start with it.
    pub media_url: String,
    /// Chunk directory, relative to the media root (`RESUMABLE_SUBDIR`).
    pub chunk_subdir: PathBuf,
    /// Largest file accepted, in bytes (default 100 GiB).
    pub max_file_size: u64,
    /// Largest chunk size (`resumableChunkSize`) accepted, in bytes (default 64 MiB).
    /// Request bodies may be up to twice this, since the last chunk of a file holds up to
    /// two chunk sizes.
    pub max_chunk_size: u64,
    /// Most chunks one file may be cut into (default 1 Mi). Bounds the per-upload chunk
    /// record, which holds one byte per chunk.
    pub max_chunks: u64,
    /// Parameter naming schemes recognised, tried in order (default: resumable.js, flow.js).
    pub parameter_names: Vec<ParameterNames>,
    /// Longest wait for the next piece of a request body (default 60 s). A silent client
    /// is cut off then (503, so a live one retries), freeing its chunk for the retry; a
    /// duplicate request waits at most this long for the chunk's current writer.
    pub body_idle_timeout: Duration,
    /// Slowest average a chunk body may arrive at, in bytes per second, after a grace of
    /// `body_idle_timeout` (default 1 KiB/s): a chunk of `n` bytes must be in within
    /// `body_idle_timeout + n / min_body_rate`, so a client trickling a byte now and then
    /// does not hold its chunk forever. 0 turns the check off. Keep it well below the
    /// slowest uplink you serve divided by the chunks a client sends at once: a client
    /// slower than this never gets its chunk in.
    pub min_body_rate: u64,
    /// Most uploads one scope (a user, or a browser without login) may hold at once,
    /// unfinished or complete but not yet saved to a row (default 100); a new one beyond
    /// that is refused (400, with a sentence saying which limit) until one is saved or
    /// expires.
    pub max_open_uploads: u64,
    /// Most bytes (announced file sizes) one scope may hold in uploads not yet saved
    /// (default 1 TiB).
    pub max_scope_bytes: u64,
    /// Most uploads not yet saved that requests from one client address may have started
    /// (default 1000; IPv6 addresses count by their /64). Keeps a client that drops its
    /// cookies (a new browser scope each time) to a bound, while a busy office behind one
    /// address still works. Addresses come from
    /// [`UploadsBuilder::client_address`](crate::UploadsBuilder::client_address).
    pub max_client_uploads: u64,
    /// Most bytes (announced sizes) of uploads not yet saved from one client address
    /// (default 4 TiB).
    pub max_client_bytes: u64,
    /// Most uploads not yet saved, all clients together (default 100,000: high enough
    /// that a few addresses flooding zero-byte uploads cannot lock everybody out for
    /// `complete_expiry`, low enough to bound the disk's file count).
    pub max_total_uploads: u64,
    /// Most bytes of uploads not yet saved, all clients together (default: no limit but
    /// the disk: on local files a new upload larger than the free space is refused at
    /// once).
    pub max_total_bytes: u64,
    /// Origins (`https://app.example.com`) besides the request's own host that may send
    /// chunks, and forms through [`refuse_cross_origin`](crate::refuse_cross_origin);
    /// `"*"` allows any. Default: none, so another site cannot make a visitor's browser
    /// upload or save.
    pub trusted_origins: Vec<String>,
    /// Marks the browser-scope cookie `Secure` (send it over HTTPS only). Default `false`
    /// so that plain-HTTP development works; set it behind TLS.
    pub secure_cookie: bool,
    /// An unfinished upload nobody wrote to for this long expires (default 24 h): its
    /// files are removed by [`Uploads::expire`](crate::Uploads::expire).
    pub incomplete_expiry: Duration,
    /// A complete upload no model saved within this long expires (default 7 days).
    pub complete_expiry: Duration,
    /// Flush each chunk's bytes to the disk before recording it (default `true`), so a
    /// power cut never records a chunk whose bytes were lost. A process crash is safe
    /// either way. With it, each piece of a chunk is handed to the disk as soon as it is
    /// written (Linux: `sync_file_range`), so the flush at the chunk's end waits less.
    ///
    /// Turning it off leaves the bytes to the page cache, like most upload servers
    /// (rustus, tusd, Django's file storage): on the benchmark machine 1 GiB uploads went
    /// from 32–40 % to 44–64 % of what an HTTP sink takes (medians of two runs,
    /// BENCHMARKS.md), though not faster to the disk, at the price that
    /// a power cut or kernel crash can leave a recorded chunk whose bytes are gone, i.e.
    /// a corrupt file.
    pub sync_data: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self::new("media")
    }
}

impl Settings {
    /// Defaults, with files under `media_root`.
    pub fn new(media_root: impl Into<PathBuf>) -> Self {
        Self {
            media_root: media_root.into(),
            media_url: "/media/".into(),
            chunk_subdir: DEFAULT_CHUNK_SUBDIR.into(),
            max_file_size: 100 << 30,
            max_chunk_size: 64 << 20,
            max_chunks: 1 << 20,
            body_idle_timeout: Duration::from_secs(60),
            parameter_names: vec![ParameterNames::resumable(), ParameterNames::flow()],
            sync_data: true,
            min_body_rate: 1024,
            max_open_uploads: 100,
            max_scope_bytes: 1 << 40,
            max_client_uploads: 1000,
            max_client_bytes: 4 << 40,
            max_total_uploads: 100_000,
            max_total_bytes: u64::MAX,
            trusted_origins: Vec::new(),
            secure_cookie: false,
            incomplete_expiry: Duration::from_secs(24 * 60 * 60),
            complete_expiry: Duration::from_secs(7 * 24 * 60 * 60),
        }
    }

    /// The directory chunks are written to: media root + chunk subdirectory.
    pub fn chunk_dir(&self) -> PathBuf {
        self.media_root.join(&self.chunk_subdir)
    }

    /// The media root and URL, which stored model files are relative to, with the chunk
    /// subdirectory and the staging directory marked private (a field's own chunk
    /// directory too, in [`Uploads::media`](crate::Uploads::media)).
    ///
    /// ```
    /// use sea_orm_resumable::Settings;
    /// let media = Settings::new("/srv/media").media();
    /// assert_eq!(media.url("docs/a b.pdf").unwrap(), "/media/docs/a%20b.pdf");
    /// ```
    pub fn media(&self) -> Media {
        Media::new(&self.media_root, &self.media_url)
            .with_private(&self.chunk_subdir)
            .with_private(STAGING_DIR)
    }

    /// Largest request body accepted: two chunk sizes plus room for the multipart framing
    /// and form fields.
    ///
    /// ```
    /// use sea_orm_resumable::Settings;
    /// let settings = Settings { max_chunk_size: 1 << 20, ..Settings::default() };
    /// assert_eq!(settings.max_body_size(), (2 << 20) + 64 * 1024);
    /// ```
    pub fn max_body_size(&self) -> usize {
        usize::try_from(
            self.max_chunk_size
                .saturating_mul(2)
                .saturating_add(64 * 1024),
        )
        .unwrap_or(usize::MAX)
    }
}

/// The names of the chunk parameters in one client's protocol.
///
/// resumable.js lets an app rename each parameter (`chunkNumberParameterName`, …) and put
/// a `parameterNamespace` before all of them; mirror such options here.
///
/// ```
/// use sea_orm_resumable::ParameterNames;
///
/// let names = ParameterNames::resumable().with_namespace("upload_");
/// assert_eq!(names.key(&names.chunk_number), "upload_resumableChunkNumber");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ParameterNames {
    /// Prefix put before every name (resumable.js `parameterNamespace`).
    pub namespace: String,
    /// 1-based chunk number.
    pub chunk_number: String,
    /// Configured chunk size.
    pub chunk_size: String,
    /// Bytes in this chunk.
    pub current_chunk_size: String,
    /// File size.
    pub total_size: String,
    /// Client-chosen identifier of the file.
    pub identifier: String,
    /// Original file name.
    pub filename: String,
    /// Folder-relative path of the file.
    pub relative_path: String,
    /// MIME type claimed by the browser (resumable.js only).
    pub content_type: String,
    /// Name of the multipart part that holds the chunk (`fileParameterName`); namespaced
    /// too, as resumable.js does.
    pub file: String,
    /// Which registered model field the upload is for (our widget sends it; with the
    /// genuine clients, add it with their `query` option). Optional: without it the
    /// upload goes to the default chunk directory.
    pub field: String,
}

impl Default for ParameterNames {
    fn default() -> Self {
        Self::resumable()
    }
}

impl ParameterNames {
    /// The resumable.js names (`resumableChunkNumber`, …), file part `file`.
    pub fn resumable() -> Self {
        Self::with_prefix("resumable")
    }

    /// The flow.js names (`flowChunkNumber`, …), file part `file`.
    pub fn flow() -> Self {
        Self::with_prefix("flow")
    }

    fn with_prefix(prefix: &str) -> Self {
        let name = |suffix: &str| format!("{prefix}{suffix}");
        Self {
            namespace: String::new(),
            chunk_number: name("ChunkNumber"),
            chunk_size: name("ChunkSize"),
            current_chunk_size: name("CurrentChunkSize"),
            total_size: name("TotalSize"),
            identifier: name("Identifier"),
            filename: name("Filename"),
            relative_path: name("RelativePath"),
            content_type: name("Type"),
            file: "file".into(),
            field: name("Field"),
        }
    }

    /// The same names behind a namespace prefix.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The full parameter name on the wire: namespace + name.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.namespace)
    }
}
