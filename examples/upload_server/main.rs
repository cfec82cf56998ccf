//! The example upload app: the resumable upload endpoint on a local media directory, and
//! documents (title + file) stored in a database with a `ResumableFileField`.
//!
//! ```text
//! cargo run --release --example upload_server -- --bind 127.0.0.1:8000 --media-root ./media
//! ```
//!
//! Point resumable.js or flow.js at `http://127.0.0.1:8000/resumable_upload/`, then post
//! the token it answers with to `/documents` (form fields `title` and `file`).
//!
//! With `--require-login --user alice:secret1 --user bob:secret2`, everything but `/login`
//! and the static assets needs a session (log in with a `POST /login` of `username` and
//! `password`), each user sees only their own uploads and documents, and every POST needs
//! the session's CSRF token (form field `csrf_token`, or the `X-CSRF-Token` header the
//! widget sends).

mod document;
mod login;
mod shared;
mod web;

use axum::http::request::Parts;
use clap::Parser;
use migration::{Migrator, MigratorTrait};
use sea_orm_resumable::{Secret, Settings, Uploads};
use std::{net::SocketAddr, path::PathBuf, time::Duration};
use tracing_subscriber::EnvFilter;

/// Resumable uploads of large files (resumable.js / flow.js protocol).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    bind: SocketAddr,
    /// Root of stored files; chunks go under <media-root>/<chunk-subdir>.
    #[arg(long, default_value = "./media")]
    media_root: PathBuf,
    /// Chunk subdirectory under the media root.
    #[arg(long, env = "RESUMABLE_SUBDIR", default_value = sea_orm_resumable::DEFAULT_CHUNK_SUBDIR)]
    chunk_subdir: PathBuf,
    /// Directory for the app's own state (the generated signing secret); default: `data`
    /// beside the media root.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Signing secret for upload tokens (at least 16 bytes); default: generated once into
    /// the data directory.
    #[arg(long, env = "RESUMABLE_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Largest file accepted, in bytes.
    #[arg(long, default_value_t = 100 << 30)]
    max_file_size: u64,
    /// Record a chunk as soon as its bytes are written, without first flushing them to
    /// the disk (faster where flushes are slow). A crash of the server stays safe; a power
    /// cut or kernel crash may leave a recorded chunk whose bytes were lost, i.e. a
    /// corrupt file (Settings::sync_data = false).
    #[arg(long)]
    no_sync_data: bool,
    /// Database URL (`sqlite://…?mode=rwc` or `postgres://…`); default: an SQLite file
    /// `upload_server.sqlite` beside the media root. Migrations run at start.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Only logged-in users may upload, see documents and download files; each sees
    /// only their own. Log in at `/login`.
    #[arg(long, requires = "users")]
    require_login: bool,
    /// A user who may log in, as NAME:PASSWORD (repeat for more users).
    #[arg(long = "user", value_name = "NAME:PASSWORD", value_parser = login::parse_user_flag, requires = "require_login")]
    users: Vec<login::UserFlag>,
    /// Keep chunks and saved files in this S3 bucket instead of the media root, with
    /// which chunks are in recorded in the database: every server started with the same
    /// bucket and --database-url serves the same uploads (put them behind one load
    /// balancer). Chunks go under <chunk-subdir>/ in the bucket; credentials come from
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
    #[arg(long, env = "RESUMABLE_S3_BUCKET")]
    s3_bucket: Option<String>,
    /// Endpoint of an S3-compatible server (MinIO, Ceph, R2, s3s-fs…); default: AWS.
    #[arg(long, env = "RESUMABLE_S3_ENDPOINT", requires = "s3_bucket")]
    s3_endpoint: Option<String>,
    /// The bucket's region.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    s3_region: String,
    /// Send chunks of 5–64 MiB straight into the file's multipart upload as its parts, so
    /// completion copies nothing (every server must agree on this flag).
    #[arg(long, requires = "s3_bucket")]
    s3_parts: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let beside_media = args
        .media_root
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."))
        .to_owned();
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| beside_media.join("data"));
    let secret = match &args.secret {
        Some(text) => Secret::new(text.clone().into_bytes())?,
        None => Secret::load_or_generate(data_dir.join("secret")).await?,
    };
    let settings = Settings {
        chunk_subdir: args.chunk_subdir.clone(),
        max_file_size: args.max_file_size,
        sync_data: !args.no_sync_data,
        ..Settings::new(&args.media_root)
    };
    let database_url = match &args.database_url {
        Some(url) => url.clone(),
        None => {
            std::fs::create_dir_all(&beside_media)?;
            let file = beside_media.join("upload_server.sqlite");
            format!("sqlite://{}?mode=rwc", file.display())
        }
    };
    let db = sea_orm::Database::connect(&database_url).await?;
    Migrator::up(&db, None).await?;

    // Each logged-in user is an upload scope: nobody tests, writes or claims another
    // user's uploads. Without --require-login everybody shares the anonymous scope.
    let require_login = args.require_login;
    let mut builder = Uploads::builder(settings, secret)
        .scope(move |parts: &Parts| login::scope_of(parts, require_login));
    if let Some(bucket) = &args.s3_bucket {
        builder = shared::object_storage(builder, &args, bucket, &db)?;
    }
    let uploads = builder.build().await?;
    // Saves a crash cut short (the row stored, its file not yet in place, …) are finished
    // before anything is served.
    uploads.recover_saves(&db).await?;

    // Abandoned uploads go (after Settings' incomplete/complete expiry), checked hourly.
    let stop_expiry = tokio_util::sync::CancellationToken::new();
    let expiry = uploads.spawn_expiry(Duration::from_secs(3600), stop_expiry.clone());
    let app = web::routes(
        web::App {
            db,
            uploads,
            require_login,
        },
        login::Users::new(&args.users),
    );

    let listener = tokio::net::TcpListener::bind(args.bind).await?;
    println!(
        "listening on http://{}/resumable_upload/",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    stop_expiry.cancel();
    expiry.await?;
    println!("stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
