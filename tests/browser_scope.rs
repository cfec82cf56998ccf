//! The default scope without a login: one per browser, from a signed cookie that
//! `router` hands out (issue 14: anonymous visitors used to share one scope).

mod common;

use common::*;
use sea_orm_resumable::{Secret, Settings, Uploads, router};

/// The endpoint with the library's defaults (no scope hook), and its URL.
async fn endpoint(media: &std::path::Path) -> String {
    serve(
        Uploads::builder(settings(media), secret())
            .build()
            .await
            .unwrap(),
    )
    .await
}

/// `router(uploads)` served on loopback; its URL.
async fn serve(uploads: Uploads) -> String {
    let app = axum::Router::new().nest_service("/resumable_upload", router(uploads));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/resumable_upload/")
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_chunk_without_the_cookie_stores_nothing_and_gets_the_cookie_to_retry_with() {
    let media = tempfile::tempdir().unwrap();
    let url = endpoint(media.path()).await;
    let mut upload = FileUpload::new(&url, random_bytes(3000, 1), 1000);
    upload.http = browser();
    let refused = upload.send(1).await;
    assert_eq!(refused.status(), 503);
    let cookie = refused.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("resumable_scope="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(refused.text().await.unwrap().contains("cookie"));
    // The retry carries the cookie: stored, and the rest of the upload completes.
    upload.send_ok(1).await;
    upload.send_all(vec![2, 3], 2).await;
    let (status, body) = upload.test(3).await;
    assert_eq!(status, 200);
    assert!(body.contains("\"complete\":true"), "{body}");
}

#[tokio::test]
async fn a_large_chunk_without_the_cookie_is_answered_at_once_not_after_a_timeout() {
    // The refusal comes before the chunk's part: the rest of the body (4 MiB here) is
    // read and dropped as it comes, not held behind the preamble limit.
    let media = tempfile::tempdir().unwrap();
    let url = endpoint(media.path()).await;
    let mut upload = FileUpload::new(&url, random_bytes(8 << 20, 3), 4 << 20);
    upload.http = browser();
    for body in [Body::Multipart, Body::Octet] {
        upload.body = body;
        let started = std::time::Instant::now();
        let refused = upload.send(1).await;
        assert_eq!(refused.status(), 503);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "{body:?}: {:?}",
            started.elapsed()
        );
        upload.http = browser(); // no cookie again
    }
}

#[tokio::test]
async fn two_browsers_never_see_each_others_upload_of_the_same_identifier() {
    let media = tempfile::tempdir().unwrap();
    let url = endpoint(media.path()).await;
    let mut mine = FileUpload::new(&url, random_bytes(3000, 2), 1000);
    mine.http = browser();
    assert_eq!(mine.test(1).await.0, 204); // gets the cookie
    mine.send_ok(1).await;
    assert_eq!(mine.test(1).await.0, 200);
    let mut theirs = mine.clone();
    theirs.http = browser();
    assert_eq!(
        theirs.test(1).await.0,
        204,
        "another browser does not see it"
    );
    // A forged cookie is a new browser, not the one it names.
    let forged = reqwest::Client::new()
        .get(&url)
        .query(&mine.params(1))
        .header(
            "cookie",
            "resumable_scope=00000000000000000000000000000000.AAAAAAAAAAAAAAAAAAAAAA",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 204);
    assert!(
        forged.headers().contains_key("set-cookie"),
        "a new cookie replaces the forged one"
    );
}

#[tokio::test]
async fn the_same_cookie_is_the_same_browser_for_every_server_with_the_secret() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (url_a, url_b) = (endpoint(a.path()).await, endpoint(b.path()).await);
    let first = reqwest::Client::new().get(&url_a).send().await.unwrap();
    let cookie = first.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let again = reqwest::Client::new()
        .get(&url_b)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert!(
        !again.headers().contains_key("set-cookie"),
        "accepted as it is"
    );
    // Another secret does not take it.
    let media = tempfile::tempdir().unwrap();
    let other = Uploads::builder(Settings::new(media.path()), Secret::generate())
        .build()
        .await
        .unwrap();
    let refused = reqwest::Client::new()
        .get(serve(other).await)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert!(refused.headers().contains_key("set-cookie"), "a new cookie");
}

#[tokio::test]
async fn a_login_resolver_refusing_a_request_answers_400_not_a_retry() {
    // Only the browser scope asks for its cookie; an app's own refusal is final.
    let media = tempfile::tempdir().unwrap();
    let uploads = Uploads::builder(settings(media.path()), secret())
        .scope(|_: &axum::http::request::Parts| None)
        .build()
        .await
        .unwrap();
    let upload = FileUpload::new(&serve(uploads).await, b"x".to_vec(), 10);
    let refused = upload.send(1).await;
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("no upload scope"));
}
