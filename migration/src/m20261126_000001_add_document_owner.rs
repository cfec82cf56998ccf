//! Adds `document.owner`: who uploaded it (the user name with the example's
//! `--require-login`, `""` without), so each user sees only their own documents.

use sea_orm_migration::{prelude::*, schema::*};

use crate::Document;

/// Adds the `owner` column.
#[derive(DeriveMigrationName)]
pub struct Migration;

/// The column this migration adds.
#[derive(DeriveIden)]
enum Owner {
    /// Who uploaded the document.
    Owner,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Document::Table)
                    .add_column(string_len(Owner::Owner, 64).default(""))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Document::Table)
                    .drop_column(Owner::Owner)
                    .to_owned(),
            )
            .await
    }
}
