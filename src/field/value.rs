//! The column value: a stored file's relative path, or an upload waiting to be saved.

use sea_orm::{
    ColIdx, DbErr, QueryResult, TryGetError, TryGetable, Value,
    sea_query::{ArrayType, ColumnType, Nullable, StringLen, ValueType, ValueTypeErr},
};
use std::{fmt, io, marker::PhantomData, path::PathBuf, sync::Arc};

use super::{FileFieldOptions, PendingUpload};
use crate::{Media, TokenError, storage::media::PathError};

/// A file column of a sea-orm entity: one varchar holding the stored file's path,
/// relative to the media root. `ResumableFileField<Options>` is NOT NULL,
/// `Option<ResumableFileField<Options>>` nullable; `Options` ([`FileFieldOptions`]) says
/// where files go and the column's length.
///
/// A value is either *stored* (read from a row, or [`stored`](Self::stored) from a known
/// path) or *pending*: a completed upload ([`from_token`](Self::from_token)) that the save
/// hooks ([`file_field_hooks!`](crate::file_field_hooks)) move into place when the model is
/// inserted or updated. A pending value written by a save that skips the hooks
/// (`Entity::insert(..).exec(..)`) becomes SQL `NULL`, so a NOT NULL column refuses the
/// row; it never writes a path that has no file.
///
/// ```
/// use sea_orm_resumable::{Media, ResumableFileField};
/// # sea_orm_resumable::file_field! { pub struct Docs {} }
/// let file = ResumableFileField::<Docs>::stored("docs/report.pdf");
/// assert_eq!(file.path(), Some("docs/report.pdf"));
/// let media = Media::new("/srv/media", "/media/");
/// assert_eq!(file.url(&media).unwrap(), "/media/docs/report.pdf");
/// ```
pub struct ResumableFileField<C> {
    state: State,
    options: PhantomData<fn() -> C>,
}

#[derive(Clone)]
enum State {
    Stored(String),
    Pending(Arc<PendingUpload>),
}

/// Why a file field value could not be made or used; every message is a sentence a form
/// can show.
#[derive(Debug, thiserror::Error)]
pub enum FileFieldError {
    /// The upload token is malformed, forged or from another scope.
    #[error("the upload token is not valid: {0}")]
    Token(#[from] TokenError),
    /// No such upload here: expired, already saved to a row, or made for another field.
    #[error(
        "this upload no longer exists (it was already saved, has expired, or was made for another field); please upload the file again"
    )]
    UnknownUpload,
    /// The field's chunk directory was not registered with the upload service.
    #[error(
        "the upload field with chunk directory {0:?} is not registered (UploadsBuilder::field)"
    )]
    NotRegistered(&'static str),
    /// The form's file input was left empty on a required field.
    #[error("please upload a file")]
    Required,
    /// The file is larger than the field allows.
    #[error("the file is too large ({size} bytes; at most {max} bytes are allowed)")]
    TooLarge {
        /// The file's size.
        size: u64,
        /// The field's limit.
        max: u64,
    },
    /// The file's content (its first bytes) is not of an allowed type.
    #[error("this file's content is {found}, which is not allowed here (allowed: {})", allowed.join(", "))]
    ContentType {
        /// The type found from the file's first bytes.
        found: String,
        /// The field's allowed types.
        allowed: Vec<String>,
    },
    /// Some chunks are still missing.
    #[error("the upload is not complete yet ({received} of {total} chunks received)")]
    Incomplete {
        /// Chunks in.
        received: u64,
        /// Chunks in the file.
        total: u64,
    },
    /// The value is an upload not yet saved, so it has no path.
    #[error("the file is not stored yet: save the model first")]
    NotStored,
    /// The path is unsafe.
    #[error(transparent)]
    Path(#[from] PathError),
    /// A file system error (the upload's files could not be read).
    #[error("the uploaded file could not be read ({0}); please try again")]
    Io(#[from] io::Error),
}

impl<C: FileFieldOptions> ResumableFileField<C> {
    /// A value referring to a file already stored at `relative_path` (relative to the
    /// media root). Saving checks the path is plain (no `..`, not absolute); the file
    /// itself is not looked at, and a path into a chunk directory is stored but never
    /// opened or linked ([`Media`] refuses private directories).
    pub fn stored(relative_path: impl Into<String>) -> Self {
        Self::with_state(State::Stored(relative_path.into()))
    }

    /// A value for a completed upload, to be moved into place when the model is saved.
    pub fn pending(upload: PendingUpload) -> Self {
        Self::with_state(State::Pending(Arc::new(upload)))
    }

    /// The completed upload an upload token names, for the user of `scope`: checks the
    /// signature, the scope, that the upload exists in this field's chunk directory and
    /// that every chunk is in.
    ///
    /// ```no_run
    /// # use sea_orm_resumable::{ResumableFileField, Scope, Uploads};
    /// # sea_orm_resumable::file_field! { pub struct Docs {} }
    /// # async fn f(uploads: Uploads, token: &str) -> Result<(), sea_orm_resumable::FileFieldError> {
    /// let file = ResumableFileField::<Docs>::from_token(&uploads, &Scope::anonymous(), token).await?;
    /// // document::ActiveModel { file: Set(file), .. }.insert(&db).await?;
    /// # Ok(()) }
    /// ```
    pub async fn from_token(
        uploads: &crate::Uploads,
        scope: &crate::Scope,
        token: &str,
    ) -> Result<Self, FileFieldError> {
        let upload = uploads
            .pending_upload(scope, token, C::CHUNKS_UPLOAD_TO)
            .await?;
        Ok(Self::pending(upload))
    }

    fn with_state(state: State) -> Self {
        Self {
            state,
            options: PhantomData,
        }
    }

    /// The stored path relative to the media root (the column's value); `None` while the
    /// value is a pending upload.
    pub fn path(&self) -> Option<&str> {
        match &self.state {
            State::Stored(path) => Some(path),
            State::Pending(_) => None,
        }
    }

    /// The pending upload, if the value is one.
    pub fn pending_upload(&self) -> Option<&PendingUpload> {
        match &self.state {
            State::Stored(_) => None,
            State::Pending(upload) => Some(upload),
        }
    }

    fn stored_path(&self) -> Result<&str, FileFieldError> {
        self.path().ok_or(FileFieldError::NotStored)
    }

    /// The stored file's location on disk.
    pub fn file_path(&self, media: &Media) -> Result<PathBuf, FileFieldError> {
        Ok(media.path(self.stored_path()?)?)
    }

    /// The URL of the stored file under the media URL.
    pub fn url(&self, media: &Media) -> Result<String, FileFieldError> {
        Ok(media.url(self.stored_path()?)?)
    }

    /// Opens the stored file for reading.
    pub async fn open(&self, media: &Media) -> Result<tokio::fs::File, FileFieldError> {
        Ok(tokio::fs::File::open(self.file_path(media)?).await?)
    }

    /// The stored file's size in bytes (for a pending upload: the upload's size).
    pub async fn size(&self, media: &Media) -> Result<u64, FileFieldError> {
        match &self.state {
            State::Pending(upload) => Ok(upload.meta().total_size),
            State::Stored(_) => Ok(tokio::fs::metadata(self.file_path(media)?).await?.len()),
        }
    }

    /// Deletes the stored file. The row still holds the path: set the column to another
    /// value (or delete the row) yourself.
    pub async fn delete(&self, media: &Media) -> Result<(), FileFieldError> {
        Ok(tokio::fs::remove_file(self.file_path(media)?).await?)
    }

    /// A URL of the stored file in `storage` ([`crate::Uploads::storage`]): on object
    /// storage a presigned URL valid for `expires_in`, locally the media URL.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use sea_orm_resumable::{Media, ResumableFileField};
    /// sea_orm_resumable::file_field! { pub struct Docs {} }
    /// let file = ResumableFileField::<Docs>::stored("docs/a.pdf");
    /// let media = Media::new("/srv/media", "/media/");
    /// let url = file.url_in(&media, std::time::Duration::from_secs(300)).await.unwrap();
    /// assert_eq!(url, "/media/docs/a.pdf");
    /// # });
    /// ```
    pub async fn url_in(
        &self,
        storage: &(impl crate::storage::FileStorage + ?Sized),
        expires_in: std::time::Duration,
    ) -> Result<String, FileFieldError> {
        Ok(storage.url(self.stored_path()?, expires_in).await?)
    }

    /// The stored file's bytes from `storage` ([`crate::Uploads::storage`]), streamed.
    pub async fn read_in(
        &self,
        storage: &(impl crate::storage::FileStorage + ?Sized),
    ) -> Result<crate::storage::ByteStream, FileFieldError> {
        Ok(storage.read(self.stored_path()?).await?)
    }
}

impl<C> Clone for ResumableFileField<C> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            options: PhantomData,
        }
    }
}

impl<C> fmt::Debug for ResumableFileField<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            State::Stored(path) => f.debug_tuple("Stored").field(path).finish(),
            State::Pending(upload) => f.debug_tuple("Pending").field(&upload.key()).finish(),
        }
    }
}

impl<C> PartialEq for ResumableFileField<C> {
    fn eq(&self, other: &Self) -> bool {
        match (&self.state, &other.state) {
            (State::Stored(a), State::Stored(b)) => a == b,
            (State::Pending(a), State::Pending(b)) => a.key() == b.key(),
            _ => false,
        }
    }
}

impl<C> Eq for ResumableFileField<C> {}

/// As its stored path (`null` while pending), so models that derive `Serialize` (Loco's
/// do) render the column as sea-orm renders a string column.
impl<C> serde::Serialize for ResumableFileField<C> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.state {
            State::Stored(path) => serializer.serialize_str(path),
            State::Pending(_) => serializer.serialize_none(),
        }
    }
}

/// From a stored path, as [`ResumableFileField::stored`]: saving checks it is a plain
/// relative path. Never turn untrusted input into a stored path: a form should carry an
/// upload token instead.
impl<'de, C> serde::Deserialize<'de> for ResumableFileField<C> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::stored_unchecked)
    }
}

impl<C> From<ResumableFileField<C>> for Value {
    /// The stored path; `NULL` for a pending upload (see the type's docs).
    fn from(field: ResumableFileField<C>) -> Self {
        match field.state {
            State::Stored(path) => Value::String(Some(path)),
            State::Pending(upload) => {
                tracing::error!(
                    key = %upload.key(),
                    "a pending upload was written without the ResumableFileField save hooks \
                     (Entity::insert/update .exec?): writing NULL instead of a path"
                );
                Value::String(None)
            }
        }
    }
}

impl<C: FileFieldOptions> TryGetable for ResumableFileField<C> {
    fn try_get_by<I: ColIdx>(res: &QueryResult, index: I) -> Result<Self, TryGetError> {
        String::try_get_by(res, index).map(Self::stored)
    }
}

impl<C: FileFieldOptions> ValueType for ResumableFileField<C> {
    fn try_from(v: Value) -> Result<Self, ValueTypeErr> {
        <String as ValueType>::try_from(v).map(Self::stored)
    }

    fn type_name() -> String {
        "ResumableFileField".to_owned()
    }

    fn array_type() -> ArrayType {
        ArrayType::String
    }

    fn column_type() -> ColumnType {
        ColumnType::String(StringLen::N(C::MAX_LENGTH))
    }
}

impl<C> Nullable for ResumableFileField<C> {
    fn null() -> Value {
        Value::String(None)
    }
}

#[cfg(feature = "postgres")]
impl<C> sea_orm::sea_query::postgres_array::NotU8 for ResumableFileField<C> {}

impl<C> ResumableFileField<C> {
    pub(crate) fn state_path(&self) -> Option<&str> {
        match &self.state {
            State::Stored(path) => Some(path),
            State::Pending(_) => None,
        }
    }

    pub(crate) fn state_pending(&self) -> Option<&Arc<PendingUpload>> {
        match &self.state {
            State::Stored(_) => None,
            State::Pending(upload) => Some(upload),
        }
    }

    pub(crate) fn stored_unchecked(path: String) -> Self {
        Self {
            state: State::Stored(path),
            options: PhantomData,
        }
    }
}

/// How the save hooks' errors begin, so an app can tell them from database errors.
const HOOK_ERROR: &str = "file field: ";

/// An error of the save hooks, as the `DbErr` sea-orm expects from hooks.
pub(crate) fn hook_error(message: impl fmt::Display) -> DbErr {
    DbErr::Custom(format!("{HOOK_ERROR}{message}"))
}

/// The sentence of an error the file field's save hooks returned (an upload already
/// saved, a name that cannot fit, …), to show the user; `None` for other database errors.
///
/// ```
/// use sea_orm::DbErr;
/// use sea_orm_resumable::field::save_error_message;
/// let other = DbErr::Custom("connection reset".into());
/// assert_eq!(save_error_message(&other), None);
/// ```
pub fn save_error_message(error: &DbErr) -> Option<&str> {
    match error {
        DbErr::Custom(message) => message.strip_prefix(HOOK_ERROR),
        _ => None,
    }
}
