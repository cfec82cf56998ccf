//! Resumable, chunked browser uploads of very large files for axum + sea-orm apps.
//!
//! The upload endpoint speaks the protocol of [resumable.js] and [flow.js]: chunks arrive
//! in any order, in parallel, retried or duplicated, and each is streamed straight to its
//! place in one file per upload. When the last chunk lands the upload is complete — once,
//! however the final chunks race — with no concatenation pass. A server restart loses
//! nothing: which chunks are in is kept on disk.
//!
//! ```no_run
//! use axum::Router;
//! use sea_orm_resumable::{Secret, Settings, Uploads, router};
//!
//! # async fn run() -> std::io::Result<()> {
//! let secret = Secret::load_or_generate("./data/secret").await?;
//! let uploads = Uploads::builder(Settings::new("./media"), secret).build().await?;
//! let app = Router::new().nest("/resumable_upload", router(uploads));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! Every 200 answer carries an [`UploadStatus`] whose signed [`UploadToken`] the page
//! keeps to attach the file to a database row.
//!
//! That row's column is a [`ResumableFileField`] (module [`field`]): a sea-orm value type
//! holding the stored file's path, with Django-like options (`upload_to` with date
//! placeholders or computed from the model, `chunks_upload_to`, the column length).
//! [`ResumableFileField::from_token`] turns a token into a value for `Set(…)`; saving the
//! model (hooks from [`file_field_hooks!`]) moves the file under the [`Media`] root —
//! only once the row is stored, so a failed save loses nothing.
//!
//! Files live on the local disk by default, or on object storage (S3, GCS, Azure…) with
//! several servers sharing the uploads (feature `object-store`,
//! [`UploadsBuilder::object_storage`]); [`storage::FileStorage`] reads, links and deletes
//! stored files in either.
//!
//! [resumable.js]: https://github.com/23/resumable.js
//! [flow.js]: https://github.com/flowjs/flow.js

#![deny(missing_docs)]

/// The README's code, compiled as a doctest so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub mod assets;
mod browser;
mod error;
mod expiry;
mod faults;
pub mod field;
pub mod form;
mod handler;
pub mod layout;
pub mod ledger;
pub mod media;
#[cfg(feature = "object-store")]
pub mod object_chunks;
mod pace;
mod protocol;
mod quotas;
mod rules;
mod scope;
mod settings;
mod sniff;
pub mod storage;
mod token;
mod uploads;
pub mod widget;

pub use browser::{SCOPE_COOKIE, refuse_cross_origin, scope_cookie};
pub use error::UploadError;
pub use expiry::ExpiryReport;
pub use field::{FileFieldError, RecoveryReport, ResumableFileField};
pub use handler::router;
pub use media::Media;
pub use protocol::{ChunkParams, MAX_NAME_BYTES, MAX_PATH_BYTES, ParamError, ParameterNames};
pub use scope::{AnonymousScope, BrowserScope, Scope, ScopeResolver};
pub use settings::{DEFAULT_CHUNK_SUBDIR, Settings};
pub use storage::upload_store::UploadMeta;
pub use token::{MIN_SECRET_BYTES, Secret, TokenError, UploadKey, UploadToken};
pub use uploads::{CompletedUpload, UploadStatus, Uploads, UploadsBuilder};
pub use widget::Widget;

/// What the crate's macros need, re-exported so apps do not depend on it themselves.
#[doc(hidden)]
pub mod __private {
    pub use async_trait::async_trait;
    pub use sea_orm;
}
