//! [`Uploads`]: the upload service an app builds once and shares — the endpoint's state,
//! and later what forms and model fields ask about completed uploads.

use axum::http::request::Parts;
use bytes::Bytes;
use futures_util::Stream;
use serde::Serialize;
use std::{collections::HashMap, io, path::PathBuf, sync::Arc, time::SystemTime};

use crate::faults::fault_point;
use crate::{
    ChunkParams, FileFieldError, Media, Scope, ScopeResolver, Secret, Settings, UploadError,
    UploadKey, UploadToken,
    browser::BrowserId,
    field::{FileFieldOptions, PendingUpload},
    layout::Layout,
    media::check_relative,
    pace::{BodyPace, Cut, drain, paced},
    quotas::{Held, Quotas},
    rules::FieldRules,
    scope::BrowserScope,
    store::{Mark, UploadMeta, WriteError, fs::FsStore},
    upload::{Claim, Finish, Registry, Upload},
};

/// Called once for each upload that becomes complete.
type CompletionHook = Box<dyn Fn(&CompletedUpload) + Send + Sync>;

/// The network address a request came from (see [`UploadsBuilder::client_address`]).
type ClientAddress = dyn Fn(&Parts) -> Option<std::net::IpAddr> + Send + Sync;

/// The peer address axum's `ConnectInfo` holds, when the app serves with it.
fn connect_info(parts: &Parts) -> Option<std::net::IpAddr> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip())
}

/// The upload service: settings, signing secret, scope hook and chunk store. Cheap to
/// clone (one `Arc`); build it once at start-up and hand it to [`router`](crate::router).
///
/// ```
/// use sea_orm_resumable::{Secret, Settings, Uploads};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let media = tempfile::tempdir().unwrap();
/// let uploads = Uploads::builder(Settings::new(media.path()), Secret::generate())
///     .on_complete(|done| println!("{} is complete ({} bytes)", done.meta.file_name, done.meta.total_size))
///     .build()
///     .await
///     .unwrap();
/// assert!(uploads.settings().chunk_dir().is_dir());
/// # });
/// ```
#[derive(Clone)]
pub struct Uploads {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Uploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploads")
            .field("settings", &self.inner.settings)
            .field("fields", &self.inner.fields)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    settings: Settings,
    pub(crate) secret: Secret,
    scope: Box<dyn ScopeResolver>,
    client_address: Box<ClientAddress>,
    pub(crate) on_complete: Vec<CompletionHook>,
    /// Uploads in the default chunk directory.
    registry: Registry,
    /// Uploads in a field's own chunk directory (`CHUNKS_UPLOAD_TO`), by that directory.
    field_registries: HashMap<&'static str, Registry>,
    /// Registered field names, with their chunk directory (`None`: the default one).
    fields: HashMap<String, FieldRules>,
    /// Uploads not yet saved, per scope, client address and in all.
    quotas: Quotas,
    /// The media root with every chunk directory private (resolved once: it looks at
    /// the file system).
    media: Media,
    /// Chunks and files on object storage, shared by several servers.
    #[cfg(feature = "object-store")]
    pub(crate) shared: Option<crate::shared::SharedStorage>,
}

/// Builds [`Uploads`]: see [`Uploads::builder`].
///
/// ```
/// use axum::http::request::Parts;
/// use sea_orm_resumable::{Scope, Secret, Settings, Uploads};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// # let media = tempfile::tempdir().unwrap();
/// // Per-user uploads: the scope is the user id a login layer put in the extensions.
/// #[derive(Clone)]
/// struct UserId(i64);
/// let uploads = Uploads::builder(Settings::new(media.path()), Secret::generate())
///     .scope(|parts: &Parts| parts.extensions.get::<UserId>().map(|u| Scope::new(u.0.to_string())))
///     .build()
///     .await
///     .unwrap();
/// # let _ = uploads;
/// # });
/// ```
pub struct UploadsBuilder {
    settings: Settings,
    secret: Secret,
    scope: Box<dyn ScopeResolver>,
    client_address: Box<ClientAddress>,
    on_complete: Vec<CompletionHook>,
    fields: HashMap<String, FieldRules>,
    #[cfg(feature = "object-store")]
    pub(crate) shared: Option<crate::shared::SharedStorage>,
}

use crate::sniff::SNIFF_BYTES;

/// An upload whose every chunk is in, as passed to [`UploadsBuilder::on_complete`].
///
/// ```
/// use sea_orm_resumable::{CompletedUpload, Secret, Settings, Uploads};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// # let media = tempfile::tempdir().unwrap();
/// let uploads = Uploads::builder(Settings::new(media.path()), Secret::generate())
///     .on_complete(|done: &CompletedUpload| {
///         tracing::info!(file = %done.meta.file_name, path = ?done.path, "upload complete");
///     })
///     .build()
///     .await
///     .unwrap();
/// # let _ = uploads;
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct CompletedUpload {
    /// The upload's key.
    pub key: UploadKey,
    /// Its owner.
    pub scope: Scope,
    /// The token the browser holds for it.
    pub token: UploadToken,
    /// What the client said about the file.
    pub meta: UploadMeta,
    /// Where its bytes are now: in the chunk directory until a model claims it (in shared
    /// mode, the object key of the assembled file).
    pub path: PathBuf,
}

/// The JSON body of every 200 answer about an upload, test answers included.
///
/// ```json
/// {"token": "…", "complete": false, "chunks_received": 3, "total_chunks": 10,
///  "size": 10485760, "file_name": "report.pdf"}
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UploadStatus {
    /// Signed upload token: put it in the form to attach the file to a row.
    pub token: UploadToken,
    /// Whether every chunk is in.
    pub complete: bool,
    /// Chunks stored so far.
    pub chunks_received: u64,
    /// Chunks in the whole file.
    pub total_chunks: u64,
    /// File size in bytes.
    pub size: u64,
    /// Original file name, as the client sent it.
    pub file_name: String,
}

impl UploadsBuilder {
    /// Sets the hook that maps a request to its [`Scope`] (default: [`BrowserScope`], a
    /// scope per browser from a signed cookie).
    pub fn scope(mut self, resolver: impl ScopeResolver) -> Self {
        self.scope = Box::new(resolver);
        self
    }

    /// Sets the hook that tells a request's client address, which the per-address limits
    /// ([`Settings::max_client_uploads`]) count. Default: the peer address, when the app
    /// serves with axum's `ConnectInfo` (`into_make_service_with_connect_info`); without
    /// it, or when the hook says `None`, only the per-scope and total limits apply.
    /// Behind a reverse proxy, read the address the proxy adds, and only from the proxy:
    ///
    /// ```
    /// use axum::http::request::Parts;
    /// use sea_orm_resumable::{Secret, Settings, Uploads};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let media = tempfile::tempdir().unwrap();
    /// let uploads = Uploads::builder(Settings::new(media.path()), Secret::generate())
    ///     // nginx: proxy_set_header X-Real-IP $remote_addr;
    ///     .client_address(|parts: &Parts| parts.headers.get("x-real-ip")?.to_str().ok()?.parse().ok())
    ///     .build()
    ///     .await
    ///     .unwrap();
    /// # let _ = uploads;
    /// # });
    /// ```
    pub fn client_address(
        mut self,
        hook: impl Fn(&Parts) -> Option<std::net::IpAddr> + Send + Sync + 'static,
    ) -> Self {
        self.client_address = Box::new(hook);
        self
    }

    /// Adds a hook called once when an upload becomes complete (on the request that
    /// completed it). Keep it quick; spawn a task for slow work.
    pub fn on_complete(mut self, hook: impl Fn(&CompletedUpload) + Send + Sync + 'static) -> Self {
        self.on_complete.push(Box::new(hook));
        self
    }

    /// Registers a model file field under `name`, the value clients send in the
    /// `resumableField` parameter (`flowField` for flow.js) for uploads meant for it.
    /// Uploads for a field whose options set `CHUNKS_UPLOAD_TO` are stored in that
    /// directory (under the media root) instead of the default chunk directory; a request
    /// naming an unregistered field is refused.
    ///
    /// ```
    /// use sea_orm_resumable::{Secret, Settings, Uploads};
    /// sea_orm_resumable::file_field! { pub struct Avatar { chunks_upload_to: "avatar_chunks" } }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let media = tempfile::tempdir().unwrap();
    /// let uploads = Uploads::builder(Settings::new(media.path()), Secret::generate())
    ///     .field::<Avatar>("avatar")
    ///     .build()
    ///     .await
    ///     .unwrap();
    /// assert!(media.path().join("avatar_chunks").is_dir());
    /// assert!(uploads.media().is_private("avatar_chunks/x.data"));
    /// # });
    /// ```
    pub fn field<C: FileFieldOptions>(mut self, name: impl Into<String>) -> Self {
        let rules = FieldRules {
            chunks_upload_to: C::CHUNKS_UPLOAD_TO,
            max_size: C::MAX_SIZE,
            content_types: C::CONTENT_TYPES,
        };
        self.fields.insert(name.into(), rules);
        self
    }

    /// Opens the chunk directories (creating them) and returns the service.
    pub async fn build(self) -> io::Result<Uploads> {
        let sync = self.settings.sync_data;
        let store = FsStore::open(self.settings.chunk_dir(), sync).await?;
        let mut field_registries = HashMap::new();
        for dir in self
            .fields
            .values()
            .filter_map(|f| f.chunks_upload_to.as_ref())
        {
            check_relative(dir).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            if !field_registries.contains_key(dir) {
                let store = FsStore::open(self.settings.media_root.join(dir), sync).await?;
                field_registries.insert(*dir, Registry::new(store));
            }
        }
        let quotas = Quotas::new(&self.settings);
        let media = field_registries
            .keys()
            .fold(self.settings.media(), |media, dir| media.with_private(dir));
        let uploads = Uploads {
            inner: Arc::new(Inner {
                quotas,
                settings: self.settings,
                secret: self.secret,
                scope: self.scope,
                client_address: self.client_address,
                on_complete: self.on_complete,
                registry: Registry::new(store),
                media,
                field_registries,
                fields: self.fields,
                #[cfg(feature = "object-store")]
                shared: self.shared,
            }),
        };
        uploads.count_open_uploads().await?;
        Ok(uploads)
    }
}

impl Uploads {
    /// Starts building the service from settings and the app's signing secret.
    pub fn builder(settings: Settings, secret: Secret) -> UploadsBuilder {
        UploadsBuilder {
            settings,
            secret,
            scope: Box::new(BrowserScope),
            client_address: Box::new(connect_info),
            on_complete: Vec::new(),
            fields: HashMap::new(),
            #[cfg(feature = "object-store")]
            shared: None,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The scope of a request, by the app's hook, with the client's address. A request
    /// the default [`BrowserScope`] finds no cookie on is scoped by that address; one the
    /// hook refuses (or without cookie nor address) is a 400.
    pub fn scope_of(&self, parts: &Parts) -> Result<Scope, UploadError> {
        let address = (self.inner.client_address)(parts);
        let scope = match self.inner.scope.resolve(parts) {
            Some(scope) => scope,
            None => {
                let browser = parts.extensions.get::<BrowserId>();
                if browser.is_some_and(|b| b.rejected) {
                    return Err(UploadError::BadRequest(
                        "the upload scope cookie is not valid or was sent twice: reload the \
                         page (or clear this site's cookies) and try again"
                            .into(),
                    ));
                }
                let wanted =
                    browser.is_some_and(|b| b.wanted.load(std::sync::atomic::Ordering::Relaxed));
                match address {
                    Some(address) if wanted => {
                        let client = Scope::anonymous().with_client(address);
                        Scope::new(format!("address:{}", client.client().unwrap_or_default()))
                    }
                    _ => {
                        return Err(UploadError::BadRequest(if wanted {
                            "no upload scope: this endpoint tells visitors apart by the \
                             cookie the app's pages set, or by their network address, and \
                             this request has neither"
                                .into()
                        } else {
                            "this request has no upload scope".into()
                        }));
                    }
                }
            }
        };
        Ok(match address {
            Some(address) => scope.with_client(address),
            None => scope,
        })
    }

    /// Where saved files are: the object store in shared mode
    /// ([`UploadsBuilder::object_storage`]), else the local [`media`](Self::media)
    /// directory. Read, link to and delete stored files through it.
    ///
    /// ```
    /// use sea_orm_resumable::{Secret, Settings, Uploads};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let media = tempfile::tempdir().unwrap();
    /// let uploads = Uploads::builder(Settings::new(media.path()), Secret::generate()).build().await.unwrap();
    /// let storage = uploads.storage();
    /// assert!(!storage.exists("docs/a.pdf").await.unwrap());
    /// # });
    /// ```
    pub fn storage(&self) -> std::sync::Arc<dyn crate::storage::FileStorage> {
        #[cfg(feature = "object-store")]
        if let Some(storage) = self.shared_storage() {
            return storage;
        }
        std::sync::Arc::new(self.media())
    }

    /// The media root and URL, with every chunk directory marked private.
    pub fn media(&self) -> Media {
        self.inner.media.clone()
    }

    /// Every chunk directory's uploads, with the directory (`None`: the default one).
    pub(crate) fn registries(&self) -> Vec<(Option<&'static str>, &Registry)> {
        std::iter::once((None, &self.inner.registry))
            .chain(
                self.inner
                    .field_registries
                    .iter()
                    .map(|(dir, registry)| (Some(*dir), registry)),
            )
            .collect()
    }

    /// Counts the uploads already on disk (a restart keeps every limit).
    async fn count_open_uploads(&self) -> io::Result<()> {
        for (dir, registry) in self.registries() {
            for (key, _, _) in registry.store.uploads().await? {
                if let Some(stored) = registry.store.load(&key).await? {
                    // Counted even past the limits: they exist; new ones wait.
                    self.inner
                        .quotas
                        .force_hold((dir, key), Self::held(&stored.meta));
                }
            }
        }
        Ok(())
    }

    /// The upload quotas.
    #[cfg(feature = "object-store")]
    pub(crate) fn quotas(&self) -> &Quotas {
        &self.inner.quotas
    }

    /// What an upload holds against the quotas.
    fn held(meta: &UploadMeta) -> Held {
        Held {
            scope: meta.scope.clone(),
            client: meta.client.clone(),
            bytes: meta.total_size,
        }
    }

    /// The `&'static` name of a field's chunk directory, as the registries know it.
    fn field_dir(&self, dir: &str) -> Option<&'static str> {
        self.inner
            .field_registries
            .get_key_value(dir)
            .map(|(dir, _)| *dir)
    }

    /// Forgets an upload for the quotas (saved or removed).
    pub(crate) fn close_open(&self, dir: Option<&'static str>, key: UploadKey) {
        self.inner.quotas.release((dir, key));
    }

    /// The uploads of a chunk directory: a field's own (`CHUNKS_UPLOAD_TO`) or the default.
    pub(crate) fn registry(&self, chunks_upload_to: Option<&str>) -> Option<&Registry> {
        match chunks_upload_to {
            None => Some(&self.inner.registry),
            Some(dir) => self.inner.field_registries.get(dir),
        }
    }

    /// The uploads a request is about, by the field it names, with their directory.
    fn registry_for(&self, params: &ChunkParams) -> Result<(FieldRules, &Registry), UploadError> {
        let rules =
            match &params.field {
                None => FieldRules::NONE,
                Some(name) => *self.inner.fields.get(name).ok_or_else(|| {
                    UploadError::BadRequest(format!("unknown upload field {name:?}"))
                })?,
            };
        self.registry(rules.chunks_upload_to)
            .map(|registry| (rules, registry))
            .ok_or_else(|| UploadError::BadRequest("unknown upload field".into()))
    }

    /// How fast a request body must come (see [`Settings::min_body_rate`]).
    pub(crate) fn pace(&self) -> BodyPace {
        let settings = &self.inner.settings;
        BodyPace {
            idle: settings.body_idle_timeout,
            grace: settings.body_idle_timeout,
            min_rate: settings.min_body_rate,
            total: None,
        }
    }

    /// Checks the sizes against the limits and the layout rules.
    fn layout(&self, params: &ChunkParams) -> Result<Layout, UploadError> {
        let settings = &self.inner.settings;
        if params.total_size > settings.max_file_size {
            return Err(UploadError::BadRequest(format!(
                "the file is larger than the limit of {} bytes",
                settings.max_file_size
            )));
        }
        if params.chunk_size > settings.max_chunk_size {
            return Err(UploadError::BadRequest(format!(
                "the chunk size is larger than the limit of {} bytes",
                settings.max_chunk_size
            )));
        }
        let layout = Layout::new(params.total_size, params.chunk_size)
            .map_err(|e| UploadError::BadRequest(e.to_string()))?;
        if layout.slots() > settings.max_chunks {
            return Err(UploadError::BadRequest(format!(
                "the chunk size is too small for this file: at most {} chunks are allowed",
                settings.max_chunks
            )));
        }
        Ok(layout)
    }

    /// Refuses a request whose sizes disagree with the upload's earlier chunks.
    fn check_same_upload(upload: &Upload, params: &ChunkParams) -> Result<(), UploadError> {
        Self::check_sizes(&upload.meta, params)
    }

    /// Refuses a request whose sizes disagree with the upload's metadata.
    pub(crate) fn check_sizes(meta: &UploadMeta, params: &ChunkParams) -> Result<(), UploadError> {
        let differs = |what: &str, was: u64| {
            UploadError::BadRequest(format!(
                "the {what} disagrees with earlier chunks of this upload (was {was})"
            ))
        };
        if meta.total_size != params.total_size {
            return Err(differs("total size", meta.total_size));
        }
        if meta.chunk_size != params.chunk_size {
            return Err(differs("chunk size", meta.chunk_size));
        }
        Ok(())
    }

    fn status(&self, scope: &Scope, upload: &Upload) -> UploadStatus {
        let progress = upload.progress();
        UploadStatus {
            token: self.inner.secret.sign(scope, &upload.key),
            complete: progress.complete,
            chunks_received: progress.received,
            total_chunks: progress.total_chunks,
            size: upload.meta.total_size,
            file_name: upload.meta.file_name.clone(),
        }
    }

    /// Completes the upload if every chunk is in, and tells the hooks if this call did it.
    async fn finish(
        &self,
        registry: &Registry,
        scope: &Scope,
        upload: &Upload,
    ) -> Result<(), UploadError> {
        if upload.finish_if_all_in(&registry.store).await? == Finish::JustCompleted {
            tracing::info!(key = %upload.key, size = upload.meta.total_size, "upload complete");
            if !self.inner.on_complete.is_empty() {
                let done = CompletedUpload {
                    key: upload.key,
                    scope: scope.clone(),
                    token: self.inner.secret.sign(scope, &upload.key),
                    meta: upload.meta.clone(),
                    path: registry.store.data_path(&upload.key),
                };
                for hook in &self.inner.on_complete {
                    hook(&done);
                }
            }
        }
        Ok(())
    }

    /// Answers a test request: the status if the chunk (or the whole upload) is stored,
    /// `None` if it must be sent. [`router`](crate::router) calls this and
    /// [`receive_chunk`](Self::receive_chunk); call them yourself to serve the protocol
    /// from your own handlers:
    ///
    /// ```
    /// use bytes::Bytes;
    /// use sea_orm_resumable::{ChunkParams, Scope, Secret, Settings, Uploads};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let media = tempfile::tempdir().unwrap();
    /// let uploads = Uploads::builder(Settings::new(media.path()), Secret::generate())
    ///     .build()
    ///     .await
    ///     .unwrap();
    /// let params = ChunkParams {
    ///     chunk_number: 1,
    ///     chunk_size: 1024,
    ///     current_chunk_size: 5,
    ///     total_size: 5,
    ///     identifier: "5-hello".into(),
    ///     filename: "hello.txt".into(),
    ///     relative_path: None,
    ///     content_type: None,
    ///     file_part: "file".into(),
    ///     field: None,
    /// };
    /// let scope = Scope::anonymous();
    /// assert!(uploads.test_chunk(&scope, &params).await.unwrap().is_none());
    /// let body = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from("hello"))]);
    /// let status = uploads.receive_chunk(&scope, &params, body).await.unwrap();
    /// assert!(status.complete);
    /// assert!(uploads.test_chunk(&scope, &params).await.unwrap().is_some());
    /// # });
    /// ```
    pub async fn test_chunk(
        &self,
        scope: &Scope,
        params: &ChunkParams,
    ) -> Result<Option<UploadStatus>, UploadError> {
        let layout = self.layout(params)?;
        let place = layout
            .place(params.chunk_number, params.current_chunk_size)
            .map_err(|e| UploadError::BadRequest(e.to_string()))?;
        let (rules, registry) = self.registry_for(params)?;
        rules.check_size(params.total_size)?;
        #[cfg(feature = "object-store")]
        if let Some(shared) = self.shared() {
            return self.test_chunk_shared(shared, scope, params).await;
        }
        let key = UploadKey::derive(scope, &params.identifier);
        let Some(upload) = registry.find(key).await? else {
            return Ok(None);
        };
        Self::check_same_upload(&upload, params)?;
        // Finishes an upload whose completion was cut short (a crash, a full disk).
        self.finish(registry, scope, &upload).await?;
        if upload.has_chunk(params.chunk_number, place.implies)? {
            Ok(Some(self.status(scope, &upload)))
        } else {
            Ok(None)
        }
    }

    /// Stores one chunk read from `body`, which must hold exactly the announced number of
    /// bytes. A chunk stored before is not written again; its body is read and dropped.
    /// The body keeps to the settings' pace (`body_idle_timeout`, `min_body_rate`), or is
    /// cut off with [`UploadError::Retry`].
    pub async fn receive_chunk<S, E>(
        &self,
        scope: &Scope,
        params: &ChunkParams,
        body: S,
    ) -> Result<UploadStatus, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let (body, cut) = paced(body, self.pace());
        self.receive_paced(scope, params, body, &cut).await
    }

    /// [`receive_chunk`](Self::receive_chunk) of a body paced already (the endpoint paces
    /// a request from its first byte); `cut` says whether the pace ended it.
    pub(crate) async fn receive_paced<S, E>(
        &self,
        scope: &Scope,
        params: &ChunkParams,
        body: S,
        cut: &Cut,
    ) -> Result<UploadStatus, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display + Send,
    {
        let layout = self.layout(params)?;
        let place = layout
            .place(params.chunk_number, params.current_chunk_size)
            .map_err(|e| UploadError::BadRequest(e.to_string()))?;
        let (rules, registry) = self.registry_for(params)?;
        rules.check_size(params.total_size)?;
        let dir = rules.chunks_upload_to;
        let key = UploadKey::derive(scope, &params.identifier);
        let meta = UploadMeta {
            scope: scope.as_str().to_owned(),
            identifier: params.identifier.clone(),
            file_name: params.filename.clone(),
            relative_path: params.relative_path.clone(),
            content_type: params.content_type.clone(),
            total_size: params.total_size,
            chunk_size: params.chunk_size,
            created_at: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            instance: uuid::Uuid::new_v4().simple().to_string(),
            client: scope.client().map(str::to_owned),
        };
        #[cfg(feature = "object-store")]
        if let Some(shared) = self.shared() {
            return self
                .receive_chunk_shared(shared, scope, (rules, place), params, meta, (body, cut))
                .await;
        }
        if registry.find(key).await?.is_none() {
            self.inner
                .quotas
                .try_hold((dir, key), Self::held(&meta))
                .map_err(UploadError::BadRequest)?;
            let free = registry
                .store
                .free_space()
                .inspect_err(|_| self.close_open(dir, key))?;
            if let Some(free) = free
                && free < meta.total_size
            {
                self.close_open(dir, key);
                return Err(UploadError::BadRequest(format!(
                    "the server has not enough free space for this file ({} bytes; {free} \
                     free): try again later or with a smaller file",
                    meta.total_size
                )));
            }
        }
        let upload = match registry.find_or_create(key, &meta).await {
            Ok(upload) => upload,
            Err(e) => {
                if registry.find(key).await.ok().flatten().is_none() {
                    self.close_open(dir, key);
                }
                return Err(e);
            }
        };
        Self::check_same_upload(&upload, params)?;
        let idle = self.inner.settings.body_idle_timeout;
        match upload
            .claim(params.chunk_number, place.implies, idle)
            .await?
        {
            // A duplicate gets the same time as a chunk that is written.
            Claim::Stored => drain(body, place.len, self.pace()).await,
            Claim::Write(claim) => {
                registry
                    .store
                    .write_chunk(&key, place.offset, place.len, body)
                    .await
                    .map_err(|e| match (e, cut.get()) {
                        // Too slow or stalled: the client may send the chunk again.
                        (_, Some(slow)) => UploadError::Retry(slow.to_string()),
                        (WriteError::Io(e), None) => UploadError::Unavailable(e),
                        (other, None) => UploadError::BadRequest(other.to_string()),
                    })?;
                fault_point!("chunk-written");
                if place.offset == 0 && !rules.content_types.is_empty() {
                    // The file's first bytes are in: refuse a type the field does not
                    // take now rather than after the whole file (the chunk stays
                    // unmarked, so the upload can never complete).
                    let sample = SNIFF_BYTES.min(place.len as usize);
                    let head = registry.store.read_head(&key, sample).await?;
                    rules.check_head(&head)?;
                }
                let mark = Mark::for_mode(place.implies);
                registry
                    .store
                    .mark(&key, params.chunk_number, mark as u8)
                    .await?;
                claim.record(mark);
                fault_point!("chunk-marked");
            }
        }
        self.finish(registry, scope, &upload).await?;
        Ok(self.status(scope, &upload))
    }

    /// The completed upload `token` names, checked for the user of `scope`, in the chunk
    /// directory `chunks_upload_to` (a field's own, or `None` for the default). What
    /// [`ResumableFileField::from_token`](crate::ResumableFileField::from_token) uses.
    pub async fn pending_upload(
        &self,
        scope: &Scope,
        token: &str,
        chunks_upload_to: Option<&'static str>,
    ) -> Result<PendingUpload, FileFieldError> {
        let key = self.inner.secret.verify(scope, token)?;
        #[cfg(feature = "object-store")]
        if let Some(shared) = self.shared() {
            return self.pending_upload_shared(shared, scope, key).await;
        }
        let registry = self
            .registry(chunks_upload_to)
            .ok_or(FileFieldError::NotRegistered(
                chunks_upload_to.unwrap_or_default(),
            ))?;
        let io = |e: UploadError| FileFieldError::Io(io::Error::other(e.to_string()));
        let upload = registry
            .find(key)
            .await
            .map_err(io)?
            .ok_or(FileFieldError::UnknownUpload)?;
        self.finish(registry, scope, &upload).await.map_err(io)?;
        let progress = upload.progress();
        if !progress.complete {
            return Err(FileFieldError::Incomplete {
                received: progress.received,
                total: progress.total_chunks,
            });
        }
        Ok(PendingUpload {
            uploads: self.clone(),
            chunks_upload_to,
            key,
            meta: upload.meta.clone(),
            data_path: registry.store.data_path(&key),
        })
    }

    /// The status of the upload `token` names, for the user of `scope`, in the chunk
    /// directory `chunks_upload_to`: what a form shows again after an error.
    pub async fn upload_status(
        &self,
        scope: &Scope,
        token: &str,
        chunks_upload_to: Option<&str>,
    ) -> Result<UploadStatus, FileFieldError> {
        let key = self.inner.secret.verify(scope, token)?;
        #[cfg(feature = "object-store")]
        if let Some(shared) = self.shared() {
            return self.upload_status_shared(shared, scope, key).await;
        }
        let registry = self
            .registry(chunks_upload_to)
            .ok_or(FileFieldError::UnknownUpload)?;
        let upload = registry
            .find(key)
            .await
            .map_err(|e| FileFieldError::Io(io::Error::other(e.to_string())))?
            .ok_or(FileFieldError::UnknownUpload)?;
        Ok(self.status(scope, &upload))
    }

    /// Removes a saved upload's files from its chunk directory and forgets it: its token
    /// no longer names an upload.
    pub(crate) async fn release(
        &self,
        chunks_upload_to: Option<&str>,
        key: UploadKey,
    ) -> io::Result<()> {
        let Some(registry) = self.registry(chunks_upload_to) else {
            return Ok(());
        };
        registry.forget(key);
        let removed = registry.store.remove(&key).await;
        registry.removed(key);
        if removed.is_ok() {
            self.close_open(chunks_upload_to.and_then(|dir| self.field_dir(dir)), key);
        }
        removed
    }
}
