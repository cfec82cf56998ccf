//! The chunk ledger: which chunks of which uploads are in, kept in the application's
//! database, so that several servers sharing one store (issue: object storage and many
//! servers) agree on it and decide completion exactly once.
//!
//! Three tables, created by [`create_tables`] (put it in a migration):
//!
//! * `resumable_upload` — one row per upload: its key, its [`UploadMeta`] as JSON (the
//!   first server to see the upload writes it; the others read it), its size, and its
//!   state: `open`, `assembling` (one server won the right to assemble it, at
//!   `claimed_at`) or `complete`; and its owner's scope and client address, which the
//!   upload quotas count ([`ChunkLedger::held`]).
//! * `resumable_chunk` — one row per chunk that is in: upload key, chunk number, size
//!   and, for stores that need it, a part id (an S3 ETag). The primary key (key, number)
//!   makes a duplicate or retried chunk a no-op.
//! * `resumable_save` — paths reserved for uploads being saved into a model's row
//!   (see [`SaveReservation`]).
//!
//! Completion is one conditional `UPDATE`: `open` → `assembling` where the sizes of the
//! recorded chunks add up to the file's size. That needs no chunk count, which clients
//! leave ambiguous (resumable.js's last chunk holds the remainder, up to twice the chunk
//! size, unless `forceChunkSize` is on: see [`crate::service::layout`]); with every chunk's size
//! checked against the layout, chunks adding up to the file are all of them. Whoever records a chunk and then claims sees every chunk
//! committed before its claim, so once the last chunk is recorded the first claim wins
//! (the call that recorded it, unless another claim comes first), and the row lock makes
//! sure only one does. A claim is a lease: a server that died while assembling loses it
//! after `lease`, and its token no longer completes the upload in the ledger (a fencing
//! token). A live assembler renews its claim every third of the lease
//! ([`ChunkLedger::renew`]), so an assembly may take as long as the file needs; one that
//! cannot renew (its database unreachable for a whole lease) stops. The ledger cannot
//! fence the store: an assembler cut off that way may still write the same bytes to the
//! same object as the server that took over.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use sea_orm_resumable::{ledger::create_tables, testing::{ChunkLedger, Claim}};
//! use sea_orm_resumable::{Scope, UploadKey, UploadMeta};
//! use sea_orm::{ConnectionTrait, Database};
//!
//! let db = Database::connect("sqlite::memory:").await.unwrap();
//! for table in create_tables() {
//!     db.execute(&table).await.unwrap();
//! }
//! let ledger = ChunkLedger::new(db);
//! let key = UploadKey::derive(&Scope::anonymous(), "3-report");
//! let meta = UploadMeta {
//!     scope: String::new(), identifier: "3-report".into(), file_name: "report.pdf".into(),
//!     relative_path: None, content_type: None, total_size: 3, chunk_size: 1,
//!     created_at: 0, instance: "a".into(), client: None,
//! };
//! ledger.open(&key, &meta).await.unwrap();
//! for number in [2, 1, 2] {
//!     assert!(ledger.record(&key, number, 1, None).await.is_ok());
//!     assert!(matches!(ledger.claim(&key).await.unwrap(), Claim::NotAllIn));
//! }
//! ledger.record(&key, 3, 1, None).await.unwrap();
//! let Claim::Won(token) = ledger.claim(&key).await.unwrap() else { panic!() };
//! assert!(matches!(ledger.claim(&key).await.unwrap(), Claim::Assembling));
//! assert!(ledger.complete(&key, token).await.unwrap());
//! assert!(matches!(ledger.claim(&key).await.unwrap(), Claim::Complete));
//! # });
//! ```

// Without the object-store backend only the tables are used (an app may make them in its
// migration all the same).
#![cfg_attr(not(feature = "object-store"), allow(dead_code, unused_imports))]

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbErr, DeriveIden,
    sea_query::{
        Alias, ColumnDef, Expr, ExprTrait, Func, Index, OnConflict, Query, SimpleExpr, Table,
        TableAlterStatement, TableCreateStatement,
    },
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{UploadKey, UploadMeta};

mod saves;
use saves::ResumableSave;
pub use saves::{Reserved, SaveDestination, SaveReservation, create_save_table};

/// How long a claim to assemble an upload holds before another server may take it over
/// (default of [`ChunkLedger::new`]).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10 * 60);

/// The upload table.
#[derive(DeriveIden)]
enum ResumableUpload {
    Table,
    Key,
    Meta,
    TotalSize,
    State,
    ClaimedAt,
    CreatedAt,
    MultipartId,
    Scope,
    Client,
}

/// The chunk table.
#[derive(DeriveIden)]
enum ResumableChunk {
    Table,
    UploadKey,
    Number,
    Size,
    Part,
    RecordedAt,
}

const OPEN: &str = "open";
const ASSEMBLING: &str = "assembling";
const COMPLETE: &str = "complete";

/// The `CREATE TABLE` statements of every ledger table as they are now, for an app's own
/// migration (`manager.create_table(statement)` for each): [`create_upload_tables`] with
/// the columns of [`add_quota_columns`], and [`create_save_table`]. The crate's
/// `migration/` makes them in three steps.
///
/// ```
/// use sea_orm::sea_query::SqliteQueryBuilder;
/// let sql: Vec<String> = sea_orm_resumable::ledger::create_tables()
///     .iter()
///     .map(|t| t.to_string(SqliteQueryBuilder))
///     .collect();
/// assert!(sql[0].starts_with(r#"CREATE TABLE IF NOT EXISTS "resumable_upload""#));
/// assert!(sql[1].contains(r#"PRIMARY KEY ("upload_key", "number")"#));
/// assert!(sql[2].starts_with(r#"CREATE TABLE IF NOT EXISTS "resumable_save""#));
/// ```
pub fn create_tables() -> [TableCreateStatement; 3] {
    let [mut uploads, chunks] = create_upload_tables();
    for column in quota_columns() {
        uploads.col(column);
    }
    [uploads, chunks, create_save_table()]
}

/// The columns the upload quotas count by: the owner's scope and client address.
fn quota_columns() -> [ColumnDef; 2] {
    [
        ColumnDef::new(ResumableUpload::Scope)
            .text()
            .null()
            .to_owned(),
        ColumnDef::new(ResumableUpload::Client)
            .string_len(64)
            .null()
            .to_owned(),
    ]
}

/// The `ALTER TABLE` statements that add the quota columns (scope, client address) to a
/// `resumable_upload` table made by [`create_upload_tables`] (one column a statement, as
/// SQLite wants): for an app whose migration made the tables before they existed.
///
/// ```
/// use sea_orm::sea_query::SqliteQueryBuilder;
/// let sql = sea_orm_resumable::ledger::add_quota_columns()[0].to_string(SqliteQueryBuilder);
/// assert_eq!(sql, r#"ALTER TABLE "resumable_upload" ADD COLUMN "scope" text NULL"#);
/// ```
pub fn add_quota_columns() -> [TableAlterStatement; 2] {
    quota_columns().map(|column| {
        Table::alter()
            .table(ResumableUpload::Table)
            .add_column(column)
            .to_owned()
    })
}

/// Uploads the ledger holds, and their announced bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// How many uploads.
    pub uploads: u64,
    /// Their total size, in bytes.
    pub bytes: u64,
}

/// The `CREATE TABLE` statements of the uploads and their chunks (`resumable_upload`,
/// `resumable_chunk`) as first released, without the quota columns
/// ([`add_quota_columns`]).
///
/// ```
/// assert_eq!(sea_orm_resumable::ledger::create_upload_tables().len(), 2);
/// ```
pub fn create_upload_tables() -> [TableCreateStatement; 2] {
    let uploads = Table::create()
        .table(ResumableUpload::Table)
        .if_not_exists()
        .col(
            ColumnDef::new(ResumableUpload::Key)
                .string_len(32)
                .not_null()
                .primary_key(),
        )
        .col(ColumnDef::new(ResumableUpload::Meta).text().not_null())
        .col(
            ColumnDef::new(ResumableUpload::TotalSize)
                .big_integer()
                .not_null(),
        )
        .col(
            ColumnDef::new(ResumableUpload::State)
                .string_len(16)
                .not_null()
                .default(OPEN),
        )
        .col(
            ColumnDef::new(ResumableUpload::ClaimedAt)
                .big_integer()
                .null(),
        )
        .col(
            ColumnDef::new(ResumableUpload::CreatedAt)
                .big_integer()
                .not_null(),
        )
        .col(
            ColumnDef::new(ResumableUpload::MultipartId)
                .string_len(1024)
                .null(),
        )
        .to_owned();
    let chunks = Table::create()
        .table(ResumableChunk::Table)
        .if_not_exists()
        .col(
            ColumnDef::new(ResumableChunk::UploadKey)
                .string_len(32)
                .not_null(),
        )
        .col(
            ColumnDef::new(ResumableChunk::Number)
                .big_integer()
                .not_null(),
        )
        .col(
            ColumnDef::new(ResumableChunk::Size)
                .big_integer()
                .not_null(),
        )
        .col(ColumnDef::new(ResumableChunk::Part).string_len(255).null())
        .col(
            ColumnDef::new(ResumableChunk::RecordedAt)
                .big_integer()
                .not_null(),
        )
        .primary_key(
            Index::create()
                .col(ResumableChunk::UploadKey)
                .col(ResumableChunk::Number),
        )
        .to_owned();
    [uploads, chunks]
}

/// What a claim to assemble an upload found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This caller assembles the upload; pass the token to [`ChunkLedger::complete`].
    Won(ClaimToken),
    /// Not every chunk is in yet.
    NotAllIn,
    /// Another server is assembling it (its lease has not run out).
    Assembling,
    /// It is complete already.
    Complete,
    /// The ledger has no such upload.
    Unknown,
}

/// Where an upload stands in the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadState {
    /// Chunks are coming in.
    Open,
    /// A server is assembling it.
    Assembling,
    /// It is complete.
    Complete,
}

/// Proof of a claim: only the latest claim of an upload can complete it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClaimToken(i64);

/// A chunk as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedChunk {
    /// 1-based chunk number.
    pub number: u64,
    /// Its size in bytes.
    pub size: u64,
    /// The store's id of its part (an S3 ETag), if the store gave one.
    pub part: Option<String>,
}

/// Which chunks are in, in the database (see the module documentation). Cheap to clone.
#[derive(Clone, Debug)]
pub struct ChunkLedger {
    db: DatabaseConnection,
    lease: Duration,
}

pub(crate) fn key_text(key: &UploadKey) -> String {
    key.to_string()
}

pub(crate) fn as_i64(n: u64) -> Result<i64, DbErr> {
    i64::try_from(n).map_err(|_| DbErr::Custom(format!("{n} is too large for the ledger")))
}

/// Milliseconds since the Unix epoch. A claim's token is its time: a claim can only be
/// taken over once `now - lease` has passed the old one, so the new token is always
/// larger, even from another server (whose clock should agree to well within a lease).
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl ChunkLedger {
    /// A ledger in `db` (its tables made by [`create_tables`]), with the default lease.
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            lease: DEFAULT_LEASE,
        }
    }

    /// The same ledger with claims that hold for `lease`.
    ///
    /// ```
    /// # async fn f(db: sea_orm::DatabaseConnection) {
    /// use std::time::Duration;
    /// let ledger = sea_orm_resumable::testing::ChunkLedger::new(db)
    ///     .with_lease(Duration::from_secs(60));
    /// # }
    /// ```
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Makes the upload known with `meta`, unless a server did already; returns the
    /// metadata the ledger holds (the first server's).
    pub async fn open(&self, key: &UploadKey, meta: &UploadMeta) -> Result<UploadMeta, DbErr> {
        let json = serde_json::to_string(meta).map_err(|e| DbErr::Custom(e.to_string()))?;
        let insert = Query::insert()
            .into_table(ResumableUpload::Table)
            .columns([
                ResumableUpload::Key,
                ResumableUpload::Meta,
                ResumableUpload::TotalSize,
                ResumableUpload::State,
                ResumableUpload::CreatedAt,
                ResumableUpload::Scope,
                ResumableUpload::Client,
            ])
            .values_panic([
                key_text(key).into(),
                json.into(),
                as_i64(meta.total_size)?.into(),
                OPEN.into(),
                now_millis().into(),
                meta.scope.clone().into(),
                meta.client.clone().into(),
            ])
            .on_conflict(
                OnConflict::column(ResumableUpload::Key)
                    .do_nothing()
                    .to_owned(),
            )
            .to_owned();
        self.db.execute(&insert).await?;
        self.meta(key)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(format!("upload {key}")))
    }

    /// The uploads the ledger holds (open, being assembled or complete: until a save or
    /// expiry removes them) of `scope`, of `client` (when given) and in all: what the
    /// upload quotas count on shared storage.
    pub async fn held(&self, scope: &str, client: Option<&str>) -> Result<[Held; 3], DbErr> {
        let by_scope = self
            .held_where(Some(Expr::col(ResumableUpload::Scope).eq(scope)))
            .await?;
        let by_client = match client {
            Some(client) => {
                self.held_where(Some(Expr::col(ResumableUpload::Client).eq(client)))
                    .await?
            }
            None => Held::default(),
        };
        Ok([by_scope, by_client, self.held_where(None).await?])
    }

    async fn held_where(&self, condition: Option<SimpleExpr>) -> Result<Held, DbErr> {
        let bytes = Func::coalesce([Expr::col(ResumableUpload::TotalSize).sum(), Expr::val(0)]);
        let mut select = Query::select()
            .expr_as(Expr::col(ResumableUpload::Key).count(), "uploads")
            .expr_as(Func::cast_as(bytes, Alias::new("BIGINT")), "bytes")
            .from(ResumableUpload::Table)
            .to_owned();
        if let Some(condition) = condition {
            select.and_where(condition);
        }
        let Some(row) = self.db.query_one(&select).await? else {
            return Ok(Held::default());
        };
        let (uploads, bytes): (i64, i64) = (row.try_get("", "uploads")?, row.try_get("", "bytes")?);
        Ok(Held {
            uploads: u64::try_from(uploads).unwrap_or(0),
            bytes: u64::try_from(bytes).unwrap_or(0),
        })
    }

    /// The metadata of the upload, if the ledger knows it.
    pub async fn meta(&self, key: &UploadKey) -> Result<Option<UploadMeta>, DbErr> {
        let select = Query::select()
            .column(ResumableUpload::Meta)
            .from(ResumableUpload::Table)
            .and_where(Expr::col(ResumableUpload::Key).eq(key_text(key)))
            .to_owned();
        let Some(row) = self.db.query_one(&select).await? else {
            return Ok(None);
        };
        let json: String = row.try_get("", "meta")?;
        serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| DbErr::Custom(format!("upload {key}: bad metadata: {e}")))
    }

    /// The id of the store's multipart upload that chunks go into as parts, once a
    /// server has set one.
    pub async fn multipart_id(&self, key: &UploadKey) -> Result<Option<String>, DbErr> {
        let select = Query::select()
            .column(ResumableUpload::MultipartId)
            .from(ResumableUpload::Table)
            .and_where(Expr::col(ResumableUpload::Key).eq(key_text(key)))
            .to_owned();
        match self.db.query_one(&select).await? {
            Some(row) => row.try_get("", "multipart_id"),
            None => Ok(None),
        }
    }

    /// Sets the upload's multipart upload id unless one is set already; returns whether
    /// this one was set (`false`: another server's won; use [`ChunkLedger::multipart_id`]).
    pub async fn set_multipart_id(&self, key: &UploadKey, id: &str) -> Result<bool, DbErr> {
        let update = Query::update()
            .table(ResumableUpload::Table)
            .value(ResumableUpload::MultipartId, id)
            .and_where(Expr::col(ResumableUpload::Key).eq(key_text(key)))
            .and_where(Expr::col(ResumableUpload::MultipartId).is_null())
            .to_owned();
        Ok(self.db.execute(&update).await?.rows_affected() == 1)
    }

    /// Records chunk `number` (1-based) of `size` bytes, with the store's `part` id.
    /// Returns whether it was new (`false`: it was in already, e.g. a retried chunk).
    pub async fn record(
        &self,
        key: &UploadKey,
        number: u64,
        size: u64,
        part: Option<&str>,
    ) -> Result<bool, DbErr> {
        // Only for an upload the ledger knows (not one removed meanwhile), so no chunk row
        // outlives its upload.
        let row = Query::select()
            .exprs([
                Expr::val(key_text(key)),
                Expr::val(as_i64(number)?),
                Expr::val(as_i64(size)?),
                Expr::val(part.map(str::to_owned)),
                Expr::val(now_millis()),
            ])
            .from(ResumableUpload::Table)
            .and_where(Expr::col(ResumableUpload::Key).eq(key_text(key)))
            .to_owned();
        let insert = Query::insert()
            .into_table(ResumableChunk::Table)
            .columns([
                ResumableChunk::UploadKey,
                ResumableChunk::Number,
                ResumableChunk::Size,
                ResumableChunk::Part,
                ResumableChunk::RecordedAt,
            ])
            .select_from(row)
            .map_err(|e| DbErr::Custom(e.to_string()))?
            .on_conflict(
                OnConflict::columns([ResumableChunk::UploadKey, ResumableChunk::Number])
                    .do_nothing()
                    .to_owned(),
            )
            .to_owned();
        Ok(self.db.execute(&insert).await?.rows_affected() == 1)
    }

    /// Takes chunk `number` out of the ledger (its bytes were found missing while
    /// assembling under `token`), so the client's test request says so and it is sent
    /// again. Only while `token` is still the upload's claim; returns whether it did.
    pub async fn forget_chunk(
        &self,
        key: &UploadKey,
        number: u64,
        token: ClaimToken,
    ) -> Result<bool, DbErr> {
        let still_claimed = Query::select()
            .expr(Expr::val(1))
            .from(ResumableUpload::Table)
            .and_where(Expr::col(ResumableUpload::Key).eq(key_text(key)))
            .and_where(Expr::col(ResumableUpload::State).eq(ASSEMBLING))
            .and_where(Expr::col(ResumableUpload::ClaimedAt).eq(token.0))
            .to_owned();
        let delete = Query::delete()
            .from_table(ResumableChunk::Table)
            .and_where(Expr::col(ResumableChunk::UploadKey).eq(key_text(key)))
            .and_where(Expr::col(ResumableChunk::Number).eq(as_i64(number)?))
            .and_where(Expr::exists(still_claimed))
            .to_owned();
        Ok(self.db.execute(&delete).await?.rows_affected() == 1)
    }

    /// Whether chunk `number` is in.
    pub async fn has(&self, key: &UploadKey, number: u64) -> Result<bool, DbErr> {
        let select = Query::select()
            .expr(Expr::val(1))
            .from(ResumableChunk::Table)
            .and_where(Expr::col(ResumableChunk::UploadKey).eq(key_text(key)))
            .and_where(Expr::col(ResumableChunk::Number).eq(as_i64(number)?))
            .to_owned();
        Ok(self.db.query_one(&select).await?.is_some())
    }

    /// Whether chunk `number` is in with `size` bytes.
    #[cfg(feature = "object-store")]
    pub(crate) async fn holds(
        &self,
        key: &UploadKey,
        number: u64,
        size: u64,
    ) -> Result<bool, DbErr> {
        let select = Query::select()
            .expr(Expr::val(1))
            .from(ResumableChunk::Table)
            .and_where(Expr::col(ResumableChunk::UploadKey).eq(key_text(key)))
            .and_where(Expr::col(ResumableChunk::Number).eq(as_i64(number)?))
            .and_where(Expr::col(ResumableChunk::Size).eq(as_i64(size)?))
            .to_owned();
        Ok(self.db.query_one(&select).await?.is_some())
    }

    /// Whether a chunk other than `number` of `size` bytes shares a byte with it, in an
    /// upload of chunks of `chunk_size` (chunk `n` starts at `(n − 1)·chunk_size`). With
    /// the recorded chunks disjoint, only two kinds can: those starting inside it, and the
    /// nearest one before it. Two index range reads, whatever the number of chunks.
    #[cfg(feature = "object-store")]
    pub(crate) async fn clashes(
        &self,
        key: &UploadKey,
        chunk_size: u64,
        number: u64,
        size: u64,
    ) -> Result<bool, DbErr> {
        let chunk_size = Ord::max(chunk_size, 1);
        let start = (number - 1).saturating_mul(chunk_size);
        let end = start.saturating_add(size);
        let last = if size == 0 {
            number
        } else {
            (end - 1) / chunk_size + 1
        };
        let inside = Query::select()
            .expr(Expr::val(1))
            .from(ResumableChunk::Table)
            .and_where(Expr::col(ResumableChunk::UploadKey).eq(key_text(key)))
            .and_where(Expr::col(ResumableChunk::Number).between(as_i64(number)?, as_i64(last)?))
            .and_where(
                Expr::col(ResumableChunk::Number)
                    .ne(as_i64(number)?)
                    .or(Expr::col(ResumableChunk::Size).ne(as_i64(size)?)),
            )
            .to_owned();
        if self.db.query_one(&inside).await?.is_some() {
            return Ok(true);
        }
        let before = Query::select()
            .columns([ResumableChunk::Number, ResumableChunk::Size])
            .from(ResumableChunk::Table)
            .and_where(Expr::col(ResumableChunk::UploadKey).eq(key_text(key)))
            .and_where(Expr::col(ResumableChunk::Number).lt(as_i64(number)?))
            .order_by(ResumableChunk::Number, sea_orm::sea_query::Order::Desc)
            .limit(1)
            .to_owned();
        let Some(row) = self.db.query_one(&before).await? else {
            return Ok(false);
        };
        let (previous, previous_size): (i64, i64) =
            (row.try_get("", "number")?, row.try_get("", "size")?);
        let previous_end = u64::try_from(previous - 1)
            .unwrap_or(0)
            .saturating_mul(chunk_size)
            .saturating_add(u64::try_from(previous_size).unwrap_or(0));
        Ok(previous_end > start)
    }

    /// The chunk with the highest number, if any is in.
    #[cfg(feature = "object-store")]
    pub(crate) async fn last_chunk(&self, key: &UploadKey) -> Result<Option<RecordedChunk>, DbErr> {
        let last = self
            .chunk_rows(key, sea_orm::sea_query::Order::Desc, Some(1))
            .await?;
        Ok(last.into_iter().next())
    }

    /// How many chunks are in.
    pub async fn count(&self, key: &UploadKey) -> Result<u64, DbErr> {
        let select = Query::select()
            .expr_as(Expr::col(ResumableChunk::Number).count(), "count")
            .from(ResumableChunk::Table)
            .and_where(Expr::col(ResumableChunk::UploadKey).eq(key_text(key)))
            .to_owned();
        let Some(row) = self.db.query_one(&select).await? else {
            return Ok(0);
        };
        let count: i64 = row.try_get("", "count")?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Every chunk that is in, by number.
    pub async fn chunks(&self, key: &UploadKey) -> Result<Vec<RecordedChunk>, DbErr> {
        self.chunk_rows(key, sea_orm::sea_query::Order::Asc, None)
            .await
    }

    /// The upload's chunks in `order` of their numbers, at most `limit` of them.
    async fn chunk_rows(
        &self,
        key: &UploadKey,
        order: sea_orm::sea_query::Order,
        limit: Option<u64>,
    ) -> Result<Vec<RecordedChunk>, DbErr> {
        let mut select = Query::select()
            .columns([
                ResumableChunk::Number,
                ResumableChunk::Size,
                ResumableChunk::Part,
            ])
            .from(ResumableChunk::Table)
            .and_where(Expr::col(ResumableChunk::UploadKey).eq(key_text(key)))
            .order_by(ResumableChunk::Number, order)
            .to_owned();
        if let Some(limit) = limit {
            select.limit(limit);
        }
        let unsigned = |n: i64| u64::try_from(n).map_err(|_| DbErr::Custom(format!("{n} < 0")));
        self.db
            .query_all(&select)
            .await?
            .into_iter()
            .map(|row| {
                Ok(RecordedChunk {
                    number: unsigned(row.try_get("", "number")?)?,
                    size: unsigned(row.try_get("", "size")?)?,
                    part: row.try_get("", "part")?,
                })
            })
            .collect()
    }

    /// Where the upload stands, if the ledger knows it (reads only).
    pub async fn state(&self, key: &UploadKey) -> Result<Option<UploadState>, DbErr> {
        let select = Query::select()
            .column(ResumableUpload::State)
            .from(ResumableUpload::Table)
            .and_where(Expr::col(ResumableUpload::Key).eq(key_text(key)))
            .to_owned();
        let Some(row) = self.db.query_one(&select).await? else {
            return Ok(None);
        };
        let state: String = row.try_get("", "state")?;
        Ok(Some(match state.as_str() {
            COMPLETE => UploadState::Complete,
            ASSEMBLING => UploadState::Assembling,
            _ => UploadState::Open,
        }))
    }

    /// Claims the right to assemble the upload: won by exactly one caller once the
    /// recorded chunks add up to the file's size (or again once the winner's lease has
    /// run out).
    pub async fn claim(&self, key: &UploadKey) -> Result<Claim, DbErr> {
        let now = now_millis();
        let expired = now.saturating_sub(i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX));
        // SUM over no rows is NULL, which equals nothing: a zero-byte file completes
        // once its one (empty) chunk is recorded, not before.
        let recorded_bytes = Query::select()
            .expr(Expr::col(ResumableChunk::Size).sum())
            .from(ResumableChunk::Table)
            .and_where(Expr::col(ResumableChunk::UploadKey).eq(key_text(key)))
            .to_owned();
        let update = Query::update()
            .table(ResumableUpload::Table)
            .value(ResumableUpload::State, ASSEMBLING)
            .value(ResumableUpload::ClaimedAt, now)
            .and_where(Expr::col(ResumableUpload::Key).eq(key_text(key)))
            .and_where(
                Expr::col(ResumableUpload::State)
                    .eq(OPEN)
                    .or(Expr::col(ResumableUpload::State)
                        .eq(ASSEMBLING)
                        .and(Expr::col(ResumableUpload::ClaimedAt).lt(expired))),
            )
            .and_where(
                Expr::col(ResumableUpload::TotalSize)
                    .eq(Expr::SubQuery(None, Box::new(recorded_bytes.into()))),
            )
            .to_owned();
        if self.db.execute(&update).await?.rows_affected() == 1 {
            return Ok(Claim::Won(ClaimToken(now)));
        }
        Ok(match self.state(key).await? {
            None => Claim::Unknown,
            Some(UploadState::Complete) => Claim::Complete,
            Some(UploadState::Assembling) => Claim::Assembling,
            Some(UploadState::Open) => Claim::NotAllIn,
        })
    }

    /// The database the ledger is in.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// How long a claim holds unless renewed.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Renews the claim `token` for another lease (an assembly that runs long); returns the
    /// new token, or `None` if `token` is no longer the upload's claim (its lease ran out
    /// and another server took it over).
    pub async fn renew(
        &self,
        key: &UploadKey,
        token: ClaimToken,
    ) -> Result<Option<ClaimToken>, DbErr> {
        let renewed = std::cmp::max(now_millis(), token.0 + 1);
        let update = Query::update()
            .table(ResumableUpload::Table)
            .value(ResumableUpload::ClaimedAt, renewed)
            .and_where(Expr::col(ResumableUpload::Key).eq(key_text(key)))
            .and_where(Expr::col(ResumableUpload::State).eq(ASSEMBLING))
            .and_where(Expr::col(ResumableUpload::ClaimedAt).eq(token.0))
            .to_owned();
        Ok((self.db.execute(&update).await?.rows_affected() == 1).then_some(ClaimToken(renewed)))
    }

    /// Marks the upload complete, if `token` is still its latest claim. Returns whether
    /// it did (`false`: the lease ran out and another server took the claim over, or the
    /// upload is gone).
    pub async fn complete(&self, key: &UploadKey, token: ClaimToken) -> Result<bool, DbErr> {
        let update = Query::update()
            .table(ResumableUpload::Table)
            .value(ResumableUpload::State, COMPLETE)
            .and_where(Expr::col(ResumableUpload::Key).eq(key_text(key)))
            .and_where(Expr::col(ResumableUpload::State).eq(ASSEMBLING))
            .and_where(Expr::col(ResumableUpload::ClaimedAt).eq(token.0))
            .to_owned();
        Ok(self.db.execute(&update).await?.rows_affected() == 1)
    }

    /// Gives a claim back (its assembly failed), so the next claim can win at once;
    /// returns whether `token` was still the upload's claim.
    pub async fn release(&self, key: &UploadKey, token: ClaimToken) -> Result<bool, DbErr> {
        let update = Query::update()
            .table(ResumableUpload::Table)
            .value(ResumableUpload::State, OPEN)
            .value(ResumableUpload::ClaimedAt, Option::<i64>::None)
            .and_where(Expr::col(ResumableUpload::Key).eq(key_text(key)))
            .and_where(Expr::col(ResumableUpload::State).eq(ASSEMBLING))
            .and_where(Expr::col(ResumableUpload::ClaimedAt).eq(token.0))
            .to_owned();
        Ok(self.db.execute(&update).await?.rows_affected() == 1)
    }

    /// Uploads to forget: unfinished ones with no chunk recorded for `incomplete_expiry`
    /// (nor created within it), and complete ones whose completion was claimed more than
    /// `complete_expiry` ago.
    ///
    /// ```
    /// # async fn f(ledger: sea_orm_resumable::testing::ChunkLedger) {
    /// use std::time::Duration;
    /// let day = Duration::from_secs(24 * 60 * 60);
    /// for key in ledger.stale(day, 7 * day).await.unwrap() {
    ///     ledger.remove(&key).await.unwrap();
    /// }
    /// # }
    /// ```
    pub async fn stale(
        &self,
        incomplete_expiry: Duration,
        complete_expiry: Duration,
    ) -> Result<Vec<UploadKey>, DbErr> {
        let before = |age: Duration| {
            now_millis().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))
        };
        let (incomplete_before, complete_before) =
            (before(incomplete_expiry), before(complete_expiry));
        // An upload being assembled under a live claim is not stale, however old.
        let lease_expired = before(self.lease);
        let recent_chunk = Query::select()
            .expr(Expr::val(1))
            .from(ResumableChunk::Table)
            .and_where(
                Expr::col((ResumableChunk::Table, ResumableChunk::UploadKey))
                    .equals((ResumableUpload::Table, ResumableUpload::Key)),
            )
            .and_where(Expr::col(ResumableChunk::RecordedAt).gte(incomplete_before))
            .to_owned();
        // A complete upload whose save is under way (or was cut short, see
        // `Uploads::recover_saves`) is kept until the save is finished or dropped.
        let being_saved = Query::select()
            .expr(Expr::val(1))
            .from(ResumableSave::Table)
            .and_where(
                Expr::col((ResumableSave::Table, ResumableSave::UploadKey))
                    .equals((ResumableUpload::Table, ResumableUpload::Key)),
            )
            .to_owned();
        let select = Query::select()
            .column(ResumableUpload::Key)
            .from(ResumableUpload::Table)
            .cond_where(
                sea_orm::sea_query::Cond::any()
                    .add(
                        Expr::col(ResumableUpload::State)
                            .eq(OPEN)
                            .or(Expr::col(ResumableUpload::State)
                                .eq(ASSEMBLING)
                                .and(Expr::col(ResumableUpload::ClaimedAt).lt(lease_expired)))
                            .and(Expr::col(ResumableUpload::CreatedAt).lt(incomplete_before))
                            .and(Expr::exists(recent_chunk).not()),
                    )
                    .add(
                        Expr::col(ResumableUpload::State)
                            .eq(COMPLETE)
                            .and(Expr::col(ResumableUpload::ClaimedAt).lt(complete_before))
                            .and(Expr::exists(being_saved).not()),
                    ),
            )
            .to_owned();
        self.db
            .query_all(&select)
            .await?
            .into_iter()
            .map(|row| {
                let key: String = row.try_get("", "key")?;
                UploadKey::from_hex(&key)
                    .ok_or_else(|| DbErr::Custom(format!("bad upload key in the ledger: {key:?}")))
            })
            .collect()
    }

    /// Forgets the upload and its chunks unless a save has reserved a path for it; returns
    /// whether it did (what expiry uses, so that a save under way keeps its upload).
    pub async fn remove_unless_saving(&self, key: &UploadKey) -> Result<bool, DbErr> {
        let being_saved = Query::select()
            .expr(Expr::val(1))
            .from(ResumableSave::Table)
            .and_where(Expr::col(ResumableSave::UploadKey).eq(key_text(key)))
            .to_owned();
        let upload = Query::delete()
            .from_table(ResumableUpload::Table)
            .and_where(Expr::col(ResumableUpload::Key).eq(key_text(key)))
            .and_where(Expr::exists(being_saved).not())
            .to_owned();
        if self.db.execute(&upload).await?.rows_affected() == 0 {
            return Ok(false);
        }
        let chunks = Query::delete()
            .from_table(ResumableChunk::Table)
            .and_where(Expr::col(ResumableChunk::UploadKey).eq(key_text(key)))
            .to_owned();
        self.db.execute(&chunks).await?;
        Ok(true)
    }

    /// Forgets the upload and its chunks (after it was saved, or when it expires).
    pub async fn remove(&self, key: &UploadKey) -> Result<(), DbErr> {
        let chunks = Query::delete()
            .from_table(ResumableChunk::Table)
            .and_where(Expr::col(ResumableChunk::UploadKey).eq(key_text(key)))
            .to_owned();
        let upload = Query::delete()
            .from_table(ResumableUpload::Table)
            .and_where(Expr::col(ResumableUpload::Key).eq(key_text(key)))
            .to_owned();
        self.db.execute(&chunks).await?;
        self.db.execute(&upload).await?;
        Ok(())
    }
}
