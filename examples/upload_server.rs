//! The example upload app: the resumable upload endpoint on a local media directory.
//!
//! ```text
//! cargo run --release --example upload_server -- --bind 127.0.0.1:8000 --media-root ./media
//! ```
//!
//! Point resumable.js or flow.js at `http://127.0.0.1:8000/resumable_upload/`.

use axum::{Router, routing::get};
use clap::Parser;
use sea_orm_resumable::{Secret, Settings, Uploads, router};
use std::{net::SocketAddr, path::PathBuf};
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
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    let data_dir = args.data_dir.clone().unwrap_or_else(|| {
        let parent = args
            .media_root
            .parent()
            .filter(|p| !p.as_os_str().is_empty());
        parent.unwrap_or(std::path::Path::new(".")).join("data")
    });
    let secret = match &args.secret {
        Some(text) => Secret::new(text.clone().into_bytes())?,
        None => Secret::load_or_generate(data_dir.join("secret")).await?,
    };
    let settings = Settings {
        chunk_subdir: args.chunk_subdir.clone(),
        max_file_size: args.max_file_size,
        ..Settings::new(&args.media_root)
    };
    let uploads = Uploads::builder(settings, secret).build().await?;
    let app = Router::new()
        .route(
            "/",
            get(|| async { "Resumable upload endpoint: /resumable_upload/\n" }),
        )
        .nest_service("/resumable_upload", router(uploads));

    let listener = tokio::net::TcpListener::bind(args.bind).await?;
    println!(
        "listening on http://{}/resumable_upload/",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
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
