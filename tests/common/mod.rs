//! Shared test harness: a real server on loopback and a resumable.js-like client.
#![allow(dead_code)]

use axum::{Router, http::request::Parts};
use bytes::Bytes;
use sea_orm_resumable::{
    ChunkParams, CompletedUpload, Scope, Secret, Settings, UploadKey, UploadToken, Uploads,
    UploadsBuilder, router,
};
use sha2::{Digest, Sha256};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};
use tokio::{sync::oneshot, task::JoinHandle};

/// Header the test scope hook reads the user from.
pub const USER_HEADER: &str = "x-test-user";

/// The secret every test server signs with, so tokens survive a restart.
pub fn secret() -> Secret {
    Secret::new(b"test secret, at least sixteen bytes".to_vec()).unwrap()
}

/// Settings for tests: files under `media`, no fsync (tmpfs-like speed).
pub fn settings(media: &Path) -> Settings {
    Settings {
        sync_data: false,
        ..Settings::new(media)
    }
}

/// A running endpoint at `<base>/resumable_upload/`.
pub struct TestServer {
    pub addr: SocketAddr,
    pub url: String,
    pub completions: Arc<Mutex<Vec<CompletedUpload>>>,
    pub uploads: Uploads,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(media: &Path) -> Self {
        Self::start_with(settings(media)).await
    }

    pub async fn start_with(settings: Settings) -> Self {
        Self::start_configured(settings, |builder| builder).await
    }

    /// A server whose upload service the test configures further (fields, …).
    pub async fn start_configured(
        settings: Settings,
        configure: impl FnOnce(UploadsBuilder) -> UploadsBuilder,
    ) -> Self {
        let completions: Arc<Mutex<Vec<CompletedUpload>>> = Arc::default();
        let seen = completions.clone();
        let builder = Uploads::builder(settings, secret())
            .scope(|parts: &Parts| {
                let user = parts.headers.get(USER_HEADER).and_then(|v| v.to_str().ok());
                Some(user.map(Scope::new).unwrap_or_else(Scope::anonymous))
            })
            .on_complete(move |done| seen.lock().unwrap().push(done.clone()));
        let uploads = configure(builder).build().await.unwrap();
        let app = Router::new().nest_service("/resumable_upload", router(uploads.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            url: format!("http://{addr}/resumable_upload/"),
            completions,
            uploads,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Stops accepting, waits for requests under way, and drops the service.
    pub async fn stop(mut self) {
        let _ = self.shutdown.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }

    pub fn completed(&self) -> Vec<CompletedUpload> {
        self.completions.lock().unwrap().clone()
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn sha256_file(path: &Path) -> String {
    sha256(&std::fs::read(path).unwrap())
}

/// Where the completed upload of `identifier` in `scope` is stored.
pub fn data_path(media: &Path, scope: &str, identifier: &str) -> PathBuf {
    let key = UploadKey::derive(&Scope::new(scope), identifier);
    media.join("resumable_chunks").join(format!("{key}.data"))
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// How a client cuts a file.
#[derive(Clone, Copy, Debug)]
pub enum Cut {
    /// resumable.js default: the last chunk takes the remainder.
    Standard,
    /// `forceChunkSize: true`.
    Forced,
}

/// How a chunk travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    Multipart,
    Octet,
}

/// One file being sent by a resumable.js-like client.
#[derive(Clone)]
pub struct FileUpload {
    pub url: String,
    pub http: reqwest::Client,
    pub data: Arc<Vec<u8>>,
    pub chunk_size: u64,
    pub cut: Cut,
    pub identifier: String,
    pub filename: String,
    pub user: Option<String>,
    pub body: Body,
    /// Parameter prefix: "resumable", "flow", or a namespace + "resumable".
    pub prefix: &'static str,
    /// Name of the multipart part holding the chunk.
    pub file_part: &'static str,
    /// The registered model field the upload is for (`<prefix>Field`).
    pub field: Option<String>,
}

impl FileUpload {
    pub fn new(url: &str, data: Vec<u8>, chunk_size: u64) -> Self {
        let identifier = format!("{}-test{}", data.len(), rand::random::<u32>());
        Self {
            url: url.to_owned(),
            http: reqwest::Client::new(),
            data: Arc::new(data),
            chunk_size,
            cut: Cut::Standard,
            identifier,
            filename: "test file.bin".into(),
            user: None,
            body: Body::Multipart,
            prefix: "resumable",
            file_part: "file",
            field: None,
        }
    }

    pub fn chunk_count(&self) -> u64 {
        let (t, c) = (self.data.len() as u64, self.chunk_size);
        match self.cut {
            Cut::Standard => (t / c).max(1),
            Cut::Forced => t.div_ceil(c).max(1),
        }
    }

    /// Byte range of chunk `n` (1-based).
    pub fn range(&self, n: u64) -> std::ops::Range<usize> {
        let start = ((n - 1) * self.chunk_size) as usize;
        let end = if n == self.chunk_count() {
            self.data.len()
        } else {
            start + self.chunk_size as usize
        };
        start..end
    }

    /// The protocol parameters of chunk `n`.
    pub fn params(&self, n: u64) -> Vec<(String, String)> {
        let range = self.range(n);
        let p = self.prefix;
        [
            (format!("{p}ChunkNumber"), n.to_string()),
            (format!("{p}ChunkSize"), self.chunk_size.to_string()),
            (format!("{p}CurrentChunkSize"), range.len().to_string()),
            (format!("{p}TotalSize"), self.data.len().to_string()),
            (format!("{p}Identifier"), self.identifier.clone()),
            (format!("{p}Filename"), self.filename.clone()),
            (format!("{p}RelativePath"), self.filename.clone()),
            (format!("{p}TotalChunks"), self.chunk_count().to_string()),
        ]
        .into_iter()
        .chain(self.field.iter().map(|f| (format!("{p}Field"), f.clone())))
        .collect()
    }

    fn with_user(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.user {
            Some(user) => request.header(USER_HEADER, user),
            None => request,
        }
    }

    /// Sends chunk `n` with these parameters and this body.
    pub async fn send_raw(&self, params: &[(String, String)], bytes: Vec<u8>) -> reqwest::Response {
        let request = match self.body {
            Body::Multipart => {
                let mut form = reqwest::multipart::Form::new();
                for (k, v) in params {
                    form = form.text(k.clone(), v.clone());
                }
                let part = reqwest::multipart::Part::bytes(bytes).file_name("blob");
                self.http
                    .post(&self.url)
                    .multipart(form.part(self.file_part, part))
            }
            Body::Octet => self
                .http
                .post(&self.url)
                .query(params)
                .header("content-type", "application/octet-stream")
                .body(bytes),
        };
        self.with_user(request).send().await.unwrap()
    }

    /// Sends chunk `n`.
    pub async fn send(&self, n: u64) -> reqwest::Response {
        let bytes = self.data[self.range(n)].to_vec();
        self.send_raw(&self.params(n), bytes).await
    }

    /// Sends chunk `n` and checks the answer is 200; returns the JSON body.
    pub async fn send_ok(&self, n: u64) -> serde_json::Value {
        let response = self.send(n).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 200, "chunk {n}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// The test request for chunk `n`: status and body.
    pub async fn test(&self, n: u64) -> (u16, String) {
        let request = self.http.get(&self.url).query(&self.params(n));
        let response = self.with_user(request).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Sends the chunks in `order`, `parallel` at a time.
    pub async fn send_all(&self, order: Vec<u64>, parallel: usize) {
        use futures_util::StreamExt;
        futures_util::stream::iter(order)
            .map(|n| {
                let me = self.clone();
                async move { me.send_ok(n).await }
            })
            .buffer_unordered(parallel)
            .collect::<Vec<_>>()
            .await;
    }

    /// Checks the stored file has the source's bytes (by sha256).
    pub fn assert_stored(&self, media: &Path) {
        let stored = self.stored_path(media);
        assert_eq!(sha256_file(&stored), sha256(&self.data), "{stored:?}");
    }

    /// Where the completed file is stored: by the test user's scope, or (for a browser
    /// scope the test does not know) the one upload in the chunk directory whose
    /// metadata names this identifier.
    pub fn stored_path(&self, media: &Path) -> PathBuf {
        let by_user = data_path(media, self.user.as_deref().unwrap_or(""), &self.identifier);
        if by_user.exists() {
            return by_user;
        }
        let chunks = media.join("resumable_chunks");
        let identifier = serde_json::Value::from(self.identifier.as_str()).to_string();
        let found: Vec<PathBuf> = std::fs::read_dir(&chunks)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| {
                path.extension().is_some_and(|e| e == "meta")
                    && std::fs::read_to_string(path)
                        .is_ok_and(|meta| meta.contains(&format!("\"identifier\":{identifier}")))
            })
            .map(|meta| meta.with_extension("data"))
            .collect();
        match found.as_slice() {
            [one] => one.clone(),
            _ => by_user,
        }
    }
}

/// Every file under `root`, relative to it.
pub fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    found.sort();
    found
}

/// Chunk size of [`upload_direct`].
pub const DIRECT_CHUNK: u64 = 64 * 1024;

/// Uploads `bytes` as `name` through the service itself (no HTTP), in [`DIRECT_CHUNK`]
/// chunks, for `field` if given; returns the token.
pub async fn upload_direct(
    uploads: &Uploads,
    scope: &Scope,
    field: Option<&str>,
    name: &str,
    bytes: &[u8],
) -> UploadToken {
    upload_claiming(uploads, scope, field, name, None, bytes).await
}

/// [`upload_direct`], with the content type the "browser" claims.
pub async fn upload_claiming(
    uploads: &Uploads,
    scope: &Scope,
    field: Option<&str>,
    name: &str,
    claimed_type: Option<&str>,
    bytes: &[u8],
) -> UploadToken {
    let total = bytes.len() as u64;
    let chunks = (total / DIRECT_CHUNK).max(1);
    let identifier = format!("{total}-{name}-{}", uuid::Uuid::new_v4().simple());
    let mut token = None;
    for n in 1..=chunks {
        let start = (n - 1) * DIRECT_CHUNK;
        let end = if n == chunks { total } else { n * DIRECT_CHUNK };
        let params = ChunkParams {
            chunk_number: n,
            chunk_size: DIRECT_CHUNK,
            current_chunk_size: end - start,
            total_size: total,
            identifier: identifier.clone(),
            filename: name.into(),
            relative_path: None,
            content_type: claimed_type.map(str::to_owned),
            file_part: "file".into(),
            field: field.map(str::to_owned),
        };
        let body = Bytes::copy_from_slice(&bytes[start as usize..end as usize]);
        let stream = futures_util::stream::iter([Ok::<_, std::io::Error>(body)]);
        let status = uploads.receive_chunk(scope, &params, stream).await.unwrap();
        token = Some(status.token);
    }
    token.unwrap()
}

/// The bucket of the S3-compatible test server (tests/setup/s3.sh).
pub const TEST_BUCKET: &str = "resumable-test";

/// Credentials of the S3-compatible test server, as environment variables.
pub const TEST_S3_ENV: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "resumable-test"),
    ("AWS_SECRET_ACCESS_KEY", "resumable-test-secret"),
];

/// A client of the test bucket on the S3-compatible server at `endpoint`.
pub fn test_bucket(endpoint: &str) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_bucket_name(TEST_BUCKET)
        .with_region("us-east-1")
        .with_access_key_id(TEST_S3_ENV[0].1)
        .with_secret_access_key(TEST_S3_ENV[1].1)
        .with_virtual_hosted_style_request(false)
        .build()
        .unwrap()
}

/// The sha256 of the object at `key`.
pub async fn object_sha256(store: &dyn object_store::ObjectStore, key: &str) -> String {
    use object_store::ObjectStoreExt;
    let bytes = store
        .get(&object_store::path::Path::parse(key).unwrap())
        .await
        .unwrap_or_else(|e| panic!("{key}: {e}"))
        .bytes()
        .await
        .unwrap();
    sha256(&bytes)
}

/// Every object under `prefix`.
pub async fn objects_under(store: &dyn object_store::ObjectStore, prefix: &str) -> Vec<String> {
    use futures_util::TryStreamExt;
    store
        .list(Some(&object_store::path::Path::from(prefix)))
        .map_ok(|o| o.location.to_string())
        .try_collect()
        .await
        .unwrap()
}
