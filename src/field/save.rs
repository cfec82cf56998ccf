//! Saving a file field: the hook before the row is written reserves the final name, the
//! hook after it moves the file there (the bookkeeping is in [`moves`](super::moves)).
//!
//! The order is what makes a failed save harmless. `before_save` only *reserves* a unique
//! path and puts it in the column; nothing appears under the `upload_to` directory. If the
//! INSERT or UPDATE fails, `after_save` never runs: the upload is untouched and can be
//! saved again (the retry takes the reservation over). Once the row is stored,
//! `after_save` links the upload's file to the reserved path (never replacing a file),
//! then removes the upload's temporary state.
//!
//! A second save of an upload while an earlier one is unfinished looks for the earlier
//! one's row: if it is stored, the upload is taken and the save is refused; if not, the
//! second save takes the reservation over (same path wanted) or reserves its own. Every
//! row that gets stored names a file that is moved there; two concurrent saves of one
//! upload may both store rows naming the same file, never a path without a file.

use sea_orm::{
    ActiveModelTrait, ActiveValue, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, Iterable,
    ModelTrait, PrimaryKeyToColumn, QueryFilter, QuerySelect, Value,
};
use std::{io, path::Path, str::FromStr};

use super::{
    FileFieldOptions, ResumableFileField, UploadTo,
    moves::{self, Commit, Destination, MoveKey},
    name::stored_path,
    row::{ALREADY_SAVED, row_holds},
    sanitize_file_name,
    value::hook_error,
};
use crate::{faults::fault_point, storage::media::check_relative};

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

/// The `before_save` half for one field: if `value` is a newly set pending upload, reserves
/// its final path (from [`UploadTo`], made safe and unique) and returns the value holding
/// that path; a newly set stored path is checked to be plain. Anything else passes
/// through. `column` is the field's name in the model.
/// [`file_field_hooks!`](crate::file_field_hooks) calls this for you.
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
        check_relative(path).map_err(hook_error)?;
        return Ok(ActiveValue::Set(new));
    }
    let Some(upload) = field.state_pending().cloned() else {
        return Ok(ActiveValue::Set(new));
    };
    let destination = destination_of::<AM::Entity>(column)?;
    let connection = connection_id(db);
    let replaced = if !insert && V::Options::DELETE_REPLACED {
        stored_value(model, column, db).await?
    } else {
        None
    };
    let file_name = sanitize_file_name(&upload.meta.file_name);
    let wanted = <V::Options as UploadTo<AM>>::upload_to(model, &file_name);
    let wanted = stored_path(&wanted, V::Options::MAX_LENGTH).map_err(hook_error)?;
    #[cfg(feature = "object-store")]
    if let Some(shared) = upload.uploads.shared() {
        let path = super::object_save::before_save(
            upload.clone(),
            shared,
            wanted,
            replaced,
            destination,
            db,
        )
        .await?;
        return Ok(ActiveValue::Set(V::from_field(
            ResumableFileField::stored_unchecked(path),
        )));
    }

    // An unfinished earlier save of this upload: refused if its row is stored (the upload
    // is taken); taken over if it goes to the same place (a retry after a failure, or the
    // same form submitted twice); else left to finish or go stale.
    let earlier = blocking({
        let upload = upload.clone();
        move || Ok(moves::earlier_save(&upload))
    })
    .await?;
    let mut take_over = match earlier {
        None => None,
        Some(earlier) if row_holds(db, &earlier.key).await? => {
            return Err(hook_error(ALREADY_SAVED));
        }
        Some(earlier)
            if earlier.wanted == wanted
                && earlier.replaced == replaced
                && earlier.key.destination == destination =>
        {
            Some(earlier.key)
        }
        Some(_) => None,
    };
    // A path some row already holds (its file deleted since) is not free either.
    let mut avoid = Vec::new();
    for _ in 0..4 {
        let took_over = take_over.is_some();
        let relative = blocking({
            let (upload, wanted, replaced) = (upload.clone(), wanted.clone(), replaced.clone());
            let (destination, take_over, avoid) =
                (destination.clone(), take_over.take(), avoid.clone());
            move || {
                let data = upload.data_path.clone();
                let save = moves::Save {
                    destination: &destination,
                    connection,
                };
                moves::prepare(upload, wanted, replaced, &save, take_over, &avoid)
                    .map_err(|e| prepare_error(&e, &data))
            }
        })
        .await?;
        let key = MoveKey {
            destination: destination.clone(),
            relative: relative.clone(),
        };
        if took_over || !row_holds(db, &key).await? {
            fault_point!("save-reserved");
            return Ok(ActiveValue::Set(V::from_field(
                ResumableFileField::stored_unchecked(relative),
            )));
        }
        // Held by a row: ours is not the only save of this move if a second save of the
        // upload took it over meanwhile, and then that row is most likely its own: the
        // upload is taken. Only a move of ours alone is given up for another name.
        let shared = blocking(move || Ok(moves::cancel(&key, connection))).await?;
        if shared {
            return Err(hook_error(ALREADY_SAVED));
        }
        avoid.push(relative);
    }
    Err(hook_error(format!("no free name near {wanted:?}")))
}

/// The `after_save` half for one field: if the saved row's path is one `before_save`
/// reserved in this process, links the upload's file there, removes the upload's
/// temporary state and, if configured, the replaced file. `column` is the field's name
/// in the model. [`file_field_hooks!`](crate::file_field_hooks) calls this for you.
pub async fn after_save<M, V, Db>(_model: &M, value: &V, column: &str, db: &Db) -> Result<(), DbErr>
where
    M: ModelTrait,
    V: FileValue,
    Db: ConnectionTrait,
{
    let Some(path) = value.field().and_then(|f| f.state_path()) else {
        return Ok(());
    };
    let key = MoveKey {
        destination: destination_of::<M::Entity>(column)?,
        relative: path.to_owned(),
    };
    #[cfg(feature = "object-store")]
    if super::object_save::after_save(&key).await? {
        return Ok(());
    }
    let connection = connection_id(db);
    fault_point!("save-stored");
    let committed = blocking(move || {
        moves::commit(&key, connection).map_err(|e| {
            hook_error(format!(
                "the row is saved but its file could not be moved: {e}"
            ))
        })
    })
    .await?;
    let committed = match committed {
        Commit::Done(committed) => committed,
        Commit::NotPrepared => return Ok(()),
        Commit::Dropped => {
            return Err(hook_error(
                "the row is saved but its file was not: the save took so long that it was \
                 given up; please upload the file again",
            ));
        }
    };
    let upload = &committed.upload;
    fault_point!("save-linked");
    if committed.release_chunks {
        if let Err(e) = upload
            .uploads
            .release(upload.chunks_upload_to, upload.key)
            .await
        {
            tracing::warn!(key = %upload.key, error = %e, "could not remove a saved upload's chunk files");
        }
        let upload = upload.clone();
        blocking(move || {
            moves::released(&upload);
            Ok(())
        })
        .await?;
    }
    fault_point!("save-released");
    // Last: until now the reservation told a restart's recovery that this row's save may
    // be unfinished (see `Uploads::recover_saves`).
    if let Err(e) = tokio::fs::remove_file(&committed.reservation).await
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = ?committed.reservation, error = %e, "could not remove a reservation");
    }
    if let Some(old) = committed.replaced.filter(|old| old != path) {
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

/// Runs blocking file work (and the move table, whose lock is held while a file is
/// linked) off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DbErr> + Send + 'static,
) -> Result<T, DbErr> {
    tokio::task::spawn_blocking(f).await.map_err(hook_error)?
}

/// A failed reservation as a hook error: the upload's data file gone means another save
/// of it was just stored.
fn prepare_error(e: &io::Error, data: &Path) -> DbErr {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::AlreadyExists if !data.exists() => {
            hook_error(ALREADY_SAVED)
        }
        io::ErrorKind::AlreadyExists => hook_error(e),
        _ => hook_error(format!("cannot prepare the file for saving: {e}")),
    }
}

/// Which connection a save goes through, as the address of the connection sea-orm hands
/// both hooks of one `insert`/`update`. It tells apart saves to the same table and path
/// through different databases in one process (say, two tenants with their own media
/// roots), whose rows `after_save` could not otherwise tell apart.
fn connection_id<Db>(db: &Db) -> usize {
    std::ptr::from_ref(db).addr()
}

/// The row's table and the file column's name in the database, for the field `column`.
fn destination_of<E: EntityTrait>(column: &str) -> Result<Destination, DbErr> {
    let entity = E::default();
    let column = E::Column::from_str(column)
        .map_err(|_| hook_error(format!("the entity has no column {column:?}")))?;
    Ok(Destination {
        schema: entity.schema_name().map(str::to_owned),
        table: entity.table_name().to_owned(),
        column: sea_orm::IdenStatic::as_str(&column).to_owned(),
    })
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
        .map_err(|_| hook_error(format!("the entity has no column {column:?}")))?;
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

/// Implements `ActiveModelBehavior` for the entity module's `ActiveModel` so that saving
/// (`insert`, `update`, `save`) moves the named file fields' uploads into place. Put it in
/// the entity module, beside `Model` and `ActiveModel`.
///
/// ```
/// use sea_orm::entity::prelude::*;
/// use sea_orm_resumable::ResumableFileField;
///
/// sea_orm_resumable::file_field! { pub struct Scans { upload_to: "scans" } }
///
/// #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
/// #[sea_orm(table_name = "scan")]
/// pub struct Model {
///     #[sea_orm(primary_key)]
///     pub id: i32,
///     pub file: ResumableFileField<Scans>,
/// }
/// #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
/// pub enum Relation {}
///
/// sea_orm_resumable::file_field_hooks!(file);
/// # fn main() {}
/// ```
///
/// If the model has hooks of its own, call [`before_save`] and [`after_save`] from them
/// instead, one line per field:
///
/// ```
/// # use sea_orm::entity::prelude::*;
/// # use sea_orm_resumable::ResumableFileField;
/// # sea_orm_resumable::file_field! { pub struct Scans { upload_to: "scans" } }
/// # #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
/// # #[sea_orm(table_name = "scan")]
/// # pub struct Model {
/// #     #[sea_orm(primary_key)]
/// #     pub id: i32,
/// #     pub title: String,
/// #     pub file: ResumableFileField<Scans>,
/// # }
/// # #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
/// # pub enum Relation {}
/// #[async_trait::async_trait]
/// impl ActiveModelBehavior for ActiveModel {
///     async fn before_save<C: ConnectionTrait>(mut self, db: &C, insert: bool) -> Result<Self, DbErr> {
///         if let sea_orm::ActiveValue::Set(title) = &mut self.title {
///             *title = title.trim().to_owned();
///         }
///         let file = std::mem::take(&mut self.file);
///         self.file = sea_orm_resumable::field::before_save(file, &self, "file", db, insert).await?;
///         Ok(self)
///     }
///
///     async fn after_save<C: ConnectionTrait>(model: Model, db: &C, _insert: bool) -> Result<Model, DbErr> {
///         sea_orm_resumable::field::after_save(&model, &model.file, "file", db).await?;
///         Ok(model)
///     }
/// }
/// # fn main() {}
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
                db: &C,
                _insert: bool,
            ) -> ::std::result::Result<Model, $crate::__private::sea_orm::DbErr>
            where
                C: $crate::__private::sea_orm::ConnectionTrait,
            {
                $(
                    $crate::field::after_save(&model, &model.$field, stringify!($field), db)
                        .await?;
                )+
                Ok(model)
            }
        }
    };
}
