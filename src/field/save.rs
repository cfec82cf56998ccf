//! Saving a file field: the hook before the row is written reserves the final name, the
//! hook after it moves the file there.
//!
//! The order is what makes a failed save harmless. `before_save` only *reserves* a unique
//! path (a reservation file in the chunk area, plus an entry in this process) and puts it
//! in the column; nothing appears under the media root. If the INSERT or UPDATE fails,
//! `after_save` never runs: the upload is untouched and can be saved again (the retry
//! replaces the stale reservation). Once the row is stored, `after_save` links the
//! upload's file to the reserved path (never replacing a file), then removes the upload's
//! temporary state.
//!
//! sea-orm passes the hooks only the model and the connection, so the move prepared in
//! `before_save` is found again in `after_save` through a process-wide table keyed by the
//! reserved path (which is unique in the process: the reservation checks the table).

use sea_orm::{
    ActiveModelTrait, ActiveValue, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, Iterable,
    PrimaryKeyToColumn, QueryFilter, QuerySelect, Value,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::{
    collections::HashMap,
    fs, io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    str::FromStr,
    sync::{Arc, Mutex, MutexGuard},
};

use super::{
    FileFieldOptions, ResumableFileField, UploadTo,
    name::{alternative_path, stored_path},
    sanitize_file_name,
    value::db_error,
};
use crate::{UploadKey, UploadMeta, Uploads, media::check_relative};

/// A completed upload, checked and ready to be moved into a model's file field: what
/// [`ResumableFileField::from_token`] holds until the model is saved.
#[derive(Debug)]
pub struct PendingUpload {
    pub(crate) uploads: Uploads,
    pub(crate) chunks_upload_to: Option<&'static str>,
    pub(crate) key: UploadKey,
    pub(crate) meta: UploadMeta,
    pub(crate) data_path: PathBuf,
}

impl PendingUpload {
    /// The upload's key.
    pub fn key(&self) -> UploadKey {
        self.key
    }

    /// What the client said about the file (name, size, type).
    pub fn meta(&self) -> &UploadMeta {
        &self.meta
    }

    /// Where the complete file is now, in the chunk directory.
    pub fn data_path(&self) -> &Path {
        &self.data_path
    }

    fn is_same_upload(&self, other: &PendingUpload) -> bool {
        self.key == other.key
            && self.chunks_upload_to == other.chunks_upload_to
            && self.uploads.settings().media_root == other.uploads.settings().media_root
    }
}

/// A column value that may hold a file field: `ResumableFileField<C>` (NOT NULL) or
/// `Option<ResumableFileField<C>>` (nullable). The save hooks accept either.
pub trait FileValue: Sized + Send + Sync + Into<Value> + 'static {
    /// The field's options type.
    type Options: FileFieldOptions;
    /// The field, unless the value is `None`.
    fn field(&self) -> Option<&ResumableFileField<Self::Options>>;
    /// Wraps a field back into this value type.
    fn from_field(field: ResumableFileField<Self::Options>) -> Self;
}

impl<C: FileFieldOptions> FileValue for ResumableFileField<C> {
    type Options = C;
    fn field(&self) -> Option<&ResumableFileField<C>> {
        Some(self)
    }
    fn from_field(field: ResumableFileField<C>) -> Self {
        field
    }
}

impl<C: FileFieldOptions> FileValue for Option<ResumableFileField<C>> {
    type Options = C;
    fn field(&self) -> Option<&ResumableFileField<C>> {
        self.as_ref()
    }
    fn from_field(field: ResumableFileField<C>) -> Self {
        Some(field)
    }
}

/// A move prepared by `before_save`, done by `after_save` once the row is stored.
#[derive(Debug)]
struct PreparedMove {
    upload: Arc<PendingUpload>,
    /// Final path relative to the media root (the column's value).
    relative: String,
    /// The file to link there: the upload's data file, or a copy next to the target when
    /// the chunk directory is on another file system.
    source: PathBuf,
    staged: bool,
    /// The reservation file that keeps `relative` taken across processes.
    reservation: PathBuf,
    /// An old file to delete once the row is stored (`DELETE_REPLACED`).
    replaced: Option<String>,
}

/// What a reservation file holds: enough to finish or undo the save after a crash
/// between the row being stored and the file being moved (the row is looked up by
/// table, column and path).
#[derive(Serialize, Deserialize)]
struct Reservation {
    key: String,
    chunks_upload_to: Option<String>,
    path: String,
    table: String,
    column: String,
}

/// Where a save is going: the row's table and the file column.
struct Destination<'a> {
    table: &'a str,
    column: &'a str,
}

/// Moves prepared in this process, by final relative path.
static PREPARED: Mutex<Option<HashMap<String, PreparedMove>>> = Mutex::new(None);

fn prepared() -> MutexGuard<'static, Option<HashMap<String, PreparedMove>>> {
    PREPARED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Attempts at a unique name before giving up (each alternative has 62^7 choices).
const NAME_ATTEMPTS: usize = 32;

/// The `before_save` half for one field: if `value` is a newly set pending upload, reserves
/// its final path (from [`UploadTo`], made safe and unique) and returns the value holding
/// that path; a newly set stored path is checked to be plain. Anything else passes
/// through. `column` is the field's column name, used only when the options say to delete
/// a replaced file. [`file_field_hooks!`](crate::file_field_hooks) calls this for you.
pub async fn before_save<AM, V, Db>(
    value: ActiveValue<V>,
    model: &AM,
    column: &str,
    db: &Db,
    insert: bool,
) -> Result<ActiveValue<V>, DbErr>
where
    AM: ActiveModelTrait + Sync,
    V: FileValue,
    V::Options: UploadTo<AM>,
    Db: ConnectionTrait,
{
    let ActiveValue::Set(new) = value else {
        return Ok(value);
    };
    let Some(field) = new.field() else {
        return Ok(ActiveValue::Set(new));
    };
    if let Some(path) = field.state_path() {
        check_relative(path).map_err(db_error)?;
        return Ok(ActiveValue::Set(new));
    }
    let Some(upload) = field.state_pending().cloned() else {
        return Ok(ActiveValue::Set(new));
    };
    let replaced = if !insert && V::Options::DELETE_REPLACED {
        stored_value(model, column, db).await?
    } else {
        None
    };
    let file_name = sanitize_file_name(&upload.meta.file_name);
    let wanted = <V::Options as UploadTo<AM>>::upload_to(model, &file_name);
    let relative = stored_path(&wanted, V::Options::MAX_LENGTH).map_err(db_error)?;
    let table = sea_orm::EntityName::table_name(&AM::Entity::default()).to_owned();
    let column = column.to_owned();
    let relative = tokio::task::spawn_blocking(move || {
        let destination = Destination {
            table: &table,
            column: &column,
        };
        prepare_move(upload, relative, replaced, &destination)
    })
    .await
    .map_err(db_error)?
    .map_err(|e| db_error(format!("cannot prepare the file for saving: {e}")))?;
    Ok(ActiveValue::Set(V::from_field(
        ResumableFileField::stored_unchecked(relative),
    )))
}

/// The `after_save` half for one field: if the saved row's path is one `before_save`
/// reserved in this process, moves the upload's file there, removes the upload's
/// temporary state and, if configured, the replaced file.
/// [`file_field_hooks!`](crate::file_field_hooks) calls this for you.
pub async fn after_save<V: FileValue>(value: &V) -> Result<(), DbErr> {
    let Some(path) = value.field().and_then(|f| f.state_path()) else {
        return Ok(());
    };
    let Some(prepared) = prepared().as_mut().and_then(|m| m.remove(path)) else {
        return Ok(());
    };
    let upload = prepared.upload.clone();
    let media_root = upload.uploads.settings().media_root.clone();
    let replaced = prepared.replaced.clone();
    tokio::task::spawn_blocking(move || commit_move(&media_root, &prepared))
        .await
        .map_err(db_error)?
        .map_err(|e| {
            db_error(format!(
                "the row is saved but its file could not be moved: {e}"
            ))
        })?;
    if let Err(e) = upload
        .uploads
        .release(upload.chunks_upload_to, upload.key)
        .await
    {
        tracing::warn!(key = %upload.key, error = %e, "could not remove a saved upload's chunk files");
    }
    if let Some(old) = replaced.filter(|old| old != path) {
        match upload.uploads.media().path(&old) {
            Ok(old) => match tokio::fs::remove_file(&old).await {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = ?old, error = %e, "could not delete a replaced file")
                }
            },
            Err(e) => tracing::warn!(error = %e, "not deleting a replaced file"),
        }
    }
    Ok(())
}

/// The column's current value in the database, for the row `model` is about to update.
async fn stored_value<AM, Db>(model: &AM, column: &str, db: &Db) -> Result<Option<String>, DbErr>
where
    AM: ActiveModelTrait,
    Db: ConnectionTrait,
{
    type Column<AM> = <<AM as ActiveModelTrait>::Entity as EntityTrait>::Column;
    type PrimaryKey<AM> = <<AM as ActiveModelTrait>::Entity as EntityTrait>::PrimaryKey;
    let file_column = Column::<AM>::from_str(column)
        .map_err(|_| db_error(format!("the entity has no column {column:?}")))?;
    let mut select = <AM::Entity as EntityTrait>::find()
        .select_only()
        .column(file_column);
    for key in PrimaryKey::<AM>::iter() {
        let key_column = key.into_column();
        match model.get(key_column) {
            ActiveValue::Set(v) | ActiveValue::Unchanged(v) => {
                select = select.filter(key_column.eq(v));
            }
            ActiveValue::NotSet => return Ok(None),
        }
    }
    Ok(select
        .into_tuple::<Option<String>>()
        .one(db)
        .await?
        .flatten())
}

/// Reserves a unique final path for `upload` (starting from `relative`) and records the
/// move. A stale reservation of the same upload (an earlier save that failed) is dropped
/// first.
fn prepare_move(
    upload: Arc<PendingUpload>,
    relative: String,
    replaced: Option<String>,
    destination: &Destination<'_>,
) -> io::Result<String> {
    let settings = upload.uploads.settings();
    let media_root = settings.media_root.clone();
    let reservations = settings.chunk_dir().join("saving");
    fs::create_dir_all(&reservations)?;
    let mut guard = prepared();
    let moves = guard.get_or_insert_with(HashMap::new);
    let stale: Vec<String> = moves
        .iter()
        .filter(|(_, m)| m.upload.is_same_upload(&upload))
        .map(|(path, _)| path.clone())
        .collect();
    for path in stale {
        if let Some(old) = moves.remove(&path) {
            discard(&old);
        }
    }
    let mut candidate = relative.clone();
    for _ in 0..NAME_ATTEMPTS {
        let target = media_root.join(&candidate);
        let reservation = reservations.join(reservation_name(&candidate));
        let free = !moves.contains_key(&candidate)
            && !target.try_exists()?
            && reserve(&reservation, &upload, &candidate, destination)?;
        if free {
            let (source, staged) = match stage(&upload, &media_root, &target) {
                Ok(staged) => staged,
                Err(e) => {
                    let _ = fs::remove_file(&reservation);
                    return Err(e);
                }
            };
            moves.insert(
                candidate.clone(),
                PreparedMove {
                    upload,
                    relative: candidate.clone(),
                    source,
                    staged,
                    reservation,
                    replaced,
                },
            );
            return Ok(candidate);
        }
        candidate = alternative_path(&relative);
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free name near {relative:?}"),
    ))
}

/// The reservation file name of a relative path: a hash, since paths nest.
fn reservation_name(relative: &str) -> String {
    format!(
        "{}.json",
        hex::encode(&Sha256::digest(relative.as_bytes())[..16])
    )
}

/// Takes the reservation file for `relative`; true if it is now ours (created, or left by
/// an earlier attempt of the same upload).
fn reserve(
    reservation: &Path,
    upload: &PendingUpload,
    relative: &str,
    destination: &Destination<'_>,
) -> io::Result<bool> {
    let record = Reservation {
        key: upload.key.to_string(),
        chunks_upload_to: upload.chunks_upload_to.map(str::to_owned),
        path: relative.to_owned(),
        table: destination.table.to_owned(),
        column: destination.column.to_owned(),
    };
    let json = serde_json::to_vec(&record).map_err(io::Error::other)?;
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(reservation)
    {
        Ok(mut file) => {
            io::Write::write_all(&mut file, &json)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let held: Option<Reservation> = fs::read(reservation)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok());
            Ok(held.is_some_and(|held| {
                held.key == record.key && held.chunks_upload_to == record.chunks_upload_to
            }))
        }
        Err(e) => Err(e),
    }
}

/// The private directory under the media root for copies waiting to be linked.
pub(crate) const STAGING_DIR: &str = ".resumable_staging";

/// The file to link at `target` when the row is stored: the upload's data file when it is
/// on the same file system as the target's directory; else a copy made now (synced) on
/// the target's file system, so the step after the row is stored is a link either way.
/// The copy goes to the media root's staging directory when that is on the target's file
/// system (it usually is), so a failed save leaves nothing in the `upload_to` directory;
/// otherwise next to the target, hidden.
fn stage(upload: &PendingUpload, media_root: &Path, target: &Path) -> io::Result<(PathBuf, bool)> {
    let dir = target.parent().unwrap_or(media_root);
    fs::create_dir_all(dir)?;
    let target_device = fs::metadata(dir)?.dev();
    if fs::metadata(&upload.data_path)?.dev() == target_device {
        return Ok((upload.data_path.clone(), false));
    }
    let staging = media_root.join(STAGING_DIR);
    fs::create_dir_all(&staging)?;
    let name = format!("{}.resumable-staging", upload.key);
    let staged = if fs::metadata(&staging)?.dev() == target_device {
        staging.join(name)
    } else {
        dir.join(format!(".{name}"))
    };
    fs::copy(&upload.data_path, &staged)?;
    fs::File::open(&staged)?.sync_all()?;
    Ok((staged, true))
}

/// Undoes a prepared move that will not be committed.
fn discard(prepared: &PreparedMove) {
    if prepared.staged {
        let _ = fs::remove_file(&prepared.source);
    }
    let _ = fs::remove_file(&prepared.reservation);
}

/// Links the prepared file at its final path (never replacing a file), syncs the
/// directory, and drops the staging copy and the reservation.
fn commit_move(media_root: &Path, prepared: &PreparedMove) -> io::Result<()> {
    let target = media_root.join(&prepared.relative);
    match fs::hard_link(&prepared.source, &target) {
        Ok(()) => {}
        Err(e)
            if e.kind() == io::ErrorKind::AlreadyExists && same_file(&prepared.source, &target) => {
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
        // File systems without hard links: a rename, after checking the name is free.
        Err(_) if !target.try_exists()? => fs::rename(&prepared.source, &target)?,
        Err(e) => return Err(e),
    }
    if let Some(dir) = target.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    if prepared.staged {
        let _ = fs::remove_file(&prepared.source);
    }
    let _ = fs::remove_file(&prepared.reservation);
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Implements `ActiveModelBehavior` for the entity module's `ActiveModel` so that saving
/// (`insert`, `update`, `save`) moves the named file fields' uploads into place. Put it in
/// the entity module, beside `Model` and `ActiveModel`.
///
/// If the model has hooks of its own, call [`before_save`] and [`after_save`] from them
/// instead, one line per field:
///
/// ```ignore
/// async fn before_save<C: ConnectionTrait>(mut self, db: &C, insert: bool) -> Result<Self, DbErr> {
///     let file = std::mem::take(&mut self.file);
///     self.file = sea_orm_resumable::field::before_save(file, &self, "file", db, insert).await?;
///     Ok(self)
/// }
/// async fn after_save<C: ConnectionTrait>(model: Model, _db: &C, _insert: bool) -> Result<Model, DbErr> {
///     sea_orm_resumable::field::after_save(&model.file).await?;
///     Ok(model)
/// }
/// ```
///
/// Hooks run for `ActiveModel::insert`, `update` and `save` only. `Entity::insert(..)
/// .exec(..)`, `insert_many` and `update_many` skip them: a pending upload then writes
/// `NULL` (refused by a NOT NULL column). `update_without_returning` runs `before_save`
/// but not `after_save`: use `update`. A save inside a transaction that later rolls back
/// has already moved its file.
#[macro_export]
macro_rules! file_field_hooks {
    ($($field:ident),+ $(,)?) => {
        #[$crate::__private::async_trait]
        impl $crate::__private::sea_orm::ActiveModelBehavior for ActiveModel {
            async fn before_save<C>(
                mut self,
                db: &C,
                insert: bool,
            ) -> ::std::result::Result<Self, $crate::__private::sea_orm::DbErr>
            where
                C: $crate::__private::sea_orm::ConnectionTrait,
            {
                $(
                    let value = ::std::mem::take(&mut self.$field);
                    self.$field = $crate::field::before_save(
                        value, &self, stringify!($field), db, insert,
                    )
                    .await?;
                )+
                Ok(self)
            }

            async fn after_save<C>(
                model: Model,
                _db: &C,
                _insert: bool,
            ) -> ::std::result::Result<Model, $crate::__private::sea_orm::DbErr>
            where
                C: $crate::__private::sea_orm::ConnectionTrait,
            {
                $( $crate::field::after_save(&model.$field).await?; )+
                Ok(model)
            }
        }
    };
}
