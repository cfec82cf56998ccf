//! Column definitions for migrations, equal to what the entity's column type gives
//! `Schema::create_table_from_entity`.

use sea_orm::sea_query::{ColumnDef, IntoIden, ValueType};

use super::{FileFieldOptions, ResumableFileField};

/// A NOT NULL file column of `max_length` characters, as `ResumableFileField<C>` with
/// `C::MAX_LENGTH == max_length` declares it. Migrations are history: they spell the
/// length out rather than read it from today's options type.
///
/// ```
/// use sea_orm::sea_query::{Alias, SqliteQueryBuilder, Table};
/// use sea_orm_resumable::field::file_column;
///
/// let sql = Table::create()
///     .table(Alias::new("document"))
///     .col(file_column(Alias::new("file"), 255))
///     .to_string(SqliteQueryBuilder);
/// assert_eq!(sql, r#"CREATE TABLE "document" ( "file" varchar(255) NOT NULL )"#);
/// ```
pub fn file_column<T: IntoIden>(name: T, max_length: u32) -> ColumnDef {
    ColumnDef::new(name)
        .string_len(max_length)
        .not_null()
        .take()
}

/// A nullable file column (`Option<ResumableFileField<C>>`).
///
/// ```
/// use sea_orm::sea_query::{Alias, PostgresQueryBuilder, Table};
/// use sea_orm_resumable::field::file_column_null;
///
/// let sql = Table::create()
///     .table(Alias::new("document"))
///     .col(file_column_null(Alias::new("cover"), 100))
///     .to_string(PostgresQueryBuilder);
/// assert_eq!(sql, r#"CREATE TABLE "document" ( "cover" varchar(100) NULL )"#);
/// ```
pub fn file_column_null<T: IntoIden>(name: T, max_length: u32) -> ColumnDef {
    ColumnDef::new(name).string_len(max_length).null().take()
}

/// The column for `ResumableFileField<C>` from its options type, NOT NULL unless
/// `nullable`: for code that builds tables from today's types (tests, tools).
///
/// ```
/// use sea_orm::sea_query::{Alias, SqliteQueryBuilder, Table};
/// use sea_orm_resumable::field::file_column_for;
/// sea_orm_resumable::file_field! { pub struct Scans { max_length: 120 } }
///
/// let sql = Table::create()
///     .table(Alias::new("scan"))
///     .col(file_column_for::<Scans, _>(Alias::new("file"), false))
///     .to_string(SqliteQueryBuilder);
/// assert_eq!(sql, r#"CREATE TABLE "scan" ( "file" varchar(120) NOT NULL )"#);
/// ```
pub fn file_column_for<C: FileFieldOptions, T: IntoIden>(name: T, nullable: bool) -> ColumnDef {
    let mut column =
        ColumnDef::new_with_type(name, <ResumableFileField<C> as ValueType>::column_type());
    if nullable {
        column.null();
    } else {
        column.not_null();
    }
    column.take()
}
