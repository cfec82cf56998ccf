//! The servers the client drives, each its own process (so its memory is its own): the
//! example upload server, and an HTTP sink (this program again, `--serve-sink`) that
//! reads every request body and throws it away — the most any server could take from
//! this client on this machine.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
};

/// Whether the example server flushes each chunk to the disk before recording it (its
/// default) or leaves the bytes to the page cache (`--no-sync-data`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    EveryChunk,
    Never,
}

/// A server process and its endpoint URL.
pub struct Server {
    child: Child,
    pub endpoint: String,
}

impl Server {
    /// The example server of `binary` (another build, e.g. the commit before a change), or
    /// `target/<profile>/examples/upload_server` (build it with `cargo build --release
    /// --examples`), on a fresh media root, with its own SQLite file beside it.
    pub fn example_from(
        binary: Option<&Path>,
        media_root: &Path,
        flush: Flush,
    ) -> Result<Self, String> {
        let flags: &[&str] = match flush {
            Flush::EveryChunk => &[],
            Flush::Never => &["--no-sync-data"],
        };
        Self::spawn_example(binary, media_root, flags, &[])
    }

    /// The example server with extra flags and environment variables.
    pub fn example_with(
        media_root: &Path,
        flags: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self, String> {
        Self::spawn_example(None, media_root, flags, env)
    }

    fn spawn_example(
        binary: Option<&Path>,
        media_root: &Path,
        flags: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self, String> {
        let binary = match binary {
            Some(binary) => binary.to_owned(),
            None => std::env::current_exe()
                .map_err(|e| e.to_string())?
                .with_file_name("upload_server"),
        };
        if !binary.is_file() {
            return Err(format!(
                "{} is missing: run `cargo build --release --examples` first",
                binary.display()
            ));
        }
        let mut command = Command::new(binary);
        command
            .args(["--bind", "127.0.0.1:0", "--max-file-size", "1099511627776"])
            .arg("--media-root")
            .arg(media_root)
            .args(flags)
            .env_remove("DATABASE_URL")
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn");
        Self::spawn(command)
    }

    /// This program as the HTTP sink.
    pub fn sink() -> Result<Self, String> {
        let mut command = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
        command.arg("--serve-sink");
        Self::spawn(command)
    }

    fn spawn(mut command: Command) -> Result<Self, String> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let endpoint = line
            .trim()
            .strip_prefix("listening on ")
            .ok_or_else(|| format!("unexpected first line {line:?}"))?
            .to_owned();
        Ok(Self { child, endpoint })
    }

    /// The site's base URL (without `/resumable_upload/`).
    pub fn base(&self) -> &str {
        self.endpoint.trim_end_matches("/resumable_upload/")
    }

    /// The process's peak resident memory so far, in MiB (`VmHWM`).
    pub fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }

    /// CPU time the process has used so far (user + system, all threads), in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.child.id())
    }

    /// Starts the peak over (`/proc/<pid>/clear_refs`), for a run of its own.
    pub fn reset_peak_rss(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the HTTP sink until killed: test GETs answer 204 (chunk missing), POSTs read the
/// whole body and answer 200 with an incomplete status.
pub async fn serve_sink() {
    use axum::{Router, body::Body, http::StatusCode, routing::get};
    use futures_util::StreamExt;

    async fn swallow(body: Body) -> (StatusCode, &'static str) {
        let mut stream = body.into_data_stream();
        while let Some(Ok(_)) = stream.next().await {}
        (StatusCode::OK, r#"{"complete":false}"#)
    }
    let app = Router::new().route(
        "/resumable_upload/",
        get(|| async { StatusCode::NO_CONTENT }).post(swallow),
    );
    let app = app.layer(axum::extract::DefaultBodyLimit::disable());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!(
        "listening on http://{}/resumable_upload/",
        listener.local_addr().unwrap()
    );
    axum::serve(listener, app).await.unwrap();
}

/// CPU time process `pid` has used so far (user + system, all its threads), in seconds,
/// from `/proc/<pid>/stat`; NaN when it cannot be read.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is field 3, utime 14,
    // stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map_or(Vec::new(), |(_, rest)| rest.split(' ').collect());
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    // SAFETY: sysconf only reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) if per_second > 0.0 => (user + system) / per_second,
        _ => f64::NAN,
    }
}
