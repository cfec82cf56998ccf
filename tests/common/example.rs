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

/// Starts the example; returns the child and the endpoint URL it printed.
pub fn start(media: &Path) -> (Child, String) {
    start_with(media, &[])
}

/// Starts the example with extra flags.
pub fn start_with(media: &Path, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(example_binary())
        .args(["--bind", "127.0.0.1:0", "--media-root"])
        .arg(media)
        .args(extra)
        .env_remove("DATABASE_URL")
        .env_remove("RESUMABLE_SECRET")
        .env_remove("RESUMABLE_SUBDIR")
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
    (child, url)
}

/// Ctrl-C, and the example stops cleanly.
pub fn interrupt(mut child: Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "stops cleanly on Ctrl-C: {exit:?}");
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
