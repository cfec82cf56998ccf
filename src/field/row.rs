//! What the database says of a save: whether a row already holds a path, and the
//! refusal when an upload is in a row already. Both save paths (local files and object
//! storage) and recovery ask it.

use sea_orm::{ConnectionTrait, DbErr};

use super::moves::MoveKey;

/// The message of a save refused because the upload is already in a row.
pub(super) const ALREADY_SAVED: &str =
    "this upload is already saved in another row; please upload the file again";

/// Whether a row already holds the path of `key` in its file column.
pub(super) async fn row_holds<Db: ConnectionTrait>(db: &Db, key: &MoveKey) -> Result<bool, DbErr> {
    use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
    let destination = &key.destination;
    let mut query = Query::select();
    query.expr(Expr::val(1));
    let table = Alias::new(destination.table.as_str());
    match &destination.schema {
        Some(schema) => query.from((Alias::new(schema.as_str()), table)),
        None => query.from(table),
    };
    query
        .and_where(ExprTrait::eq(
            Expr::col(Alias::new(destination.column.as_str())),
            key.relative.as_str(),
        ))
        .limit(1);
    let statement = db.get_database_backend().build(&query);
    Ok(db.query_one_raw(statement).await?.is_some())
}
