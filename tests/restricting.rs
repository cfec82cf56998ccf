//! Restricting the endpoint is ordinary axum: a `route_layer` on the router guards every
//! URL that reaches a handler, whichever way it is mounted, with or without the slash.

use axum::{
    Router,
    extract::{Request, State},
    http::StatusCode,
    middleware::{self, Next},
    response::Response,
};
use sea_orm_resumable::{Scope, Secret, Settings, Uploads, router};

/// Lets a request through only with `Authorization: let-me-in`; refuses others after
/// reading their body (`Uploads::refuse`), so the client reads the 401.
async fn require_password(
    State(uploads): State<Uploads>,
    request: Request,
    next: Next,
) -> Response {
    match request.headers().get("authorization") {
        Some(v) if v == "let-me-in" => next.run(request).await,
        _ => {
            let refusal = (StatusCode::UNAUTHORIZED, "log in first\n");
            uploads.refuse(request, refusal).await
        }
    }
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

const QUERY: &str = "resumableChunkNumber=1&resumableChunkSize=10&resumableCurrentChunkSize=10\
                     &resumableTotalSize=10&resumableIdentifier=x&resumableFilename=x.bin\
                     &resumableRelativePath=x.bin&resumableTotalChunks=1";

#[tokio::test]
async fn a_route_layer_guards_every_url_of_the_endpoint_under_nest_and_nest_service() {
    for nest_service in [false, true] {
        let media = tempfile::tempdir().unwrap();
        let secret = Secret::new(vec![7; 32]).unwrap();
        // The logged-in user is the upload scope, as with a real login layer.
        let uploads = Uploads::builder(Settings::new(media.path()), secret)
            .scope(|parts: &axum::http::request::Parts| {
                parts
                    .headers
                    .get("authorization")
                    .map(|_| Scope::new("user"))
            })
            .build()
            .await
            .unwrap();
        let guard = middleware::from_fn_with_state(uploads.clone(), require_password);
        let guarded = router(uploads).route_layer(guard);
        let app = if nest_service {
            Router::new().nest_service("/resumable_upload", guarded)
        } else {
            Router::new().nest("/resumable_upload", guarded)
        };
        let base = serve(app).await;
        let http = reqwest::Client::new();
        for path in [
            "/resumable_upload",
            "/resumable_upload/",
            "/resumable_upload/x",
        ] {
            for post in [false, true] {
                let url = format!("{base}{path}?{QUERY}");
                let request = match post {
                    true => http.post(&url).body(vec![0u8; 10]),
                    false => http.get(&url),
                };
                let status = request.send().await.unwrap().status();
                // A URL the endpoint answers is guarded (401); any other is a 404 that
                // never reaches a handler.
                let answered =
                    path == "/resumable_upload" || (nest_service && path == "/resumable_upload/");
                let expected = if answered { 401 } else { 404 };
                assert_eq!(
                    status, expected,
                    "nest_service={nest_service} post={post} {path}"
                );
            }
        }
        let chunk_dir = media.path().join("resumable_chunks");
        let stored = std::fs::read_dir(&chunk_dir).map_or(0, |d| d.count());
        assert_eq!(stored, 0, "no unauthorised request stored anything");
        let let_in = http
            .post(format!("{base}/resumable_upload?{QUERY}"))
            .header("authorization", "let-me-in")
            .body(vec![0u8; 10])
            .send()
            .await
            .unwrap();
        assert_eq!(
            let_in.status(),
            200,
            "the guard lets a logged-in chunk through"
        );
    }
}
