//! Adds the chunk ledger's quota columns (`resumable_upload.scope`, `.client`): what the
//! upload limits count on object storage. See [`sea_orm_resumable::ledger`].

use sea_orm_migration::prelude::*;

/// Adds the columns.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for alter in sea_orm_resumable::ledger::add_quota_columns() {
            manager.alter_table(alter).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in ["client", "scope"] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("resumable_upload"))
                        .drop_column(Alias::new(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
