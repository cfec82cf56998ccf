//! [`ResumableFileField`]: a sea-orm column type holding a stored file's path, with its
//! per-field options, the save hooks that move a completed upload into place, and the
//! column definition for migrations.
//!
//! ```
//! use sea_orm::entity::prelude::*;
//! use sea_orm_resumable::ResumableFileField;
//!
//! sea_orm_resumable::file_field! {
//!     /// Files of documents: `documents/<year>/<month>/<name>`.
//!     pub struct DocumentFile { upload_to: "documents/%Y/%m", max_length: 255 }
//! }
//!
//! #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
//! #[sea_orm(table_name = "document")]
//! pub struct Model {
//!     #[sea_orm(primary_key)]
//!     pub id: i32,
//!     pub title: String,
//!     pub file: ResumableFileField<DocumentFile>,
//!     pub thumbnail: Option<ResumableFileField<DocumentFile>>,
//! }
//!
//! #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
//! pub enum Relation {}
//!
//! // Moves uploads into place on insert/update/save.
//! sea_orm_resumable::file_field_hooks!(file, thumbnail);
//! # fn main() {}
//! ```

mod column;
mod expiry;
mod moves;
mod name;
#[cfg(feature = "object-store")]
mod object_save;
mod pending;
mod recovery;
mod row;
mod save;
mod value;

pub use column::{file_column, file_column_for, file_column_null};
pub use expiry::ExpiryReport;
pub(crate) use moves::{holds_file, saving};
pub use name::{expand_date, sanitize_file_name};
#[cfg(feature = "object-store")]
pub(crate) use object_save::recover as recover_object_saves;
pub use pending::PendingUpload;
pub use recovery::RecoveryReport;
pub use save::{FileValue, after_save, before_save};
pub use value::{FileFieldError, ResumableFileField, save_error_message};

/// The options of one kind of file field, carried by a marker type as
/// `ResumableFileField<Options>`, so they reach the save hook, the entity's column type and
/// the migration helper from the declaration alone. Every option has a default; declare a
/// type with [`file_field!`](crate::file_field) or implement this trait and
/// [`UploadTo`] by hand.
///
/// ```
/// use sea_orm_resumable::field::{FileFieldOptions, UploadTo, upload_to_directory};
///
/// /// Avatars, chunks kept apart, old avatars deleted when replaced.
/// pub struct Avatar;
/// impl FileFieldOptions for Avatar {
///     const UPLOAD_TO: &'static str = "avatars/%Y";
///     const CHUNKS_UPLOAD_TO: Option<&'static str> = Some("avatar_chunks");
///     const MAX_LENGTH: u32 = 200;
///     const DELETE_REPLACED: bool = true;
/// }
/// impl<M> UploadTo<M> for Avatar {
///     fn upload_to(_model: &M, file_name: &str) -> String {
///         upload_to_directory(Self::UPLOAD_TO, file_name)
///     }
/// }
/// ```
pub trait FileFieldOptions: Send + Sync + 'static {
    /// Directory under the media root for stored files, with `%Y`, `%m`, `%d` date
    /// placeholders (Django's `upload_to`). Default: the media root itself.
    const UPLOAD_TO: &'static str = "";
    /// Chunk directory for uploads meant for this field, relative to the media root
    /// (Django's `chunks_upload_to`); `None` uses the settings' chunk subdirectory.
    /// Register the field with [`UploadsBuilder::field`](crate::UploadsBuilder::field).
    const CHUNKS_UPLOAD_TO: Option<&'static str> = None;
    /// Length of the varchar column (default 255); stored paths are kept within it.
    const MAX_LENGTH: u32 = 255;
    /// Largest file the field's form input accepts, in bytes (`None`: the upload
    /// service's own limit). Checked by [`FileInput`](crate::page::form::FileInput).
    const MAX_SIZE: Option<u64> = None;
    /// Content types the field's form input accepts, judged from the file's first bytes
    /// (magic numbers), not from what the browser claims: `"application/pdf"`,
    /// `"image/*"`, `"text/*"` (valid UTF-8 without a known signature is `text/plain`).
    /// Empty: any type.
    const CONTENT_TYPES: &'static [&'static str] = &[];
    /// Delete the old file once an update has replaced it with a new upload (default
    /// `false`, as in Django: the old file stays). Setting the column to `None` or to an
    /// already stored path never deletes anything. Rows sharing one file (the same upload
    /// submitted twice at once, or a path copied with `stored`) lose it together.
    const DELETE_REPLACED: bool = false;
}

/// Where a field's file goes, as a function of the model being saved and the file name
/// (Django's callable `upload_to`). The name given is the client's, already made safe by
/// [`sanitize_file_name`] (Django too passes the upload's base name). Returns a path relative to the media root,
/// file name included; its directories must be plain (no `..`), its file name is made safe
/// ([`sanitize_file_name`]) and unique at save. The model is the `ActiveModel` being saved:
/// on an update, fields the update does not set are `NotSet` (read them with
/// `try_as_ref()` and decide what a missing value means).
///
/// ```
/// use sea_orm_resumable::field::{FileFieldOptions, UploadTo};
///
/// struct Model { owner: i64 }
/// /// Per-owner directories.
/// struct Attachment;
/// impl FileFieldOptions for Attachment {}
/// impl UploadTo<Model> for Attachment {
///     fn upload_to(model: &Model, file_name: &str) -> String {
///         format!("users/{}/{file_name}", model.owner)
///     }
/// }
/// assert_eq!(Attachment::upload_to(&Model { owner: 7 }, "a.pdf"), "users/7/a.pdf");
/// ```
pub trait UploadTo<M>: FileFieldOptions {
    /// The relative path (directory and file name) to store `file_name` at for `model`.
    fn upload_to(model: &M, file_name: &str) -> String;
}

/// `directory` with its date placeholders expanded (today, UTC), then `file_name`: what
/// a static `upload_to` means.
///
/// ```
/// use sea_orm_resumable::field::upload_to_directory;
/// assert_eq!(upload_to_directory("", "a.pdf"), "a.pdf");
/// assert!(upload_to_directory("docs/%Y", "a.pdf").starts_with("docs/20"));
/// ```
pub fn upload_to_directory(directory: &str, file_name: &str) -> String {
    let directory = expand_date(directory.trim_matches('/'), chrono::Utc::now());
    if directory.is_empty() {
        file_name.to_owned()
    } else {
        format!("{directory}/{file_name}")
    }
}

/// Declares a file-field options type from `key: value` pairs (all optional):
/// `upload_to: "dir/%Y/%m"`, `chunks_upload_to: "dir"`, `max_length: 255`,
/// `delete_replaced: true`, `max_size: 10 << 20`, `content_types: ["image/*"]`. For an `upload_to` computed from the model, implement
/// [`FileFieldOptions`] and [`UploadTo`] by hand instead.
///
/// ```
/// use sea_orm_resumable::field::FileFieldOptions;
///
/// sea_orm_resumable::file_field! {
///     /// Scanned contracts, chunks in their own directory.
///     pub struct ContractFile {
///         upload_to: "contracts/%Y",
///         chunks_upload_to: "contract_chunks",
///         max_length: 300,
///         max_size: 50 << 20,
///         content_types: ["application/pdf"],
///     }
/// }
/// assert_eq!(ContractFile::MAX_LENGTH, 300);
/// assert_eq!(ContractFile::CONTENT_TYPES, ["application/pdf"]);
/// assert_eq!(ContractFile::CHUNKS_UPLOAD_TO, Some("contract_chunks"));
/// ```
#[macro_export]
macro_rules! file_field {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($key:ident : $value:expr),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        $vis struct $name;

        impl $crate::field::FileFieldOptions for $name {
            $($crate::__file_field_option!($key $value);)*
        }

        impl<M> $crate::field::UploadTo<M> for $name {
            fn upload_to(_model: &M, file_name: &str) -> String {
                $crate::field::upload_to_directory(
                    <Self as $crate::field::FileFieldOptions>::UPLOAD_TO,
                    file_name,
                )
            }
        }
    };
}

/// One option of [`file_field!`](crate::file_field).
#[doc(hidden)]
#[macro_export]
macro_rules! __file_field_option {
    (upload_to $value:expr) => {
        const UPLOAD_TO: &'static str = $value;
    };
    (chunks_upload_to $value:expr) => {
        const CHUNKS_UPLOAD_TO: Option<&'static str> = Some($value);
    };
    (max_length $value:expr) => {
        const MAX_LENGTH: u32 = $value;
    };
    (delete_replaced $value:expr) => {
        const DELETE_REPLACED: bool = $value;
    };
    (max_size $value:expr) => {
        const MAX_SIZE: Option<u64> = Some($value);
    };
    (content_types $value:expr) => {
        const CONTENT_TYPES: &'static [&'static str] = &$value;
    };
}
