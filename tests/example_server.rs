//! The example app as people run it: a child process with its command-line flags.

mod common;

use common::*;
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

/// `target/<profile>/examples/upload_server`, built by `cargo build --examples` (which
/// `tests/run.sh` runs first; `cargo test` alone builds examples under another name).
fn example_binary() -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    deps.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/upload_server")
}

/// Starts the example; returns the child and the endpoint URL it printed.
fn start(media: &Path) -> (Child, String) {
    let mut child = Command::new(example_binary())
        .args(["--bind", "127.0.0.1:0", "--media-root"])
        .arg(media)
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

fn interrupt(mut child: Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "stops cleanly on Ctrl-C: {exit:?}");
}

#[tokio::test]
async fn the_example_serves_uploads_stops_on_ctrl_c_and_keeps_its_secret() {
    let root = tempfile::tempdir().unwrap();
    let media = root.path().join("media");
    let (server, url) = start(&media);
    assert!(url.ends_with("/resumable_upload/"), "{url}");
    let mut upload = FileUpload::new(&url, random_bytes(300_000, 1), 100_000);
    let token = upload.send_ok(1).await["token"].clone();
    interrupt(server);
    assert!(
        root.path().join("data/secret").is_file(),
        "secret kept beside the media root"
    );

    let (server, url) = start(&media);
    upload.url = url;
    let (status, body) = upload.test(1).await;
    assert_eq!(status, 200);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["token"], token, "tokens stay valid across restarts");
    upload.send_all(vec![2, 3], 2).await;
    upload.assert_stored(&media);
    interrupt(server);
}
