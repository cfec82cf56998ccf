//! Real databases for tests: an SQLite file per test, and a fresh schema per test in the
//! PostgreSQL server named by `DATABASE_URL` (tests/run.sh starts one and sets it).
#![allow(dead_code, unused_macros)]

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use std::path::Path;

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL URL, or `None` (the Postgres tests then say SKIPPED).
pub fn postgres_url() -> Option<String> {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| url.starts_with("postgres"))
}

/// A connection to an empty database of `backend`, or `None` when Postgres is not
/// configured. SQLite: a file in `dir`. Postgres: a new schema, first in the search path.
pub async fn connect(backend: Backend, dir: &Path) -> Option<DatabaseConnection> {
    match backend {
        Backend::Sqlite => {
            let url = format!("sqlite://{}?mode=rwc", dir.join("test.sqlite").display());
            Some(Database::connect(url).await.expect("open SQLite file"))
        }
        Backend::Postgres => {
            let Some(url) = postgres_url() else {
                eprintln!("SKIPPED: DATABASE_URL is not set to a PostgreSQL server");
                return None;
            };
            let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
            let admin = Database::connect(&url)
                .await
                .expect("connect to PostgreSQL");
            admin
                .execute_unprepared(&format!("CREATE SCHEMA {schema}"))
                .await
                .unwrap();
            admin.close().await.unwrap();
            let mut options = ConnectOptions::new(url);
            options
                .set_schema_search_path(schema)
                .max_connections(4)
                .sqlx_logging(false);
            Some(
                Database::connect(options)
                    .await
                    .expect("connect to the schema"),
            )
        }
    }
}

/// Two connection pools to one empty database of `backend` (as two servers would have),
/// or `None` when Postgres is not configured.
pub async fn connect_twice(
    backend: Backend,
    dir: &Path,
) -> Option<(DatabaseConnection, DatabaseConnection)> {
    let first = connect(backend, dir).await?;
    let second = match backend {
        Backend::Sqlite => connect(backend, dir).await?,
        Backend::Postgres => {
            let row = first
                .query_one_raw(sea_orm::Statement::from_string(
                    first.get_database_backend(),
                    "SELECT current_schema()",
                ))
                .await
                .unwrap()
                .unwrap();
            let schema: String = row.try_get_by_index(0).unwrap();
            let mut options = ConnectOptions::new(postgres_url()?);
            options
                .set_schema_search_path(schema)
                .max_connections(4)
                .sqlx_logging(false);
            Database::connect(options).await.expect("connect again")
        }
    };
    Some((first, second))
}

/// Runs each named `async fn name(backend: Backend)` as two tests, `sqlite::name` and
/// `postgres::name`.
macro_rules! on_both_databases {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::db::Backend::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::db::Backend::Postgres).await
                }
            )+
        }
    };
}
