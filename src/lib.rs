//! Resumable, chunked browser uploads of very large files for axum + sea-orm apps.
//!
//! The crate is in layers, one folder each; each knows only the ones below it:
//!
//! | folder | layer | what is in it |
//! |---|---|---|
//! | `protocol/` | protocol adapters | reading resumable.js / flow.js requests, the axum [`router`], the browser-scope and cross-origin middleware |
//! | `service/` | the upload service | [`Uploads`]: scopes, tokens, settings, the chunk parameters ([`ChunkParams`]) and their arithmetic, field rules, the one body pace, content sniffing, completion exactly once and its hooks |
//! | `storage/` | storage | the upload store (byte ranges received, written at any offset, completed once) with its `local` and `object` backends, chosen once by [`UploadsBuilder`]; the quotas they count; stored files ([`storage::FileStorage`]: [`Media`], [object storage](storage::object)); the [`ledger`] tables |
//! | `field/` | the model field | [`ResumableFileField`], its options, saving and recovery, expiry of abandoned uploads, migration helpers |
//! | `page/` | the page | the form input ([`form`]), the [`widget`] and its embedded [`assets`] |
//!
//! The upload endpoint speaks the protocol of [resumable.js] and [flow.js]: chunks arrive
//! in any order, in parallel, retried or duplicated, and each is streamed straight to its
//! place in one file per upload. When the last chunk lands the upload is complete — once,
//! however the final chunks race — with no concatenation pass. A server restart loses
//! nothing: which bytes are in is kept on disk (or in the database).
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

mod error;
mod faults;
pub mod field;
mod page;
mod protocol;
mod service;
pub mod storage;

pub use page::{assets, form, widget};
pub use storage::media;

/// The tables the object-storage backend keeps in the app's database (which chunks are
/// in, uploads being saved), for an app's own migration; the crate's `migration/` makes
/// them too. Only needed with [`UploadsBuilder::object_storage`].
pub mod ledger {
    pub use crate::storage::ledger::{
        add_quota_columns, create_save_table, create_tables, create_upload_tables,
    };
}

/// The crate's internals for its own tests (feature `testing`): not an API.
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing {
    pub use crate::service::layout::{ChunkPlace, Layout, Mode};
    pub use crate::storage::ledger::{
        ChunkLedger, Claim, DEFAULT_LEASE, RecordedChunk, Reserved, SaveDestination,
        SaveReservation, UploadState,
    };
    #[cfg(feature = "object-store")]
    pub use crate::storage::object::chunks::{
        ChunkOutcome, Expired, ObjectChunks, ObjectChunksError,
    };
    pub use crate::storage::upload_store::StoreError;
}

pub use error::UploadError;
pub use field::ExpiryReport;
pub use field::{FileFieldError, RecoveryReport, ResumableFileField};
pub use page::widget::Widget;
pub use protocol::browser::{SCOPE_COOKIE, refuse_cross_origin, scope_cookie};
pub use protocol::resumable_js::{MAX_NAME_BYTES, MAX_PATH_BYTES, ParamError};
pub use protocol::router::router;
pub use service::chunk::ChunkParams;
pub use service::scope::{AnonymousScope, BrowserScope, Scope, ScopeResolver};
pub use service::settings::{DEFAULT_CHUNK_SUBDIR, ParameterNames, Settings};
pub use service::token::{MIN_SECRET_BYTES, Secret, TokenError, UploadToken};
pub use service::uploads::{CompletedUpload, UploadStatus, Uploads, UploadsBuilder};
pub use storage::media::Media;
pub use storage::upload_store::{UploadKey, UploadMeta};

/// What the crate's macros need, re-exported so apps do not depend on it themselves.
#[doc(hidden)]
pub mod __private {
    pub use async_trait::async_trait;
    pub use sea_orm;
}
