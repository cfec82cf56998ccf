//! Migrations of the example upload app: the `document` table of
//! `examples/upload_server` and the chunk ledger's tables
//! ([`sea_orm_resumable::ledger`]), run by the app at start (`Migrator::up(&db, None)`).
//!
//! The file column comes from [`sea_orm_resumable::field::file_column`], so the table
//! matches what the entity's `ResumableFileField` declares (a test compares the two DDLs
//! on SQLite and PostgreSQL).

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_create_document;
mod m20261126_000001_add_document_owner;
mod m20261126_000002_create_chunk_ledger;
mod m20261127_000001_create_save_reservations;
mod m20261206_000001_add_ledger_quota_columns;

/// Every migration of the example app, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_document::Migration),
            Box::new(m20261126_000001_add_document_owner::Migration),
            Box::new(m20261126_000002_create_chunk_ledger::Migration),
            Box::new(m20261127_000001_create_save_reservations::Migration),
            Box::new(m20261206_000001_add_ledger_quota_columns::Migration),
        ]
    }
}

pub use m20261125_000001_create_document::Document;
