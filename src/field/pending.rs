//! Completed uploads as a field takes them: [`Uploads::pending_upload`] checks a token
//! and gives the [`PendingUpload`] a model saves; [`UploadsBuilder::field`] registers a
//! field's upload rules with the service.

use std::path::{Path, PathBuf};

use super::{FileFieldError, FileFieldOptions};
use crate::{
    Scope, UploadKey, UploadMeta, UploadStatus, Uploads, UploadsBuilder,
    service::{rules::FieldRules, uploads::chunk_counts},
    storage::upload_store::StoreError,
};

impl UploadsBuilder {
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
    pub fn field<C: FileFieldOptions>(self, name: impl Into<String>) -> Self {
        let rules = FieldRules {
            chunks_upload_to: C::CHUNKS_UPLOAD_TO,
            max_size: C::MAX_SIZE,
            content_types: C::CONTENT_TYPES,
        };
        self.field_rules(name.into(), rules)
    }
}

/// A completed upload, checked and ready to be moved into a model's file field: what
/// [`ResumableFileField::from_token`](crate::ResumableFileField::from_token) holds until the model is saved.
#[derive(Debug)]
pub struct PendingUpload {
    pub(crate) uploads: Uploads,
    pub(crate) chunks_upload_to: Option<&'static str>,
    pub(crate) key: UploadKey,
    pub(crate) meta: UploadMeta,
    pub(crate) data_path: PathBuf,
}

impl PendingUpload {
    /// The upload's key.
    pub fn key(&self) -> UploadKey {
        self.key
    }

    /// What the client said about the file (name, size, type).
    pub fn meta(&self) -> &UploadMeta {
        &self.meta
    }

    /// Where the complete file is now: in the chunk directory (in shared mode, the object
    /// key of the assembled file in the store).
    pub fn data_path(&self) -> &Path {
        &self.data_path
    }

    /// The file's first `n` bytes (fewer if it is shorter), wherever it is kept.
    pub async fn head(&self, n: usize) -> Result<Vec<u8>, FileFieldError> {
        let store = self
            .uploads
            .store(self.chunks_upload_to)
            .ok_or(FileFieldError::UnknownUpload)?;
        store.head(&self.key, n).await.map_err(field_error)
    }
}

impl Uploads {
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
        let store = self
            .store(chunks_upload_to)
            .ok_or(FileFieldError::NotRegistered(
                chunks_upload_to.unwrap_or_default(),
            ))?;
        let meta = store
            .find(&key)
            .await
            .map_err(field_error)?
            .ok_or(FileFieldError::UnknownUpload)?;
        self.finish(store, scope, &key, &meta)
            .await
            .map_err(field_error)?;
        let progress = store.progress(&key).await.map_err(field_error)?;
        if !progress.complete {
            let (received, total) = chunk_counts(&meta, &progress);
            return Err(FileFieldError::Incomplete { received, total });
        }
        Ok(PendingUpload {
            uploads: self.clone(),
            chunks_upload_to,
            key,
            meta,
            data_path: store.location(&key),
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
        let store = self
            .store(chunks_upload_to)
            .ok_or(FileFieldError::UnknownUpload)?;
        let meta = store
            .find(&key)
            .await
            .map_err(field_error)?
            .ok_or(FileFieldError::UnknownUpload)?;
        self.status(store, scope, &key, &meta)
            .await
            .map_err(field_error)
    }
}

/// A store's failure as a form field's error: an upload gone meanwhile is unknown.
fn field_error(e: StoreError) -> FileFieldError {
    match e {
        StoreError::Io(e) if e.kind() == std::io::ErrorKind::NotFound => {
            FileFieldError::UnknownUpload
        }
        StoreError::Busy(_) => FileFieldError::UnknownUpload,
        StoreError::Io(e) => FileFieldError::Io(e),
        other => FileFieldError::Io(std::io::Error::other(other.to_string())),
    }
}
