//! The example attacked as an outsider would (issue 14): slow and stalled connections of
//! every kind, a multipart body of endless form fields, floods of tiny uploads, another
//! visitor's uploads, cross-site posts, media roots holding the app's own state. Each
//! test runs the real example process and watches its memory in /proc.

mod common;
#[path = "common/example.rs"]
mod example;

use common::*;
use example::*;
use std::time::{Duration, Instant};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Short timeouts, so that the server's deadlines show within seconds.
const QUICK: [&str; 6] = [
    "--header-timeout",
    "2",
    "--body-idle-timeout",
    "2",
    "--form-timeout",
    "2",
];

/// `host:port` of an endpoint URL.
fn address(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches("/resumable_upload/")
        .to_owned()
}

/// A connection that sent `bytes` and then nothing more.
async fn connect(addr: &str, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    if !bytes.is_empty() {
        stream.write_all(bytes).await.unwrap();
    }
    stream
}

/// Whether the server closed `stream` before `deadline` (answers read and dropped).
async fn closed_by(stream: &mut TcpStream, deadline: Instant) -> bool {
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Sends `piece` on `stream` every `every` until it fails or `until` passes.
fn trickle(mut stream: TcpStream, piece: &'static [u8], every: Duration, until: Instant) {
    tokio::spawn(async move {
        while Instant::now() < until {
            tokio::time::sleep(every).await;
            if stream.write_all(piece).await.is_err() {
                return;
            }
        }
    });
}

/// The example with login and quick timeouts, and the headers of alice's session (its
/// cookie and CSRF token) for hand-made requests.
async fn alice_logged_in(root: &std::path::Path) -> (Server, String, String) {
    let mut flags = vec!["--require-login", "--user", "alice:secret1"];
    flags.extend(QUICK);
    let (server, url) = start_with(&root.join("media"), &flags);
    let alice = Site::new(&url);
    let csrf = alice.log_in("alice", "secret1").await;
    let headers = format!(
        "Cookie: {}\r\nX-CSRF-Token: {csrf}\r\n",
        alice.cookie_header()
    );
    (server, url, headers)
}

fn multipart_head(path: &str, host: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\n{extra_headers}\
         Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 100000000\r\n\r\n\
         --XyZ\r\nContent-Disposition: form-data; name=\"resumableChunkNumber\"\r\n\r\n1\r\n\
         --XyZ\r\nContent-Disposition: form-data; name=\"resumableIdentifier\"\r\n\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn twenty_slow_or_stalled_connections_of_each_of_nine_kinds_are_cut_off_and_login_still_answers()
 {
    let root = tempfile::tempdir().unwrap();
    let (server, url, logged_in) = alice_logged_in(root.path()).await;
    let addr = address(&url);
    let opened = Instant::now();
    let trickle_until = opened + Duration::from_secs(12);
    let mut kinds: Vec<(&str, Vec<TcpStream>)> = Vec::new();
    let head = |path: &str, headers: &str, body: &str| {
        format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}{body}").into_bytes()
    };
    let kind_bytes: Vec<(&str, Vec<u8>)> = vec![
        ("connected, silent", Vec::new()),
        (
            "half the headers",
            format!("GET /login HTTP/1.1\r\nHost: {addr}\r\n").into_bytes(),
        ),
        // The first byte of an HTTP/2 preface: a server telling versions apart would wait.
        ("one byte, P", b"P".to_vec()),
        (
            "multipart to the endpoint, not logged in, stalled before the chunk",
            multipart_head("/resumable_upload/", &addr, ""),
        ),
        (
            "multipart to the endpoint, logged in, stalled before the chunk",
            multipart_head("/resumable_upload/", &addr, &logged_in),
        ),
        (
            "POST /login, stalled",
            head(
                "/login",
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n",
                "username=al",
            ),
        ),
        (
            "POST /documents, logged in, stalled",
            head(
                "/documents",
                &format!(
                    "{logged_in}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
                ),
                "title=x",
            ),
        ),
    ];
    for (kind, bytes) in kind_bytes {
        let mut streams = Vec::new();
        for _ in 0..20 {
            streams.push(connect(&addr, &bytes).await);
        }
        kinds.push((kind, streams));
    }
    // Two that keep sending, a byte every half second (never silent for the 2 s idle
    // timeout, far below the 1 KiB/s minimum rate): a form field before the chunk, and
    // a raw chunk announced at 64 MiB.
    let octet = format!(
        "POST /resumable_upload/?resumableChunkNumber=1&resumableChunkSize=67108864\
         &resumableCurrentChunkSize=67108864&resumableTotalSize=67108864\
         &resumableIdentifier=slow&resumableFilename=slow.bin HTTP/1.1\r\nHost: {addr}\r\n\
         {logged_in}Content-Type: application/octet-stream\r\nContent-Length: 67108864\r\n\r\n"
    );
    for (kind, bytes) in [
        (
            "a form field trickled a byte at a time",
            multipart_head("/resumable_upload/", &addr, &logged_in),
        ),
        (
            "a 64 MiB chunk trickled a byte at a time",
            octet.into_bytes(),
        ),
    ] {
        let mut streams = Vec::new();
        for _ in 0..20 {
            let stream = connect(&addr, &bytes).await;
            let writer = TcpStream::from_std(clone_std(&stream)).unwrap();
            trickle(writer, b"a", Duration::from_millis(500), trickle_until);
            streams.push(stream);
        }
        kinds.push((kind, streams));
    }

    // All 180 open: the server stays small and answers a visitor at once.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let rss = server.memory_mib("VmRSS");
    eprintln!("RSS with 180 slow connections open: {rss:.1} MiB");
    assert!(rss < 64.0, "{rss:.1} MiB with 180 slow connections open");
    let started = Instant::now();
    let login = tokio::time::timeout(Duration::from_secs(2), Site::new(&url).get("/login"))
        .await
        .expect("/login answers while the slow connections are open");
    assert_eq!(login.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(2));

    // Every one is cut off by its deadline (2 s, a little slack for a busy machine).
    let deadline = opened + Duration::from_secs(8);
    for (kind, streams) in &mut kinds {
        for (i, stream) in streams.iter_mut().enumerate() {
            assert!(
                closed_by(stream, deadline).await,
                "{kind} #{i}: still open after {:?}",
                opened.elapsed()
            );
        }
    }
    let rss = server.memory_mib("VmRSS");
    eprintln!("RSS once they were cut off: {rss:.1} MiB");
    assert!(rss < 64.0, "{rss:.1} MiB after");
    let login = Site::new(&url).get("/login").await;
    assert_eq!(login.status(), 200);
}

/// A second handle on the same socket, so one task writes while the test reads.
fn clone_std(stream: &TcpStream) -> std::net::TcpStream {
    use std::os::fd::{AsFd, OwnedFd};
    let fd: OwnedFd = stream.as_fd().try_clone_to_owned().unwrap();
    let std = std::net::TcpStream::from(fd);
    std.set_nonblocking(true).unwrap();
    std
}

#[tokio::test]
async fn a_multipart_body_of_endless_form_fields_is_refused_and_the_server_stays_small() {
    let root = tempfile::tempdir().unwrap();
    let (server, url, logged_in) = alice_logged_in(root.path()).await;
    let addr = address(&url);
    // About 1,900 text fields of 64 KB (~120 MB, under the body limit), three at once.
    let field = {
        let mut field = b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n".to_vec();
        field.extend(std::iter::repeat_n(b'a', 64_000));
        field.extend_from_slice(b"\r\n");
        field
    };
    let mut senders = Vec::new();
    for _ in 0..3 {
        let mut stream = connect(
            &addr,
            &multipart_head("/resumable_upload/", &addr, &logged_in),
        )
        .await;
        let field = field.clone();
        senders.push(tokio::spawn(async move {
            let mut sent = 0usize;
            for _ in 0..1900 {
                if stream.write_all(&field).await.is_err() {
                    break;
                }
                sent += field.len();
            }
            let mut answer = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
            (sent, String::from_utf8_lossy(&answer).into_owned())
        }));
    }
    for sender in senders {
        let (sent, answer) = sender.await.unwrap();
        // Refused at the first field past 16 KiB of text; the rest is read and dropped
        // (never held) so that the client sees the answer.
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "after {sent} bytes: {answer}"
        );
        assert!(answer.contains("too long"), "{answer}");
    }
    let peak = server.memory_mib("VmHWM");
    eprintln!("peak RSS of the example under three ~120 MB field floods: {peak:.1} MiB");
    assert!(peak < 64.0, "peak {peak:.1} MiB");
}

#[tokio::test]
async fn a_client_dropping_its_cookies_is_held_to_the_address_limit_while_an_office_works() {
    let root = tempfile::tempdir().unwrap();
    let media = root.path().join("media");
    let (server, url) = start(&media);
    // 100 browsers behind one address, uploading at once: every upload completes.
    let office = (0..100u64).map(|i| {
        let url = url.clone();
        tokio::spawn(async move {
            let site = Site::visit(&url).await;
            let upload = site.upload(random_bytes(3 * 20_000 + 7, i), 20_000);
            upload.send_all(vec![1, 2, 3], 3).await;
            upload.test(3).await.0
        })
    });
    for answer in futures_util::future::join_all(office).await {
        assert_eq!(answer.unwrap(), 200);
    }
    // One client, a new cookie for every tiny upload (each complete on its first
    // request): before, 3,000 in 4 s were all kept. Now the address holds at most 1,000.
    let mut accepted = 0;
    let mut refusal = None;
    for i in 0..950 {
        // A new browser each time: the page hands out a new cookie.
        let mut upload = Site::visit(&url).await.upload(vec![b'x'], 1024);
        upload.identifier = format!("tiny-{i}");
        let response = upload.send(1).await;
        if response.status() == 200 {
            accepted += 1;
        } else {
            assert_eq!(response.status(), 400);
            refusal = Some(response.text().await.unwrap());
            break;
        }
    }
    assert_eq!(accepted, 900, "1,000 per address, 100 of them the office's");
    let refusal = refusal.unwrap();
    assert!(
        refusal.contains("network address (at most 1000)"),
        "{refusal}"
    );
    let rss = server.memory_mib("VmRSS");
    assert!(rss < 64.0, "{rss:.1} MiB");
}

#[tokio::test]
async fn anonymous_visitors_cannot_test_write_or_claim_each_others_uploads() {
    let root = tempfile::tempdir().unwrap();
    let (server, url) = start(&root.path().join("media"));
    let (victim, stranger) = (Site::visit(&url).await, Site::visit(&url).await);
    let data = random_bytes(300_000, 5);
    let mut upload = victim.upload(data.clone(), 100_000);
    upload.identifier = "300000-reportpdf".into(); // resumable.js's default: guessable
    upload.send_ok(1).await;

    // The stranger guesses the identifier: a test answers "not here", not the token.
    let mut guess = stranger.upload(random_bytes(300_000, 6), 100_000);
    guess.identifier = upload.identifier.clone();
    assert_eq!(guess.test(1).await.0, 204);
    // A planted chunk lands in the stranger's own upload, not the victim's.
    guess.send_ok(2).await;
    assert_eq!(
        upload.test(2).await.0,
        204,
        "the victim's chunk 2 is still missing"
    );
    upload.send_all(vec![2, 3], 2).await;
    let token = upload.send_ok(1).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let saved_by_stranger = stranger.post_document("Mine now", &token).await;
    assert_eq!(
        saved_by_stranger.status(),
        422,
        "another visitor's token is refused"
    );
    let created = victim.post_document("Report", &token).await;
    assert_eq!(created.status(), 303);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let page = victim.get(&location).await.text().await.unwrap();
    let href = element(&page, "file");
    assert_eq!(victim.get(&href).await.status(), 200);
    // The stranger sees neither the document, nor its file, nor it in the list.
    assert_eq!(stranger.get(&location).await.status(), 404);
    assert_eq!(stranger.get(&href).await.status(), 404);
    let list = stranger.get("/").await.text().await.unwrap();
    assert!(!list.contains("Report"), "{list}");
    interrupt(server);
}

#[tokio::test]
async fn a_client_without_cookies_uploads_and_saves_in_the_scope_of_its_address() {
    // A script, or a browser that refuses cookies: chunks and the form's post land in
    // one scope (the address), so the save works; a browser with its cookie is apart.
    let root = tempfile::tempdir().unwrap();
    let (server, url) = start(&root.path().join("media"));
    let plain = Site::new(&url); // keeps cookies, but the endpoint and posts set none
    let mut upload = FileUpload::new(&url, random_bytes(250_000, 8), 100_000);
    upload.http = reqwest::Client::new();
    upload.send_all(vec![1, 2], 2).await;
    let token = upload.send_ok(1).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = plain.post_document("From a script", &token).await;
    assert_eq!(created.status(), 303, "{}", created.text().await.unwrap());
    let visitor = Site::visit(&url).await;
    assert_eq!(visitor.post_document("Theirs", &token).await.status(), 422);
    interrupt(server);
}

#[tokio::test]
async fn posts_from_another_site_are_refused_and_store_nothing() {
    let root = tempfile::tempdir().unwrap();
    let media = root.path().join("media");
    let (server, url) = start(&media);
    let visitor = Site::visit(&url).await;
    let upload = visitor.upload(b"hello".to_vec(), 1024);
    // A page on another site posting into the visitor's browser session: the browser
    // says where it comes from.
    for headers in [
        vec![
            ("origin", "http://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ],
        vec![("origin", "http://evil.example")],
        vec![("origin", "null")],
    ] {
        let mut request = upload
            .http
            .post(&url)
            .query(&upload.params(1))
            .header("content-type", "text/plain")
            .body("hello");
        for (name, value) in &headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403, "{headers:?}");
        let text = response.text().await.unwrap();
        assert!(text.contains("another site"), "{text}");
        for path in ["/documents", "/login"] {
            let mut request = visitor
                .http
                .post(format!("{}{path}", visitor.base))
                .form(&[("title", "x"), ("file", "y")]);
            for (name, value) in &headers {
                request = request.header(*name, *value);
            }
            assert_eq!(
                request.send().await.unwrap().status(),
                403,
                "{path} {headers:?}"
            );
        }
    }
    assert_eq!(upload.test(1).await.0, 204, "nothing was stored");
    // The same post from the page's own origin goes through.
    let response = upload
        .http
        .post(&url)
        .query(&upload.params(1))
        .header("content-type", "text/plain")
        .header("origin", visitor.base.as_str())
        .header("sec-fetch-site", "same-origin")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    interrupt(server);
}

#[tokio::test]
async fn a_media_root_holding_the_apps_own_state_is_refused_at_start() {
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    std::fs::create_dir_all(work.join("sub")).unwrap();
    for media in [".", "./", "..", "/", "sub/.."] {
        let mut command = std::process::Command::new(example_binary());
        command
            .current_dir(&work)
            .args(["--bind", "127.0.0.1:0", "--media-root", media])
            .env_remove("DATABASE_URL")
            .env_remove("RESUMABLE_SECRET");
        let output = run_briefly(command);
        assert_eq!(
            output.status.code(),
            Some(2),
            "--media-root {media} started"
        );
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(said.contains("holds the app's"), "{media}: {said}");
    }
    // The database or the data directory put inside the media root by their own flags.
    let media = root.path().join("media");
    for flags in [
        vec![
            "--data-dir".to_owned(),
            media.join("data").display().to_string(),
        ],
        vec![
            "--database-url".to_owned(),
            format!("sqlite://{}?mode=rwc", media.join("db.sqlite").display()),
        ],
    ] {
        let mut command = std::process::Command::new(example_binary());
        command
            .args(["--bind", "127.0.0.1:0", "--media-root"])
            .arg(&media)
            .args(&flags)
            .env_remove("DATABASE_URL");
        let output = run_briefly(command);
        assert_eq!(output.status.code(), Some(2), "{flags:?}");
    }
}

/// Runs `command` for at most 10 s (a server that starts when it should refuse is
/// killed, and its exit code is then none).
fn run_briefly(mut command: std::process::Command) -> std::process::Output {
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn a_chunk_directory_given_absolute_inside_the_media_root_is_never_served() {
    let root = tempfile::tempdir().unwrap();
    let media = root.path().join("media");
    let chunks = media.join("incoming");
    let chunk_flag = chunks.display().to_string();
    let (server, url) = start_with(&media, &["--chunk-subdir", &chunk_flag]);
    let visitor = Site::visit(&url).await;
    let upload = visitor.upload(random_bytes(300_000, 9), 100_000);
    let token = upload.send_ok(1).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = token.split('.').next().unwrap();
    assert!(chunks.join(format!("{key}.part")).is_file());
    for path in [
        format!("incoming/{key}.part"),
        format!("incoming/{key}.meta"),
    ] {
        assert_eq!(
            visitor.get(&format!("/media/{path}")).await.status(),
            404,
            "{path}"
        );
    }
    interrupt(server);
}

#[tokio::test]
async fn pages_and_media_answers_carry_the_safety_headers_and_directories_are_not_files() {
    let root = tempfile::tempdir().unwrap();
    let media = root.path().join("media");
    let (server, url) = start(&media);
    let visitor = Site::visit(&url).await;
    let home = visitor.get("/").await;
    let policy = home.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(home.headers()["x-frame-options"], "DENY");
    assert_eq!(home.headers()["x-content-type-options"], "nosniff");

    let data = random_bytes(1000, 1);
    let upload = visitor.upload(data.clone(), 1024);
    let token = upload.send_ok(1).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = visitor.post_document("Doc", &token).await;
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let page = visitor.get(&location).await.text().await.unwrap();
    let href = element(&page, "file");
    let served = visitor.get(&href).await;
    let modified = served.headers()["last-modified"].clone();
    let again = visitor
        .http
        .get(format!("{}{href}", visitor.base))
        .header("if-modified-since", modified)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["x-content-type-options"], "nosniff");
    // The directory the file is in: not found (it used to be a 200 with a broken body).
    let path = element(&page, "path");
    let directory = path.rsplit_once('/').unwrap().0;
    assert!(media.join(directory).is_dir());
    assert_eq!(
        visitor.get(&format!("/media/{directory}")).await.status(),
        404
    );
    interrupt(server);
}

#[tokio::test]
async fn secrets_and_passwords_can_come_from_files_and_stay_out_of_ps() {
    let root = tempfile::tempdir().unwrap();
    let users = root.path().join("users");
    std::fs::write(&users, "alice:pass-from-file\n\nbob:other:with:colons\n").unwrap();
    let secret = root.path().join("secret");
    std::fs::write(&secret, "a secret from a file, long enough\n").unwrap();
    let users_flag = users.display().to_string();
    let secret_flag = secret.display().to_string();
    let (server, url) = start_with(
        &root.path().join("media"),
        &[
            "--require-login",
            "--users-file",
            &users_flag,
            "--secret-file",
            &secret_flag,
        ],
    );
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", server.pid())).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(!cmdline.contains("pass-from-file") && !cmdline.contains("long enough"));
    Site::new(&url).log_in("alice", "pass-from-file").await;
    Site::new(&url).log_in("bob", "other:with:colons").await;
    assert!(
        !root.path().join("data/secret").exists(),
        "the given secret is used"
    );
    interrupt(server);
}

#[tokio::test]
async fn the_login_form_keeps_no_session_for_visitors_who_never_log_in() {
    let root = tempfile::tempdir().unwrap();
    let (server, url) = start_with(
        &root.path().join("media"),
        &["--require-login", "--user", "alice:secret1"],
    );
    let before = server.memory_mib("VmRSS");
    for _ in 0..300 {
        let response = Site::new(&url).get("/login").await;
        assert_eq!(response.status(), 200);
        for cookie in response.headers().get_all("set-cookie") {
            let cookie = cookie.to_str().unwrap();
            assert!(!cookie.starts_with("id="), "a session was made: {cookie}");
        }
    }
    let after = server.memory_mib("VmRSS");
    assert!(after - before < 8.0, "{before:.1} -> {after:.1} MiB");
    // The form still logs in (its token is in a cookie, checked against the form's).
    Site::new(&url).log_in("alice", "secret1").await;
    interrupt(server);
}
