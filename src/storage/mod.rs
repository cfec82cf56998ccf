//! Where the files of [`ResumableFileField`](crate::ResumableFileField)s live, once saved
//! (the `RESUMABLE_STORAGE` of django2-resumable): a [`FileStorage`]. Two are built in:
//!
//! * [`Media`] — a local directory (the default): files at `<media root>/<path>`, served
//!   by the app under the media URL;
//! * [`ObjectFiles`](object::ObjectFiles) (feature `object-store`) — a bucket on S3, GCS,
//!   Azure or any S3-compatible server through the `object_store` crate: the stored path
//!   *is* the object key, and [`FileStorage::url`] is a presigned URL.
//!
//! Both go with their kind of upload service: [`Uploads::storage`](crate::Uploads::storage)
//! gives the one an app's uploads are saved into.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use sea_orm_resumable::{Media, storage::FileStorage};
//! use std::time::Duration;
//! let root = tempfile::tempdir().unwrap();
//! std::fs::create_dir_all(root.path().join("docs")).unwrap();
//! std::fs::write(root.path().join("docs/a.txt"), "hello").unwrap();
//! let media = Media::new(root.path(), "/media/");
//! assert_eq!(media.size("docs/a.txt").await.unwrap(), 5);
//! // `Media` has a plain `url` of its own; the trait's takes a lifetime, for presigned URLs.
//! let url = FileStorage::url(&media, "docs/a.txt", Duration::from_secs(60)).await.unwrap();
//! assert_eq!(url, "/media/docs/a.txt");
//! media.delete("docs/a.txt").await.unwrap();
//! assert!(!media.exists("docs/a.txt").await.unwrap());
//! # });
//! ```

pub(crate) mod ledger;
pub(crate) mod local;
pub mod media;
#[cfg(feature = "object-store")]
pub mod object;
pub(crate) mod quotas;
#[cfg(all(test, feature = "object-store"))]
mod suite;
pub(crate) mod upload_store;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream::BoxStream};
use std::{io, time::Duration};

use crate::Media;

/// A file's bytes, streamed.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// Stored files by path (relative, `/`-separated, as a file column holds it). Every
/// method refuses a path that is not plain ([`crate::storage::media::check_relative`]) or lies in
/// a private directory (the chunks), with [`io::ErrorKind::InvalidInput`]; a missing file
/// is [`io::ErrorKind::NotFound`].
#[async_trait::async_trait]
pub trait FileStorage: std::fmt::Debug + Send + Sync {
    /// Whether a file is stored at `path`.
    async fn exists(&self, path: &str) -> io::Result<bool>;
    /// The size in bytes of the file at `path`.
    async fn size(&self, path: &str) -> io::Result<u64>;
    /// The bytes of the file at `path`.
    async fn read(&self, path: &str) -> io::Result<ByteStream>;
    /// A URL a browser can fetch the file from: presigned, valid for `expires_in`, where
    /// the store can sign; the app's own media URL for a local directory.
    async fn url(&self, path: &str, expires_in: Duration) -> io::Result<String>;
    /// Deletes the file at `path` (no error if it is gone already).
    async fn delete(&self, path: &str) -> io::Result<()>;
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

#[async_trait::async_trait]
impl FileStorage for Media {
    async fn exists(&self, path: &str) -> io::Result<bool> {
        tokio::fs::try_exists(self.path(path).map_err(invalid)?).await
    }

    async fn size(&self, path: &str) -> io::Result<u64> {
        Ok(tokio::fs::metadata(self.path(path).map_err(invalid)?)
            .await?
            .len())
    }

    async fn read(&self, path: &str) -> io::Result<ByteStream> {
        let file = tokio::fs::File::open(self.path(path).map_err(invalid)?).await?;
        Ok(tokio_util::io::ReaderStream::with_capacity(file, 256 << 10).boxed())
    }

    async fn url(&self, path: &str, _expires_in: Duration) -> io::Result<String> {
        Media::url(self, path).map_err(invalid)
    }

    async fn delete(&self, path: &str) -> io::Result<()> {
        match tokio::fs::remove_file(self.path(path).map_err(invalid)?).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

/// Reads a whole stored file into memory (for small files and tests).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// # let root = tempfile::tempdir().unwrap();
/// # std::fs::write(root.path().join("a.txt"), "hi").unwrap();
/// let media = sea_orm_resumable::Media::new(root.path(), "/media/");
/// assert_eq!(sea_orm_resumable::storage::read_all(&media, "a.txt").await.unwrap(), b"hi");
/// # });
/// ```
pub async fn read_all(storage: &(impl FileStorage + ?Sized), path: &str) -> io::Result<Vec<u8>> {
    storage
        .read(path)
        .await?
        .try_fold(Vec::new(), |mut all, piece| async move {
            all.extend_from_slice(&piece);
            Ok(all)
        })
        .await
}
