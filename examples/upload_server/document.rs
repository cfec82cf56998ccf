//! The example app's one entity: a document with a title and an uploaded file.

use sea_orm::entity::prelude::*;
use sea_orm_resumable::ResumableFileField;

sea_orm_resumable::file_field! {
    /// Files of documents, stored as `documents/<year>/<month>/<name>`.
    pub struct DocumentFile { upload_to: "documents/%Y/%m", max_length: 255 }
}

/// A row of `document` (created by the `migration` crate).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "document")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// What the user called it.
    pub title: String,
    /// The uploaded file: its path relative to the media root.
    pub file: ResumableFileField<DocumentFile>,
    /// When the row was made.
    pub created_at: DateTimeUtc,
    /// Who uploaded it: the user name with `--require-login`, `""` without.
    #[sea_orm(column_type = "String(StringLen::N(64))", default_value = "")]
    pub owner: String,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

// Saving a document moves its upload to documents/<year>/<month>/.
sea_orm_resumable::file_field_hooks!(file);
