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

/// Bytes read from the start of a file to judge its type.
use crate::uploads::SNIFF_BYTES;

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

/// The content type of a file judged from its first bytes.
/// The content type of bytes from a file's start: a known signature (magic number, via the
/// `infer` crate), else HTML, SVG or XML by how the text starts, else `text/plain` for
/// UTF-8 text without NUL bytes, else `application/octet-stream`; `application/x-empty`
/// for no bytes. Note that `image/*` admits SVG and `text/*` admits HTML, which can carry
/// scripts: serve stored files as downloads, or allow exact types.
///
/// ```
/// use sea_orm_resumable::form::sniff;
/// assert_eq!(sniff(b"%PDF-1.7\n..."), "application/pdf");
/// assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png");
/// assert_eq!(sniff("name,size\nä,1\n".as_bytes()), "text/plain");
/// assert_eq!(sniff(&[0, 159, 146, 150]), "application/octet-stream");
/// assert_eq!(sniff(b"<!DOCTYPE html><script>alert(1)</script>"), "text/html");
/// assert_eq!(sniff(b"<svg xmlns='http://www.w3.org/2000/svg' onload='x()'/>"), "image/svg+xml");
/// ```
pub fn sniff(head: &[u8]) -> String {
    if head.is_empty() {
        return "application/x-empty".into();
    }
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().into();
    }
    if let Some(markup) = markup_type(head) {
        return markup.into();
    }
    let text = match std::str::from_utf8(head) {
        Ok(_) => true,
        // Cut inside a character at the end of the sample: still text.
        Err(e) => e.error_len().is_none(),
    };
    if text && !head.contains(&0) {
        "text/plain".into()
    } else {
        "application/octet-stream".into()
    }
}

/// Markup a browser would render (and run scripts in): HTML, SVG, XML, by how the text
/// starts, so a field allowing `text/plain` or `image/png` does not take them as such.
fn markup_type(head: &[u8]) -> Option<&'static str> {
    let start = String::from_utf8_lossy(&head[..head.len().min(512)]).to_ascii_lowercase();
    let start = start.trim_start_matches('\u{feff}').trim_start();
    if start.starts_with("<!doctype html")
        || start.starts_with("<html")
        || start.starts_with("<script")
    {
        Some("text/html")
    } else if start.starts_with("<svg") || (start.starts_with("<?xml") && start.contains("<svg")) {
        Some("image/svg+xml")
    } else if start.starts_with("<?xml") {
        Some("application/xml")
    } else {
        None
    }
}

/// Whether `found` is allowed by `pattern`: equal, `type/*` or `*/*`.
///
/// ```
/// use sea_orm_resumable::form::type_matches;
/// assert!(type_matches("image/*", "image/png"));
/// assert!(type_matches("application/pdf", "application/pdf"));
/// assert!(!type_matches("image/*", "application/pdf"));
/// assert!(type_matches("*/*", "text/plain"));
/// ```
pub fn type_matches(pattern: &str, found: &str) -> bool {
    if pattern == "*/*" || pattern == "*" {
        return true;
    }
    match pattern.strip_suffix('*') {
        Some(prefix) if prefix.ends_with('/') => found.starts_with(prefix),
        _ => pattern.eq_ignore_ascii_case(found),
    }
}
