//! The default scope without a login (issue 14: anonymous visitors used to share one
//! scope): one per browser, from a signed cookie that the app's pages hand out
//! (`scope_cookie`) and the endpoint reads; a client without it is scoped by its
//! network address.

mod common;

use axum::{Router, middleware::from_fn_with_state, routing::get};
use common::*;
use sea_orm_resumable::{Secret, Settings, Uploads, router, scope_cookie};
use std::net::SocketAddr;

/// A page under `scope_cookie` at `/` and `router(uploads)` at `/resumable_upload/`,
/// served on loopback (with the peer address in `ConnectInfo` when `addresses`); the
/// endpoint's URL.
async fn serve(uploads: Uploads, addresses: bool) -> String {
    let app = Router::new()
        .route("/", get(|| async { "the page with the widget" }))
        .layer(from_fn_with_state(uploads.clone(), scope_cookie))
        .nest_service("/resumable_upload", router(uploads));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        if addresses {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, app).await.unwrap()
        } else {
            axum::serve(listener, app).await.unwrap()
        }
    });
    format!("http://{addr}/resumable_upload/")
}

/// The library's defaults (no scope hook).
async fn endpoint(media: &std::path::Path, addresses: bool) -> String {
    let uploads = Uploads::builder(settings(media), secret())
        .build()
        .await
        .unwrap();
    serve(uploads, addresses).await
}

/// A browser that opened the app's page (and holds its scope cookie).
async fn browser(url: &str) -> reqwest::Client {
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let page = http
        .get(url.trim_end_matches("resumable_upload/"))
        .send()
        .await
        .unwrap();
    let cookie = page.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("resumable_scope="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert_eq!(
        page.headers()["cache-control"],
        "private, no-store",
        "no shared cache hands this scope to others"
    );
    http
}

#[tokio::test]
async fn two_browsers_never_see_each_others_upload_of_the_same_identifier() {
    let media = tempfile::tempdir().unwrap();
    let url = endpoint(media.path(), true).await;
    let mut mine = FileUpload::new(&url, random_bytes(3000, 2), 1000);
    mine.http = browser(&url).await;
    mine.send_ok(1).await;
    assert_eq!(mine.test(1).await.0, 200);
    let mut theirs = mine.clone();
    theirs.http = browser(&url).await;
    assert_eq!(
        theirs.test(1).await.0,
        204,
        "another browser does not see it"
    );
    theirs.send_ok(2).await;
    assert_eq!(mine.test(2).await.0, 204, "nor write into it");
    // A client without a cookie (same address) is neither of them.
    let mut plain = mine.clone();
    plain.http = reqwest::Client::new();
    assert_eq!(plain.test(1).await.0, 204);
    // A forged cookie, or a second one planted beside a valid one (a sibling
    // subdomain can, for a longer path), is refused: not moved to another scope.
    let forged = "resumable_scope=00000000000000000000000000000000.AAAAAAAAAAAAAAAAAAAAAA";
    for cookies in [
        forged.to_owned(),
        format!("{forged}; {}", cookie_of(&url).await),
    ] {
        let refused = reqwest::Client::new()
            .get(&url)
            .query(&mine.params(1))
            .header("cookie", cookies)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400);
        assert!(refused.text().await.unwrap().contains("sent twice"));
    }
}

/// A valid scope cookie (`name=value`) from the app's page.
async fn cookie_of(url: &str) -> String {
    let page = reqwest::Client::new()
        .get(url.trim_end_matches("resumable_upload/"))
        .send()
        .await
        .unwrap();
    let cookie = page.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn a_client_without_the_cookie_is_scoped_by_its_address_and_the_endpoint_sets_no_cookie() {
    // Scripts and app clients (curl, tuspy, upload_file) keep no cookies: they work, in
    // a scope of their address.
    let media = tempfile::tempdir().unwrap();
    let url = endpoint(media.path(), true).await;
    let upload = FileUpload::new(&url, random_bytes(3000, 1), 1000);
    upload.send_all(vec![3, 1, 2], 2).await;
    let (status, body) = upload.test(3).await;
    assert_eq!(status, 200);
    assert!(body.contains("\"complete\":true"), "{body}");
    let answer = upload.send(1).await;
    assert!(
        !answer.headers().contains_key("set-cookie"),
        "nobody changes scope in the middle of an upload"
    );
    // A browser holding its cookie is another scope.
    let mut browser_side = upload.clone();
    browser_side.http = browser(&url).await;
    assert_eq!(browser_side.test(1).await.0, 204);
}

#[tokio::test]
async fn without_cookie_or_address_a_request_is_refused_with_the_reason() {
    let media = tempfile::tempdir().unwrap();
    let url = endpoint(media.path(), false).await;
    let upload = FileUpload::new(&url, b"hello".to_vec(), 1024);
    let refused = upload.send(1).await;
    assert_eq!(refused.status(), 400);
    let text = refused.text().await.unwrap();
    assert!(
        text.contains("cookie") && text.contains("address"),
        "{text}"
    );
    // With the page's cookie it goes through.
    let mut upload = upload;
    upload.http = browser(&url).await;
    upload.send_ok(1).await;
}

#[tokio::test]
async fn the_same_cookie_is_the_same_browser_for_every_server_with_the_secret() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (url_a, url_b) = (
        endpoint(a.path(), false).await,
        endpoint(b.path(), false).await,
    );
    let cookie = cookie_of(&url_a).await;
    let upload = |url: &str| FileUpload::new(url, b"hello".to_vec(), 1024);
    let with_cookie = |url: &str| {
        let upload = upload(url);
        let params = upload.params(1);
        reqwest::Client::new()
            .post(url.to_owned())
            .query(&params)
            .header("cookie", cookie.clone())
            .header("content-type", "application/octet-stream")
            .body("hello")
    };
    assert_eq!(with_cookie(&url_b).send().await.unwrap().status(), 200);
    // Another secret does not take it: refused, not moved to another scope.
    let media = tempfile::tempdir().unwrap();
    let other = Uploads::builder(Settings::new(media.path()), Secret::generate())
        .build()
        .await
        .unwrap();
    let url_c = serve(other, false).await;
    assert_eq!(with_cookie(&url_c).send().await.unwrap().status(), 400);
}

#[tokio::test]
async fn a_large_refused_chunk_is_answered_at_once_not_after_a_timeout() {
    // The refusal comes before the chunk's part: the rest of the body (4 MiB here) is
    // read and dropped as it comes, not held behind the preamble limit.
    let media = tempfile::tempdir().unwrap();
    let url = endpoint(media.path(), false).await;
    let mut upload = FileUpload::new(&url, random_bytes(8 << 20, 3), 4 << 20);
    for body in [Body::Multipart, Body::Octet] {
        upload.body = body;
        let started = std::time::Instant::now();
        let refused = upload.send(1).await;
        assert_eq!(refused.status(), 400);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "{body:?}: {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn a_login_resolver_refusing_a_request_answers_400() {
    let media = tempfile::tempdir().unwrap();
    let uploads = Uploads::builder(settings(media.path()), secret())
        .scope(|_: &axum::http::request::Parts| None)
        .build()
        .await
        .unwrap();
    let upload = FileUpload::new(&serve(uploads, true).await, b"x".to_vec(), 10);
    let refused = upload.send(1).await;
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("no upload scope"));
}
