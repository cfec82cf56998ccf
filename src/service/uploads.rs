//! [`Uploads`]: the upload service an app builds once and shares — the endpoint's state,
//! and later what forms and model fields ask about completed uploads.

use axum::http::request::Parts;
use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use serde::Serialize;
use std::{collections::HashMap, io, path::PathBuf, sync::Arc, time::SystemTime};

use crate::{
    ChunkParams, Media, Scope, ScopeResolver, Secret, Settings, UploadError, UploadKey,
    UploadToken,
    service::layout::{ChunkPlace, Layout, Mode},
    service::pace::{BodyPace, Cut, drain, paced},
    service::rules::FieldRules,
    service::scope::{BrowserId, BrowserScope},
    service::sniff::{SNIFF_BYTES, peek},
    storage::media::check_relative,
    storage::quotas::Quotas,
    storage::{
        FileStorage,
        local::LocalUploads,
        upload_store::{Body, Commit, Finish, StoreError, UploadMeta, UploadStore, Write},
    },
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
    /// Where uploads are kept (chosen once, by the builder): the default chunk
    /// directory's store, and each field's own (`CHUNKS_UPLOAD_TO`), by that directory.
    stores: Stores,
    /// Registered field names, with their chunk directory (`None`: the default one).
    fields: HashMap<String, FieldRules>,
    /// The media root with every chunk directory private (resolved once: it looks at
    /// the file system).
    media: Media,
    /// Where saved files are: the media root, or the object store.
    files: Arc<dyn FileStorage>,
    /// Chunks and files on object storage, for the model fields' saves.
    #[cfg(feature = "object-store")]
    pub(crate) shared: Option<crate::storage::object::ObjectStorage>,
}

/// The upload stores of a service.
struct Stores {
    /// The default chunk directory's.
    default: Arc<dyn UploadStore>,
    /// Each field directory's.
    fields: HashMap<&'static str, Arc<dyn UploadStore>>,
    /// The store of a directory no field registered: none on local files (a field's
    /// uploads go to its own directory), the one store on object storage (one prefix
    /// for all).
    unregistered: Option<Arc<dyn UploadStore>>,
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
    pub(crate) shared: Option<crate::storage::object::ObjectStorage>,
}

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

    /// Registers the upload rules of a model file field under `name` (see
    /// [`field`](Self::field), which reads them from the field's options).
    pub(crate) fn field_rules(mut self, name: String, rules: FieldRules) -> Self {
        self.fields.insert(name, rules);
        self
    }

    /// Opens the upload stores (on local files: the chunk directories, created if
    /// missing, counting the uploads already there) and returns the service.
    pub async fn build(self) -> io::Result<Uploads> {
        let mut dirs: Vec<&'static str> = Vec::new();
        for dir in self.fields.values().filter_map(|f| f.chunks_upload_to) {
            check_relative(dir).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        let media = dirs
            .iter()
            .fold(self.settings.media(), |media, dir| media.with_private(dir));
        let s = &self.settings;
        let quotas = Arc::new(Quotas::new(
            (s.max_open_uploads, s.max_scope_bytes),
            (s.max_client_uploads, s.max_client_bytes),
            (s.max_total_uploads, s.max_total_bytes),
        ));
        let (stores, files) = self.stores(&dirs, quotas, &media).await?;
        Ok(Uploads {
            inner: Arc::new(Inner {
                settings: self.settings,
                secret: self.secret,
                scope: self.scope,
                client_address: self.client_address,
                on_complete: self.on_complete,
                stores,
                media,
                files,
                fields: self.fields,
                #[cfg(feature = "object-store")]
                shared: self.shared,
            }),
        })
    }

    /// The one place the storage is chosen: the object store when one was given, else
    /// local files (one store per chunk directory).
    async fn stores(
        &self,
        dirs: &[&'static str],
        quotas: Arc<Quotas>,
        media: &Media,
    ) -> io::Result<(Stores, Arc<dyn FileStorage>)> {
        #[cfg(feature = "object-store")]
        if let Some(shared) = &self.shared {
            let store: Arc<dyn UploadStore> = Arc::new(crate::storage::object::ObjectUploads::new(
                shared.chunks.clone(),
                quotas,
            ));
            let stores = Stores {
                fields: dirs.iter().map(|dir| (*dir, store.clone())).collect(),
                unregistered: Some(store.clone()),
                default: store,
            };
            return Ok((stores, Arc::new(shared.files.clone())));
        }
        let settings = &self.settings;
        let local = |path: PathBuf, dir: Option<&'static str>| {
            let quotas = quotas.clone();
            async move {
                let store = LocalUploads::open(
                    path,
                    dir,
                    settings.sync_data,
                    quotas,
                    settings.body_idle_timeout,
                )
                .await?;
                Ok::<_, io::Error>(Arc::new(store) as Arc<dyn UploadStore>)
            }
        };
        let mut fields = HashMap::new();
        for dir in dirs {
            fields.insert(
                *dir,
                local(settings.media_root.join(dir), Some(*dir)).await?,
            );
        }
        let stores = Stores {
            default: local(settings.chunk_dir(), None).await?,
            fields,
            unregistered: None,
        };
        Ok((stores, Arc::new(media.clone())))
    }
}

#[cfg(feature = "object-store")]
impl UploadsBuilder {
    /// Keeps uploads and saved files on object storage, with which chunks are in kept
    /// in the app's database ([`ObjectStorage`](crate::storage::object::ObjectStorage)):
    /// every server built with the same store and database serves the same uploads.
    /// The media root is then not used for uploads, nor are the fields'
    /// `CHUNKS_UPLOAD_TO` (one prefix for all). The upload quotas count what the database
    /// holds, for every server together.
    pub fn object_storage(mut self, storage: crate::storage::object::ObjectStorage) -> Self {
        let files = storage.private_files();
        self.shared = Some(crate::storage::object::ObjectStorage { files, ..storage });
        self
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
    pub fn storage(&self) -> Arc<dyn FileStorage> {
        self.inner.files.clone()
    }

    /// Whether chunks and files are on object storage, shared by several servers
    /// ([`UploadsBuilder::object_storage`]).
    pub fn is_shared(&self) -> bool {
        #[cfg(feature = "object-store")]
        return self.inner.shared.is_some();
        #[cfg(not(feature = "object-store"))]
        false
    }

    /// Chunks and files on object storage, for the model fields' saves.
    #[cfg(feature = "object-store")]
    pub(crate) fn shared(&self) -> Option<&crate::storage::object::ObjectStorage> {
        self.inner.shared.as_ref()
    }

    /// The media root and URL, with every chunk directory marked private.
    pub fn media(&self) -> Media {
        self.inner.media.clone()
    }

    /// Every upload store once, with its chunk directory (`None`: the default one).
    pub(crate) fn stores(&self) -> Vec<(Option<&'static str>, &Arc<dyn UploadStore>)> {
        let stores = &self.inner.stores;
        let mut all = vec![(None, &stores.default)];
        for (dir, store) in &stores.fields {
            if !all.iter().any(|(_, known)| Arc::ptr_eq(known, store)) {
                all.push((Some(*dir), store));
            }
        }
        all
    }

    /// Every local chunk directory (the default one and the fields' own).
    pub(crate) fn chunk_dirs(&self) -> Vec<PathBuf> {
        let settings = &self.inner.settings;
        std::iter::once(settings.chunk_dir())
            .chain(
                self.inner
                    .stores
                    .fields
                    .keys()
                    .map(|dir| settings.media_root.join(dir)),
            )
            .collect()
    }

    /// The uploads of a chunk directory: a field's own (`CHUNKS_UPLOAD_TO`) or the default.
    pub(crate) fn store(&self, chunks_upload_to: Option<&str>) -> Option<&Arc<dyn UploadStore>> {
        let stores = &self.inner.stores;
        match chunks_upload_to {
            None => Some(&stores.default),
            Some(dir) => stores.fields.get(dir).or(stores.unregistered.as_ref()),
        }
    }

    /// The uploads a request is about, by the field it names, with the field's rules.
    fn store_for(
        &self,
        params: &ChunkParams,
    ) -> Result<(FieldRules, &Arc<dyn UploadStore>), UploadError> {
        let rules =
            match &params.field {
                None => FieldRules::NONE,
                Some(name) => *self.inner.fields.get(name).ok_or_else(|| {
                    UploadError::BadRequest(format!("unknown upload field {name:?}"))
                })?,
            };
        self.store(rules.chunks_upload_to)
            .map(|store| (rules, store))
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

    /// A store's refusal or failure as the answer to the request for chunk `number`.
    fn chunk_error(number: u64, e: StoreError) -> UploadError {
        match e {
            StoreError::Overlap(_) => UploadError::BadRequest(format!(
                "chunk {number} disagrees with earlier chunks of this upload on where the \
                 file ends"
            )),
            StoreError::Busy(e) => UploadError::Retry(e),
            StoreError::Io(e) => UploadError::Unavailable(e),
            other => UploadError::BadRequest(other.to_string()),
        }
    }

    /// The status of an upload of `store`.
    pub(crate) async fn status(
        &self,
        store: &Arc<dyn UploadStore>,
        scope: &Scope,
        key: &UploadKey,
        meta: &UploadMeta,
    ) -> Result<UploadStatus, StoreError> {
        let progress = store.progress(key).await?;
        let (chunks_received, total_chunks) = chunk_counts(meta, &progress);
        Ok(UploadStatus {
            token: self.inner.secret.sign(scope, key),
            complete: progress.complete,
            chunks_received,
            total_chunks,
            size: meta.total_size,
            file_name: meta.file_name.clone(),
        })
    }

    /// Completes the upload if every byte is in, and tells the hooks if this call did it.
    pub(crate) async fn finish(
        &self,
        store: &Arc<dyn UploadStore>,
        scope: &Scope,
        key: &UploadKey,
        meta: &UploadMeta,
    ) -> Result<(), StoreError> {
        if store.complete(key).await? == Finish::JustCompleted {
            tracing::info!(%key, size = meta.total_size, "upload complete");
            if !self.inner.on_complete.is_empty() {
                let done = CompletedUpload {
                    key: *key,
                    scope: scope.clone(),
                    token: self.inner.secret.sign(scope, key),
                    meta: meta.clone(),
                    path: store.location(key),
                };
                for hook in &self.inner.on_complete {
                    hook(&done);
                }
            }
        }
        Ok(())
    }

    /// The layout of the request's file and the place of its chunk, checked.
    fn place(&self, params: &ChunkParams) -> Result<ChunkPlace, UploadError> {
        self.layout(params)?
            .place(params.chunk_number, params.current_chunk_size)
            .map_err(|e| UploadError::BadRequest(e.to_string()))
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
        let place = self.place(params)?;
        let (rules, store) = self.store_for(params)?;
        rules.check_size(params.total_size)?;
        let number = params.chunk_number;
        let key = UploadKey::derive(scope, &params.identifier);
        let Some(meta) = store
            .find(&key)
            .await
            .map_err(|e| Self::chunk_error(number, e))?
        else {
            return Ok(None);
        };
        Self::check_sizes(&meta, params)?;
        let answer = async {
            // Finishes an upload whose completion was cut short (a crash, a full disk, a
            // server that died while assembling it).
            self.finish(store, scope, &key, &meta).await?;
            if store
                .has(&key, place.offset..place.offset + place.len)
                .await?
            {
                self.status(store, scope, &key, &meta).await.map(Some)
            } else {
                Ok(None)
            }
        };
        answer.await.map_err(|e| Self::chunk_error(number, e))
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
        let place = self.place(params)?;
        let (rules, store) = self.store_for(params)?;
        rules.check_size(params.total_size)?;
        let number = params.chunk_number;
        let mut body: Body<'_> = body.map_err(|e| io::Error::other(e.to_string())).boxed();
        if place.offset == 0 && !rules.content_types.is_empty() {
            // The file's first bytes are checked before anything is stored.
            let head;
            (head, body) = peek(body, SNIFF_BYTES.min(place.len as usize)).await;
            if let Some(reason) = cut.get() {
                // Too slow to show its type: the client may try again.
                return Err(UploadError::Retry(reason.to_string()));
            }
            if let Err(e) = rules.check_head(&head) {
                drain(body, place.len, self.pace()).await;
                return Err(e);
            }
        }
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
        let meta = store
            .open(&key, &meta)
            .await
            .map_err(|e| Self::chunk_error(number, e))?;
        Self::check_sizes(&meta, params)?;
        let range = place.offset..place.offset + place.len;
        match store.write(&key, range, &mut body, Commit::Whole).await {
            // A duplicate gets the same time as a chunk that is written.
            Ok(Write::Stored) => drain(body, place.len, self.pace()).await,
            Ok(Write::Wrote(_)) => {}
            Err(e) => {
                return Err(match cut.get() {
                    // Too slow or stalled: the client may send the chunk again.
                    Some(slow) => UploadError::Retry(slow.to_string()),
                    None => Self::chunk_error(number, e),
                });
            }
        }
        let answer = async {
            self.finish(store, scope, &key, &meta).await?;
            self.status(store, scope, &key, &meta).await
        };
        answer.await.map_err(|e| Self::chunk_error(number, e))
    }

    /// Removes a saved upload's files from its chunk directory and forgets it: its token
    /// no longer names an upload.
    pub(crate) async fn release(
        &self,
        chunks_upload_to: Option<&str>,
        key: UploadKey,
    ) -> io::Result<()> {
        let Some(store) = self.store(chunks_upload_to) else {
            return Ok(());
        };
        store.remove(&key).await.map_err(|e| match e {
            StoreError::Io(e) => e,
            other => io::Error::other(other.to_string()),
        })
    }
}

/// Chunks received and chunks in the whole file, as the answers count them: which of the
/// client's two ways of cutting the file it uses shows once one of the chunks that tell
/// them apart is the furthest in (or every byte is).
pub(crate) fn chunk_counts(
    meta: &UploadMeta,
    progress: &crate::storage::upload_store::Progress,
) -> (u64, u64) {
    if progress.complete {
        return (progress.ranges, progress.ranges);
    }
    let Ok(layout) = Layout::new(meta.total_size, meta.chunk_size) else {
        return (progress.ranges, progress.ranges);
    };
    let mode = progress
        .last
        .as_ref()
        .and_then(|last| {
            let number = last.start / meta.chunk_size.max(1) + 1;
            layout.place(number, last.end - last.start).ok()?.implies
        })
        .unwrap_or(Mode::Standard);
    (
        progress.ranges,
        layout.chunk_count(mode).max(progress.ranges),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(number: u64, len: u64) -> ChunkParams {
        ChunkParams {
            chunk_number: number,
            chunk_size: 10,
            current_chunk_size: len,
            total_size: 25,
            identifier: "25-counts".into(),
            filename: "counts.bin".into(),
            relative_path: None,
            content_type: None,
            file_part: "file".into(),
            field: None,
        }
    }

    async fn send(uploads: &Uploads, number: u64, len: u64) -> UploadStatus {
        let body =
            futures_util::stream::iter([Ok::<_, io::Error>(Bytes::from(vec![b'x'; len as usize]))]);
        uploads
            .receive_chunk(&Scope::new("u"), &chunk(number, len), body)
            .await
            .unwrap()
    }

    /// 25 bytes in chunks of 10: two chunks (10 + 15) by default, three (10 + 10 + 5) with
    /// `forceChunkSize`. Answers count the chunks of the way the client cuts the file as
    /// soon as a chunk shows it.
    #[tokio::test]
    async fn answers_count_the_chunks_of_the_clients_way_of_cutting_the_file() {
        for (forced, total) in [(true, 3), (false, 2)] {
            let media = tempfile::tempdir().unwrap();
            let uploads = Uploads::builder(Settings::new(media.path()), Secret::generate())
                .build()
                .await
                .unwrap();
            let first = send(&uploads, 1, 10).await;
            assert_eq!(
                (first.chunks_received, first.total_chunks),
                (1, 2),
                "not told yet"
            );
            let second = send(&uploads, 2, if forced { 10 } else { 15 }).await;
            assert_eq!((second.chunks_received, second.total_chunks), (2, total));
            assert_eq!(second.complete, !forced);
            if forced {
                let last = send(&uploads, 3, 5).await;
                assert!(last.complete && last.total_chunks == 3);
            }
        }
    }
}
