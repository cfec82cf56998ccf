//! Save reservations: while a model's row is being saved with an upload kept on object
//! storage, the path its file is going to is reserved in `resumable_save`, one row per
//! upload. The path is unique in the table, so two uploads saved at once never get the
//! same name, whichever servers save them; and a reservation left by a server that died
//! mid-save tells the next server's recovery which row to look for.

// Without the object-store backend only the tables are used (an app may make them in its
// migration all the same).
#![cfg_attr(not(feature = "object-store"), allow(dead_code, unused_imports))]

use sea_orm::{
    ConnectionTrait, DbErr, DeriveIden, SqlErr,
    sea_query::{ColumnDef, Expr, ExprTrait, Query, Table, TableCreateStatement},
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use super::{ChunkLedger, key_text, now_millis};
use crate::UploadKey;

/// The save reservation table.
#[derive(DeriveIden)]
pub(crate) enum ResumableSave {
    Table,
    UploadKey,
    Path,
    Wanted,
    Destination,
    ReservedAt,
    Instance,
}

/// The columns of a reservation, in the order they are written and read.
const COLUMNS: [ResumableSave; 6] = [
    ResumableSave::UploadKey,
    ResumableSave::Path,
    ResumableSave::Wanted,
    ResumableSave::Destination,
    ResumableSave::ReservedAt,
    ResumableSave::Instance,
];

/// The `CREATE TABLE` statement of `resumable_save`: one row per upload being saved into
/// a model on object storage (the path its file goes to, unique; the path it asked for;
/// the row's table and column as JSON; when).
///
/// ```
/// use sea_orm::sea_query::PostgresQueryBuilder;
/// let sql = sea_orm_resumable::ledger::create_save_table().to_string(PostgresQueryBuilder);
/// assert!(sql.contains(r#""path" varchar(1024) NOT NULL UNIQUE"#));
/// ```
pub fn create_save_table() -> TableCreateStatement {
    Table::create()
        .table(ResumableSave::Table)
        .if_not_exists()
        .col(
            ColumnDef::new(ResumableSave::UploadKey)
                .string_len(32)
                .not_null()
                .primary_key(),
        )
        .col(
            ColumnDef::new(ResumableSave::Path)
                .string_len(1024)
                .not_null()
                .unique_key(),
        )
        .col(
            ColumnDef::new(ResumableSave::Wanted)
                .string_len(1024)
                .not_null(),
        )
        .col(ColumnDef::new(ResumableSave::Destination).text().not_null())
        .col(
            ColumnDef::new(ResumableSave::ReservedAt)
                .big_integer()
                .not_null(),
        )
        .col(
            ColumnDef::new(ResumableSave::Instance)
                .string_len(64)
                .not_null()
                .default(""),
        )
        .to_owned()
}

/// Where a row being saved lives: its table (and schema) and the file column.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SaveDestination {
    /// The table's schema, if not the default.
    pub schema: Option<String>,
    /// The table.
    pub table: String,
    /// The file column.
    pub column: String,
}

/// A path reserved for an upload's file while its row is saved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaveReservation {
    /// The upload.
    pub key: UploadKey,
    /// The path reserved (the object key the file goes to).
    pub path: String,
    /// The path the field asked for (`upload_to`), before it was made unique.
    pub wanted: String,
    /// The row's table and column.
    pub destination: SaveDestination,
    /// When it was reserved (ms since the Unix epoch); also its fencing token.
    pub reserved_at: i64,
    /// The upload's [`UploadMeta::instance`](crate::UploadMeta::instance): which upload of
    /// this key it was (a later upload of the same file gets the same key).
    pub instance: String,
}

/// Whether a reservation was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reserved {
    /// The path is this upload's now.
    Yes(SaveReservation),
    /// Another upload holds that path: try another.
    PathTaken,
    /// This upload has a reservation already (another save of it got there first).
    UploadTaken,
}

impl ChunkLedger {
    /// Reserves `path` for the file of upload `key`, saved into `destination`.
    pub async fn reserve_save(
        &self,
        (key, instance): (&UploadKey, &str),
        path: &str,
        wanted: &str,
        destination: &SaveDestination,
    ) -> Result<Reserved, DbErr> {
        let reservation = SaveReservation {
            key: *key,
            path: path.to_owned(),
            wanted: wanted.to_owned(),
            destination: destination.clone(),
            reserved_at: now_millis(),
            instance: instance.to_owned(),
        };
        let json = serde_json::to_string(destination).map_err(|e| DbErr::Custom(e.to_string()))?;
        let insert = Query::insert()
            .into_table(ResumableSave::Table)
            .columns(COLUMNS)
            .values_panic([
                key_text(key).into(),
                path.into(),
                wanted.into(),
                json.into(),
                reservation.reserved_at.into(),
                instance.into(),
            ])
            .to_owned();
        match self.db.execute(&insert).await {
            Ok(_) => Ok(Reserved::Yes(reservation)),
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                Ok(if self.save_reservation(key).await?.is_some() {
                    Reserved::UploadTaken
                } else {
                    Reserved::PathTaken
                })
            }
            Err(e) => Err(e),
        }
    }

    /// The reservation of upload `key`, if a save of it is under way (or was cut short).
    pub async fn save_reservation(
        &self,
        key: &UploadKey,
    ) -> Result<Option<SaveReservation>, DbErr> {
        let found = self
            .save_reservations(Expr::col(ResumableSave::UploadKey).eq(key_text(key)))
            .await?;
        Ok(found.into_iter().next())
    }

    /// The path a reservation holds for another upload, if any (a path is reserved for at
    /// most one upload).
    pub async fn path_reserved(&self, path: &str) -> Result<bool, DbErr> {
        let select = Query::select()
            .expr(Expr::val(1))
            .from(ResumableSave::Table)
            .and_where(Expr::col(ResumableSave::Path).eq(path))
            .to_owned();
        Ok(self.db.query_one(&select).await?.is_some())
    }

    /// Reservations made more than `age` ago: saves that stopped (a crash) or failed.
    pub async fn stale_save_reservations(
        &self,
        age: Duration,
    ) -> Result<Vec<SaveReservation>, DbErr> {
        let before =
            now_millis().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
        self.save_reservations(Expr::col(ResumableSave::ReservedAt).lt(before))
            .await
    }

    async fn save_reservations(
        &self,
        condition: sea_orm::sea_query::SimpleExpr,
    ) -> Result<Vec<SaveReservation>, DbErr> {
        let select = Query::select()
            .columns(COLUMNS)
            .from(ResumableSave::Table)
            .and_where(condition)
            .to_owned();
        self.db
            .query_all(&select)
            .await?
            .into_iter()
            .map(|row| {
                let key: String = row.try_get("", "upload_key")?;
                let destination: String = row.try_get("", "destination")?;
                Ok(SaveReservation {
                    key: key.parse().map_err(|_| {
                        DbErr::Custom(format!("bad upload key in the ledger: {key:?}"))
                    })?,
                    path: row.try_get("", "path")?,
                    wanted: row.try_get("", "wanted")?,
                    destination: serde_json::from_str(&destination)
                        .map_err(|e| DbErr::Custom(format!("bad save destination: {e}")))?,
                    reserved_at: row.try_get("", "reserved_at")?,
                    instance: row.try_get("", "instance")?,
                })
            })
            .collect()
    }

    /// Renews a reservation (a retried save taking it over); returns the renewed one, or
    /// `None` if it changed meanwhile.
    pub async fn renew_save(
        &self,
        reservation: &SaveReservation,
    ) -> Result<Option<SaveReservation>, DbErr> {
        let now = std::cmp::max(now_millis(), reservation.reserved_at + 1);
        let update = Query::update()
            .table(ResumableSave::Table)
            .value(ResumableSave::ReservedAt, now)
            .and_where(Expr::col(ResumableSave::UploadKey).eq(key_text(&reservation.key)))
            .and_where(Expr::col(ResumableSave::ReservedAt).eq(reservation.reserved_at))
            .to_owned();
        Ok(
            (self.db.execute(&update).await?.rows_affected() == 1).then(|| SaveReservation {
                reserved_at: now,
                ..reservation.clone()
            }),
        )
    }

    /// Drops `reservation` if it is unchanged (same path, not renewed since: its time is
    /// its fencing token); returns whether it did.
    pub async fn drop_save(&self, reservation: &SaveReservation) -> Result<bool, DbErr> {
        let delete = Query::delete()
            .from_table(ResumableSave::Table)
            .and_where(Expr::col(ResumableSave::UploadKey).eq(key_text(&reservation.key)))
            .and_where(Expr::col(ResumableSave::Path).eq(reservation.path.as_str()))
            .and_where(Expr::col(ResumableSave::ReservedAt).eq(reservation.reserved_at))
            .to_owned();
        Ok(self.db.execute(&delete).await?.rows_affected() == 1)
    }

    /// Ends the save of upload `key` to `path`, once its file is there: drops the upload's
    /// reservation if it names `path` (whoever renewed it); returns whether it did.
    pub async fn end_save(&self, key: &UploadKey, path: &str) -> Result<bool, DbErr> {
        let delete = Query::delete()
            .from_table(ResumableSave::Table)
            .and_where(Expr::col(ResumableSave::UploadKey).eq(key_text(key)))
            .and_where(Expr::col(ResumableSave::Path).eq(path))
            .to_owned();
        Ok(self.db.execute(&delete).await?.rows_affected() == 1)
    }
}
