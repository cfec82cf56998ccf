//! The embedded widget assets, as the router serves them.

use axum::{
    body::{Body, to_bytes},
    http::{Request, StatusCode, header},
    response::Response,
};
use sea_orm_resumable::assets::{Assets, assets_router};
use tower::ServiceExt;

async fn get(path: &str, if_none_match: Option<&str>) -> Response {
    let mut request = Request::get(path);
    if let Some(tag) = if_none_match {
        request = request.header(header::IF_NONE_MATCH, tag);
    }
    assets_router()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

fn header_of(response: &Response, name: header::HeaderName) -> &str {
    response.headers()[name].to_str().unwrap()
}

#[tokio::test]
async fn plain_names_are_served_with_their_type_and_revalidated() {
    let response = get("/resumable-widget.js", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header_of(&response, header::CONTENT_TYPE),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(header_of(&response, header::CACHE_CONTROL), "no-cache");
    let etag = header_of(&response, header::ETAG).to_owned();
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    assert_eq!(
        &body[..],
        std::fs::read("assets/resumable-widget.js").unwrap()
    );

    let again = get("/resumable-widget.js", Some(&etag)).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header_of(&again, header::ETAG), etag);
    assert_eq!(header_of(&again, header::CACHE_CONTROL), "no-cache");
    let weak = get("/resumable-widget.js", Some(&format!("W/{etag}"))).await;
    assert_eq!(weak.status(), StatusCode::NOT_MODIFIED, "weak comparison");
    assert!(
        to_bytes(again.into_body(), usize::MAX)
            .await
            .unwrap()
            .is_empty()
    );

    let css = get("/resumable-widget.css", None).await;
    assert_eq!(
        header_of(&css, header::CONTENT_TYPE),
        "text/css; charset=utf-8"
    );
}

#[tokio::test]
async fn versioned_names_are_cached_for_a_year() {
    for name in ["resumable-widget.js", "resumable-widget.css"] {
        let url = Assets::url("", name).unwrap();
        let response = get(&url, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        assert_eq!(
            header_of(&response, header::CACHE_CONTROL),
            "public, max-age=31536000, immutable"
        );
        assert!(response.headers().contains_key(header::ETAG));
    }
    let tags = Assets::tags("/static");
    assert!(tags.contains(&Assets::url("/static", "resumable-widget.js").unwrap()));
}

#[tokio::test]
async fn unknown_and_stale_names_are_404() {
    for path in [
        "/nope.js",
        "/resumable-widget.000000000000.js",
        "/..%2FCargo.toml",
    ] {
        assert_eq!(
            get(path, None).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}
