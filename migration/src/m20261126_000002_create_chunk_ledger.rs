//! Creates the chunk ledger's tables (`resumable_upload`, `resumable_chunk`): which
//! chunks of which uploads are in, shared by every server using this database. See
//! [`sea_orm_resumable::ledger`].

use sea_orm_migration::prelude::*;

/// Creates the two tables.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in sea_orm_resumable::ledger::create_upload_tables() {
            manager.create_table(table).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["resumable_chunk", "resumable_upload"] {
            manager
                .drop_table(Table::drop().table(Alias::new(table)).to_owned())
                .await?;
        }
        Ok(())
    }
}
