//! Creates `document`: a title and one uploaded file per row.

use sea_orm_migration::{prelude::*, schema::*};
use sea_orm_resumable::field::file_column;

/// Creates the `document` table.
#[derive(DeriveMigrationName)]
pub struct Migration;

/// The `document` table and its columns.
#[derive(DeriveIden)]
pub enum Document {
    /// The table.
    Table,
    /// Primary key.
    Id,
    /// What the user called it.
    Title,
    /// The stored file, relative to the media root (`ResumableFileField`).
    File,
    /// When the row was made.
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Document::Table)
                    .if_not_exists()
                    .col(pk_auto(Document::Id))
                    .col(string(Document::Title))
                    .col(file_column(Document::File, 255))
                    .col(timestamp_with_time_zone(Document::CreatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Document::Table).to_owned())
            .await
    }
}
