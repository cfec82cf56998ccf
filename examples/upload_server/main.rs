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
mod serve;
mod shared;
mod web;

use axum::http::request::Parts;
use clap::Parser;
use migration::{Migrator, MigratorTrait};
use sea_orm_resumable::{Secret, Settings, Uploads};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};
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
    /// Signing secret for upload tokens and browser cookies (at least 16 bytes); default:
    /// generated once into the data directory. A flag shows in `ps`: prefer the
    /// environment variable or --secret-file.
    #[arg(long, env = "RESUMABLE_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// A file holding the signing secret (its text, trimmed), instead of --secret.
    #[arg(long, env = "RESUMABLE_SECRET_FILE", conflicts_with = "secret")]
    secret_file: Option<PathBuf>,
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
    /// only their own. Log in at `/login`. Without it, each browser has its own uploads
    /// and documents (a signed cookie), with no login.
    #[arg(long)]
    require_login: bool,
    /// A user who may log in, as NAME:PASSWORD (repeat for more users). A flag shows in
    /// `ps`: prefer --users-file.
    #[arg(long = "user", value_name = "NAME:PASSWORD", value_parser = login::parse_user_flag, requires = "require_login")]
    users: Vec<login::UserFlag>,
    /// A file of users who may log in, one NAME:PASSWORD a line.
    #[arg(long, env = "RESUMABLE_USERS_FILE", requires = "require_login")]
    users_file: Option<PathBuf>,
    /// Seconds a client has to send a request's headers (from connecting, or from the
    /// last answer on a kept-alive connection) before the connection is closed.
    #[arg(long, value_name = "SECONDS", default_value = "20", value_parser = seconds)]
    header_timeout: Duration,
    /// Seconds a request body may stay silent (Settings::body_idle_timeout); also the
    /// grace before the minimum rate applies.
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = seconds)]
    body_idle_timeout: Duration,
    /// Slowest average a request body may arrive at after the grace, in bytes per second
    /// (Settings::min_body_rate).
    #[arg(long, value_name = "BYTES", default_value_t = 1024)]
    min_body_rate: u64,
    /// Seconds a page's form (login, document) has to arrive whole.
    #[arg(long, value_name = "SECONDS", default_value = "20", value_parser = seconds)]
    form_timeout: Duration,
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
    let database_url = match &args.database_url {
        Some(url) => url.clone(),
        None => {
            std::fs::create_dir_all(&beside_media)?;
            let file = beside_media.join("upload_server.sqlite");
            format!("sqlite://{}?mode=rwc", file.display())
        }
    };
    // Everything under the media root may be served at /media/: the app's own state
    // must not be there, whatever form the options took (`.`, `..`, `/`, links).
    let mut own_state = vec![("data directory", data_dir.clone())];
    own_state.extend(sqlite_file(&database_url).map(|file| ("database", file)));
    own_state.extend(args.secret_file.clone().map(|file| ("secret file", file)));
    own_state.extend(args.users_file.clone().map(|file| ("users file", file)));
    if let Err(e) = check_media_root(&args.media_root, &own_state) {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    let secret = match (&args.secret, &args.secret_file) {
        (Some(text), _) => Secret::new(text.clone().into_bytes())?,
        (None, Some(file)) => {
            Secret::new(std::fs::read_to_string(file)?.trim().as_bytes().to_vec())?
        }
        (None, None) => Secret::load_or_generate(data_dir.join("secret")).await?,
    };
    let mut users = args.users.clone();
    if let Some(file) = &args.users_file {
        for line in std::fs::read_to_string(file)?.lines() {
            if !line.trim().is_empty() {
                users.push(login::parse_user_flag(line.trim())?);
            }
        }
    }
    if args.require_login && users.is_empty() {
        eprintln!("error: --require-login needs users (--user NAME:PASSWORD or --users-file)");
        std::process::exit(2);
    }
    let settings = Settings {
        chunk_subdir: args.chunk_subdir.clone(),
        max_file_size: args.max_file_size,
        sync_data: !args.no_sync_data,
        body_idle_timeout: args.body_idle_timeout,
        min_body_rate: args.min_body_rate,
        ..Settings::new(&args.media_root)
    };
    let db = sea_orm::Database::connect(&database_url).await?;
    Migrator::up(&db, None).await?;

    // Each logged-in user is an upload scope: nobody tests, writes or claims another
    // user's uploads. Without --require-login each browser is a scope (a signed cookie).
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
            form_timeout: args.form_timeout,
        },
        login::Users::new(&users),
    );

    let listener = tokio::net::TcpListener::bind(args.bind).await?;
    // Handlers in place before anyone is told where we listen: a Ctrl-C from then on
    // stops the server cleanly.
    let shutdown = shutdown_signal()?;
    println!(
        "listening on http://{}/resumable_upload/",
        listener.local_addr()?
    );
    let drain = args.body_idle_timeout + Duration::from_secs(5);
    serve::serve(listener, app, args.header_timeout, shutdown, drain).await;
    stop_expiry.cancel();
    expiry.await?;
    println!("stopped");
    Ok(())
}

/// A number of seconds, as a duration.
fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{text:?} is not a positive number of seconds"))
}

/// The file of an SQLite database URL (`sqlite://path?…`, `sqlite:path`).
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.starts_with(':')).then(|| PathBuf::from(path))
}

/// Refuses a media root that holds any of the app's own state (by path, after following
/// links and resolving `.` and `..`).
fn check_media_root(media_root: &Path, own_state: &[(&str, PathBuf)]) -> Result<(), String> {
    let media = sea_orm_resumable::Media::new(media_root, "/media/");
    for (what, path) in own_state {
        if media.holds(path) {
            return Err(format!(
                "the media root {} holds the app's {what} ({}): every file under the media \
                 root may be served at /media/, so give the media root a directory of its \
                 own (or move the {what} out of it)",
                media_root.display(),
                path.display()
            ));
        }
    }
    Ok(())
}

/// Installs the Ctrl-C and SIGTERM handlers now; the future resolves on either signal.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = term.recv() => {}
        }
    })
}
