//! The form side of a file field: [`FileInput`], the hidden input holding an upload token,
//! checked into a value ready for `Set(…)`.
//!
//! ```
//! use sea_orm_resumable::form::FileInput;
//! use serde::Deserialize;
//! sea_orm_resumable::file_field! {
//!     pub struct Scans { max_size: 20 << 20, content_types: ["application/pdf", "image/*"] }
//! }
//!
//! /// What the document form posts (works with `axum::Form`).
//! #[derive(Deserialize)]
//! struct DocumentForm {
//!     title: String,
//!     #[serde(default)]
//!     scan: FileInput<Scans>,
//! }
//! let form: DocumentForm = serde_json::from_str(r#"{"title": "Q3", "scan": ""}"#).unwrap();
//! assert!(form.scan.is_empty());
//! ```

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::{fmt, marker::PhantomData};

use crate::{
    FileFieldError, ResumableFileField, Scope, UploadStatus, Uploads, field::FileFieldOptions,
};

pub use crate::service::sniff::{SNIFF_BYTES, sniff, type_matches};

/// A file field's form input: the upload token the widget put in its hidden input. It
/// deserialises from that string (an empty one is an empty input) and
/// [`clean`](Self::clean)s into a [`ResumableFileField`] after checking everything a form
/// must: the token's signature and user, that the upload exists in this field's chunk
/// directory, is complete and not saved to a row yet, and the field's limits
/// ([`FileFieldOptions::MAX_SIZE`] and [`FileFieldOptions::CONTENT_TYPES`], the type judged
/// from the file's first bytes). Each failure is a [`FileFieldError`] whose message is a
/// sentence for the form.
pub struct FileInput<C> {
    token: String,
    options: PhantomData<fn() -> C>,
}

impl<C: FileFieldOptions> FileInput<C> {
    /// An input holding `token` (as the browser would post it).
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into().trim().to_owned(),
            options: PhantomData,
        }
    }

    /// The token, as posted (trimmed).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Whether the input was left empty.
    pub fn is_empty(&self) -> bool {
        self.token.is_empty()
    }

    /// The checked value of a required field: an empty input is
    /// [`FileFieldError::Required`].
    ///
    /// ```no_run
    /// # use sea_orm_resumable::{form::FileInput, Scope, Uploads};
    /// # sea_orm_resumable::file_field! { pub struct Scans {} }
    /// # async fn f(uploads: Uploads, input: FileInput<Scans>) {
    /// match input.clean(&uploads, &Scope::anonymous()).await {
    ///     Ok(file) => { /* document::ActiveModel { scan: Set(file), .. }.insert(&db) */ }
    ///     Err(reason) => { /* re-render the form with reason.to_string() */ }
    /// }
    /// # }
    /// ```
    pub async fn clean(
        &self,
        uploads: &Uploads,
        scope: &Scope,
    ) -> Result<ResumableFileField<C>, FileFieldError> {
        self.clean_optional(uploads, scope)
            .await?
            .ok_or(FileFieldError::Required)
    }

    /// The checked value of an optional field: `None` for an empty input.
    pub async fn clean_optional(
        &self,
        uploads: &Uploads,
        scope: &Scope,
    ) -> Result<Option<ResumableFileField<C>>, FileFieldError> {
        if self.is_empty() {
            return Ok(None);
        }
        let file = ResumableFileField::<C>::from_token(uploads, scope, &self.token).await?;
        let Some(upload) = file.pending_upload() else {
            return Err(FileFieldError::UnknownUpload);
        };
        if let Some(max) = C::MAX_SIZE
            && upload.meta().total_size > max
        {
            return Err(FileFieldError::TooLarge {
                size: upload.meta().total_size,
                max,
            });
        }
        if !C::CONTENT_TYPES.is_empty() {
            let found = sniff(&upload.head(SNIFF_BYTES).await?);
            if !C::CONTENT_TYPES
                .iter()
                .any(|allowed| type_matches(allowed, &found))
            {
                return Err(FileFieldError::ContentType {
                    found,
                    allowed: C::CONTENT_TYPES.iter().map(|t| t.to_string()).collect(),
                });
            }
        }
        Ok(Some(file))
    }

    /// What the widget shows when the form is rendered again after an error: the upload
    /// the token names, if it is still there for this user (so the user does not upload
    /// again).
    pub async fn status(&self, uploads: &Uploads, scope: &Scope) -> Option<UploadStatus> {
        if self.is_empty() {
            return None;
        }
        uploads
            .upload_status(scope, &self.token, C::CHUNKS_UPLOAD_TO)
            .await
            .ok()
    }
}

impl<C> Default for FileInput<C> {
    fn default() -> Self {
        Self {
            token: String::new(),
            options: PhantomData,
        }
    }
}

impl<C> Clone for FileInput<C> {
    fn clone(&self) -> Self {
        Self {
            token: self.token.clone(),
            options: PhantomData,
        }
    }
}

impl<C> fmt::Debug for FileInput<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FileInput").field(&self.token).finish()
    }
}

impl<'de, C> Deserialize<'de> for FileInput<C> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let token = String::deserialize(deserializer)?;
        Ok(Self {
            token: token.trim().to_owned(),
            options: PhantomData,
        })
    }
}

impl<C> Serialize for FileInput<C> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.token)
    }
}
