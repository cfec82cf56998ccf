//! Upload keys and signed upload tokens.
//!
//! The key of an upload is derived from (scope, identifier), so the client's identifier
//! never becomes a path. The token handed to the browser is the key plus an HMAC-SHA256
//! over scope and key with the app's secret: it proves "this scope owns this upload".

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::{fmt, io, path::Path, str::FromStr};

use crate::{Scope, storage::upload_store::UploadKey};

impl UploadKey {
    /// The key of `identifier` in `scope`. Lengths are part of the hash, so no two
    /// (scope, identifier) pairs share an input.
    pub fn derive(scope: &Scope, identifier: &str) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"sea-orm-resumable/upload-key/v1\0");
        for part in [scope.as_str(), identifier] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        let digest = hash.finalize();
        let mut key = [0; 16];
        key.copy_from_slice(&digest[..16]);
        Self::from_bytes(key)
    }
}

impl FromStr for UploadKey {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, TokenError> {
        Self::from_hex(s).ok_or(TokenError::Malformed)
    }
}

/// The app's signing secret. Keep it stable across restarts, or issued tokens stop working.
///
/// ```
/// use sea_orm_resumable::Secret;
/// let secret = Secret::new(b"a long random value from your config".to_vec()).unwrap();
/// assert!(Secret::new(b"short".to_vec()).is_err());
/// # let _ = secret;
/// ```
#[derive(Clone)]
pub struct Secret(Vec<u8>);

/// Fewest bytes a [`Secret`] may have.
pub const MIN_SECRET_BYTES: usize = 16;

impl Secret {
    /// A secret from bytes (at least [`MIN_SECRET_BYTES`]).
    pub fn new(bytes: Vec<u8>) -> Result<Self, io::Error> {
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the secret must have at least {MIN_SECRET_BYTES} bytes"),
            ));
        }
        Ok(Self(bytes))
    }

    /// 32 fresh random bytes.
    pub fn generate() -> Self {
        Self(rand::random::<[u8; 32]>().to_vec())
    }

    /// Reads the secret kept in `path`, or generates one and writes it there (mode 0600
    /// on Unix) so that it survives restarts.
    ///
    /// ```
    /// use sea_orm_resumable::Secret;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("secret");
    /// let first = Secret::load_or_generate(&path).await.unwrap();
    /// let again = Secret::load_or_generate(&path).await.unwrap();
    /// assert!(first == again);
    /// # });
    /// ```
    pub async fn load_or_generate(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        match tokio::fs::read_to_string(path).await {
            Ok(text) => {
                let bytes = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, "the secret file is not base64")
                })?;
                Self::new(bytes)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let secret = Self::generate();
                if let Some(dir) = path.parent() {
                    tokio::fs::create_dir_all(dir).await?;
                }
                let tmp = path.with_extension("tmp");
                let mut options = tokio::fs::OpenOptions::new();
                options.write(true).create(true).truncate(true);
                #[cfg(unix)]
                options.mode(0o600);
                let mut file = options.open(&tmp).await?;
                tokio::io::AsyncWriteExt::write_all(
                    &mut file,
                    URL_SAFE_NO_PAD.encode(&secret.0).as_bytes(),
                )
                .await?;
                file.sync_all().await?;
                tokio::fs::rename(&tmp, path).await?;
                Ok(secret)
            }
            Err(e) => Err(e),
        }
    }

    fn mac(&self, scope: &Scope, key: &UploadKey) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"sea-orm-resumable/upload-token/v1\0");
        mac.update(&(scope.as_str().len() as u64).to_be_bytes());
        mac.update(scope.as_str().as_bytes());
        mac.update(key.as_bytes());
        mac
    }

    /// The tag that proves this server gave out the browser id `id` (base64url).
    pub(crate) fn browser_tag(&self, id: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"sea-orm-resumable/browser-scope/v1\0");
        mac.update(id.as_bytes());
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
    }

    /// Whether `tag` is [`browser_tag`](Self::browser_tag) of `id` (in constant time).
    pub(crate) fn verify_browser_tag(&self, id: &str, tag: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"sea-orm-resumable/browser-scope/v1\0");
        mac.update(id.as_bytes());
        tag.len() == 16 && mac.verify_truncated_left(&tag).is_ok()
    }

    /// The token that proves `scope` owns the upload `key`.
    pub fn sign(&self, scope: &Scope, key: &UploadKey) -> UploadToken {
        let tag = self.mac(scope, key).finalize().into_bytes();
        UploadToken(format!("{key}.{}", URL_SAFE_NO_PAD.encode(tag)))
    }

    /// The upload key in `token`, if the token was signed with this secret for `scope`.
    ///
    /// ```
    /// use sea_orm_resumable::{Scope, Secret, UploadKey};
    /// let secret = Secret::generate();
    /// let key = UploadKey::derive(&Scope::new("alice"), "id");
    /// let token = secret.sign(&Scope::new("alice"), &key);
    /// assert_eq!(secret.verify(&Scope::new("alice"), token.as_str()).unwrap(), key);
    /// assert!(secret.verify(&Scope::new("bob"), token.as_str()).is_err());
    /// ```
    pub fn verify(&self, scope: &Scope, token: &str) -> Result<UploadKey, TokenError> {
        let (key, tag) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let key: UploadKey = key.parse()?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Malformed)?;
        self.mac(scope, &key)
            .verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        Ok(key)
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        // Only for tests and config checks; not on a request path.
        self.0 == other.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A signed upload token, as sent to the browser in every 200 answer about an upload:
/// `<upload key>.<HMAC-SHA256, base64url>`.
///
/// ```
/// use sea_orm_resumable::{Scope, Secret, UploadKey};
/// let secret = Secret::generate();
/// let token = secret.sign(&Scope::anonymous(), &UploadKey::derive(&Scope::anonymous(), "id"));
/// let (key, signature) = token.as_str().split_once('.').unwrap();
/// assert_eq!((key.len(), signature.len()), (32, 43));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct UploadToken(String);

impl UploadToken {
    /// The token's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UploadToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a token was refused.
///
/// ```
/// use sea_orm_resumable::{Scope, Secret, TokenError};
/// let secret = Secret::generate();
/// assert_eq!(secret.verify(&Scope::anonymous(), "no dot here"), Err(TokenError::Malformed));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not of the form `<key>.<signature>`.
    #[error("the upload token is malformed")]
    Malformed,
    /// Signed with another secret, for another scope, or altered.
    #[error("the upload token is not valid for this user")]
    BadSignature,
}
