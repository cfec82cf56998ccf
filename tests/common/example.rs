//! The example app as people run it: a child process with its command-line flags, and
//! its pages driven like a browser that keeps cookies and does not follow redirects.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
};

/// `target/<profile>/examples/upload_server`, built by `cargo build --examples` (which
/// `tests/run.sh` runs first; `cargo test` alone builds examples under another name).
pub fn example_binary() -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    deps.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/upload_server")
}

/// A running example server; killed if a test ends (or fails) without stopping it.
pub struct Server(Option<Child>);

impl Server {
    fn take(mut self) -> Child {
        self.0.take().unwrap()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }

    /// A memory figure of the process from /proc, in MiB: `VmRSS` (now) or `VmHWM`
    /// (the peak so far).
    pub fn memory_mib(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with(&format!("{field}:")))
            .unwrap_or_else(|| panic!("no {field} in /proc/<pid>/status"));
        let kib: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib / 1024.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the example; returns the server and the endpoint URL it printed.
pub fn start(media: &Path) -> (Server, String) {
    start_with(media, &[])
}

/// Starts the example with extra flags.
pub fn start_with(media: &Path, extra: &[&str]) -> (Server, String) {
    start_armed(media, extra, "")
}

/// Starts the example with extra flags and these crash points armed
/// (`RESUMABLE_FAILPOINTS`, see src/faults.rs).
pub fn start_armed(media: &Path, extra: &[&str], failpoints: &str) -> (Server, String) {
    start_armed_env(media, extra, failpoints, &[])
}

/// [`start_armed`] with these environment variables.
pub fn start_armed_env(
    media: &Path,
    extra: &[&str],
    failpoints: &str,
    env: &[(&str, &str)],
) -> (Server, String) {
    let mut command = Command::new(example_binary());
    command
        .envs(env.iter().copied())
        .env("RESUMABLE_FAILPOINTS", failpoints);
    start_command(command, media, extra)
}

/// Starts the example with extra flags, these environment variables, and its log
/// (stderr) written to `log`.
pub fn start_logged(
    media: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
    log: &Path,
) -> (Server, String) {
    let mut command = Command::new(example_binary());
    command
        .envs(env.iter().copied())
        .env("RUST_LOG", "info,sqlx=warn")
        .stderr(std::fs::File::create(log).unwrap());
    start_command(command, media, extra)
}

fn start_command(mut command: Command, media: &Path, extra: &[&str]) -> (Server, String) {
    let mut child = command
        .args(["--bind", "127.0.0.1:0", "--media-root"])
        .arg(media)
        .args(extra)
        .env_remove("DATABASE_URL")
        .env_remove("RESUMABLE_SECRET")
        .env_remove("RESUMABLE_SUBDIR")
        .env_remove("RESUMABLE_S3_BUCKET")
        .env_remove("RESUMABLE_S3_ENDPOINT")
        .stdout(Stdio::piped())
        .spawn()
        .expect("build the example first: cargo build --examples (tests/run.sh does)");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    (Server(Some(child)), url)
}

/// Ctrl-C sent from this process at once (no `kill` process started first), and the
/// example stops cleanly.
pub fn interrupt_at_once(server: Server) {
    let mut child = server.take();
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: a plain system call on our own child's process id.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let exit = child.wait().unwrap();
    assert!(exit.success(), "stops cleanly on Ctrl-C: {exit:?}");
}

/// Ctrl-C, and the example stops cleanly.
pub fn interrupt(server: Server) {
    let mut child = server.take();
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "stops cleanly on Ctrl-C: {exit:?}");
}

/// SIGKILL: the process stops where it is, nothing flushed or cleaned up.
pub fn kill_9(server: Server) {
    let mut child = server.take();
    child.kill().unwrap(); // SIGKILL on Unix
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
}

/// The example's pages, driven like a browser that keeps cookies and does not follow
/// redirects.
pub struct Site {
    pub base: String,
    pub http: reqwest::Client,
    cookies: Arc<reqwest::cookie::Jar>,
}

impl Site {
    pub fn new(endpoint: &str) -> Self {
        let cookies = Arc::new(reqwest::cookie::Jar::default());
        Self {
            base: endpoint.trim_end_matches("/resumable_upload/").to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .cookie_provider(cookies.clone())
                .build()
                .unwrap(),
            cookies,
        }
    }

    /// A new browser that opened the app's first page (and so holds its upload scope
    /// cookie, as a page with the widget would before its first chunk).
    pub async fn visit(endpoint: &str) -> Self {
        let site = Self::new(endpoint);
        assert_eq!(site.get("/").await.status(), 200);
        site
    }

    /// The `Cookie` header this browser sends (for hand-made requests).
    pub fn cookie_header(&self) -> String {
        use reqwest::cookie::CookieStore;
        let url = self.base.parse().unwrap();
        self.cookies
            .cookies(&url)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    /// The same browser (its cookies) on another server's `endpoint`.
    pub fn at(&self, endpoint: &str) -> Self {
        Self {
            base: endpoint.trim_end_matches("/resumable_upload/").to_owned(),
            http: self.http.clone(),
            cookies: self.cookies.clone(),
        }
    }

    /// An upload of `data` from this browser (its cookies) to this server's endpoint.
    pub fn upload(&self, data: Vec<u8>, chunk_size: u64) -> crate::common::FileUpload {
        let mut upload = crate::common::FileUpload::new(
            &format!("{}/resumable_upload/", self.base),
            data,
            chunk_size,
        );
        upload.http = reqwest::Client::builder()
            .cookie_provider(self.cookies.clone())
            .build()
            .unwrap();
        upload
    }

    /// A client for the upload endpoint sharing this browser's cookies and sending
    /// `X-CSRF-Token: {csrf}` on every request, as the widget does.
    pub fn upload_client(&self, csrf: &str) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-csrf-token", csrf.parse().unwrap());
        reqwest::Client::builder()
            .cookie_provider(self.cookies.clone())
            .default_headers(headers)
            .build()
            .unwrap()
    }

    /// Logs in through the login form; the session's CSRF token from the page after.
    pub async fn log_in(&self, name: &str, password: &str) -> String {
        let form = self.get("/login").await.text().await.unwrap();
        let before = meta(&form, "csrf-token").expect("the login form has a CSRF token");
        let response = self
            .post(
                "/login",
                &[
                    ("username", name),
                    ("password", password),
                    ("csrf_token", &before),
                    ("next", "/"),
                ],
            )
            .await;
        assert_eq!(response.status(), 303, "{name} logs in");
        assert_eq!(response.headers()["location"], "/");
        let home = self.get("/").await.text().await.unwrap();
        assert_eq!(element(&home, "user"), name);
        let after = meta(&home, "csrf-token").expect("pages carry the CSRF token");
        assert_ne!(before, after, "a new token after login");
        after
    }

    /// `POST /documents` with a title, an upload token and any further fields.
    pub async fn post_document_with(
        &self,
        title: &str,
        token: &str,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut form = vec![("title", title), ("file", token)];
        form.extend_from_slice(extra);
        self.post("/documents", &form).await
    }

    pub async fn post_document(&self, title: &str, token: &str) -> reqwest::Response {
        self.post_document_with(title, token, &[]).await
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }
}

/// The text of the element with `id` in a page we wrote (`id="x">text<` or `href`).
pub fn element(page: &str, id: &str) -> String {
    let start = page
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {page}"));
    let rest = &page[start..];
    if let Some(href) = rest.strip_prefix(&format!("id=\"{id}\" href=\"")) {
        return href[..href.find('"').unwrap()].to_owned();
    }
    let text = &rest[rest.find('>').unwrap() + 1..];
    text[..text.find('<').unwrap()].to_owned()
}

/// The `content` of `<meta name="{name}" content="…">` in a page we wrote.
pub fn meta(page: &str, name: &str) -> Option<String> {
    let start = page.find(&format!("<meta name=\"{name}\" content=\""))?;
    let rest = &page[start..];
    let value = &rest[rest.find("content=\"").unwrap() + 9..];
    Some(value[..value.find('"').unwrap()].to_owned())
}

/// A new, empty database on the PostgreSQL server of `DATABASE_URL` (tests/run.sh starts
/// one), dropped when the value is; `None` (the test says SKIPPED) without a server.
pub struct PostgresDatabase {
    pub url: String,
    name: String,
    admin: String,
}

impl PostgresDatabase {
    pub async fn create() -> Option<Self> {
        let Some(admin) = std::env::var("DATABASE_URL")
            .ok()
            .filter(|url| url.starts_with("postgres"))
        else {
            eprintln!("SKIPPED: DATABASE_URL is not set to a PostgreSQL server");
            return None;
        };
        let name = format!("example_{}", uuid::Uuid::new_v4().simple());
        let db = sea_orm::Database::connect(&admin).await.unwrap();
        sea_orm::ConnectionTrait::execute_unprepared(&db, &format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let (server, _) = admin.rsplit_once('/').unwrap();
        Some(Self {
            url: format!("{server}/{name}"),
            name,
            admin,
        })
    }

    /// Drops the database (its connections must be closed: stop the server first).
    pub async fn drop_database(self) {
        let db = sea_orm::Database::connect(&self.admin).await.unwrap();
        let sql = format!("DROP DATABASE {} WITH (FORCE)", self.name);
        sea_orm::ConnectionTrait::execute_unprepared(&db, &sql)
            .await
            .unwrap();
    }
}
