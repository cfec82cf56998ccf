//! Creates the chunk ledger's `resumable_save` table: paths reserved for uploads being
//! saved into a model's row on object storage. See [`sea_orm_resumable::ledger`].

use sea_orm_migration::prelude::*;

/// Creates the table.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(sea_orm_resumable::ledger::create_save_table())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Alias::new("resumable_save")).to_owned())
            .await
    }
}
