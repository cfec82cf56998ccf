//! What the endpoint does for browsers, as two axum middleware functions an app puts on
//! its pages ([`router`](crate::router) has its own share of both):
//!
//! * [`scope_cookie`]: a scope per browser without a login, from a signed random cookie
//!   that the pages hand out and the endpoint reads (the default resolver,
//!   [`BrowserScope`](crate::BrowserScope));
//! * [`refuse_cross_origin`]: state-changing requests sent by another site's page in the
//!   visitor's browser (CSRF) are refused, whatever the login.
//!
//! ```
//! use axum::{Router, middleware::from_fn_with_state, routing::get};
//! use sea_orm_resumable::{Secret, Settings, Uploads, refuse_cross_origin, router, scope_cookie};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! # let media = tempfile::tempdir().unwrap();
//! let uploads = Uploads::builder(Settings::new(media.path()), Secret::generate()).build().await.unwrap();
//! let pages = Router::new()
//!     .route("/", get(|| async { "the page with the upload widget" }))
//!     // The cookie is set when the page loads, before the widget sends anything…
//!     .layer(from_fn_with_state(uploads.clone(), scope_cookie))
//!     // …and forms posted from other sites are refused.
//!     .layer(from_fn_with_state(uploads.clone(), refuse_cross_origin));
//! let app: Router = pages.nest("/resumable_upload", router(uploads));
//! # let _ = app;
//! # });
//! ```

use axum::{
    extract::{Request, State},
    http::{
        HeaderMap, HeaderValue, Method,
        header::{CACHE_CONTROL, COOKIE, HOST, ORIGIN, SET_COOKIE},
    },
    middleware::Next,
    response::Response,
};

use std::sync::Arc;

use crate::{UploadError, Uploads, service::scope::BrowserId};

/// The name of the cookie that holds a browser's scope; with
/// [`Settings::secure_cookie`](crate::Settings::secure_cookie) it is
/// `__Host-resumable_scope`, which browsers take only from this very host over HTTPS,
/// so a sibling subdomain cannot plant one.
pub const SCOPE_COOKIE: &str = "resumable_scope";

/// The cookie's name under [`Settings::secure_cookie`](crate::Settings::secure_cookie).
const SECURE_SCOPE_COOKIE: &str = "__Host-resumable_scope";

/// How long a browser keeps its scope cookie (a year): longer than any upload waits.
const COOKIE_MAX_AGE: u64 = 365 * 24 * 60 * 60;

/// Middleware for the app's pages: gives each browser a scope of its own. A request
/// that carries a valid scope cookie (signed with the app's secret, so nobody picks
/// another's) is that browser's; one without gets a new random id, which its answer sets
/// as the cookie (`HttpOnly`, `SameSite=Lax`, `Path=/`; `__Host-` and `Secure` with
/// [`Settings::secure_cookie`](crate::Settings::secure_cookie)). Put it on the pages
/// that show the widget (see the module docs), so that the cookie is there before the
/// first chunk. [`router`](crate::router) only reads the cookie: the endpoint never
/// hands one out, so no client changes scope in the middle of an upload.
pub async fn scope_cookie(
    State(uploads): State<Uploads>,
    request: Request,
    next: Next,
) -> Response {
    browser_scope(uploads, request, next, true).await
}

/// Middleware of [`router`](crate::router): the browser's scope from its cookie, if it
/// sent a valid one.
pub(crate) async fn read_scope_cookie(
    State(uploads): State<Uploads>,
    request: Request,
    next: Next,
) -> Response {
    browser_scope(uploads, request, next, false).await
}

/// Puts the request's [`BrowserId`] in its extensions; with `hand_out`, one for a
/// browser without a cookie too, set as the cookie by the answer.
async fn browser_scope(
    uploads: Uploads,
    mut request: Request,
    next: Next,
    hand_out: bool,
) -> Response {
    if request.extensions().get::<BrowserId>().is_some() {
        return next.run(request).await;
    }
    let secret = &uploads.inner.secret;
    let secure = uploads.settings().secure_cookie;
    let name = if secure {
        SECURE_SCOPE_COOKIE
    } else {
        SCOPE_COOKIE
    };
    let sent = cookies(request.headers(), name).next().is_some();
    let known = cookie(request.headers(), name)
        .and_then(|value| value.split_once('.'))
        .filter(|(id, tag)| {
            id.len() == 32
                && id.bytes().all(|b| b.is_ascii_hexdigit())
                && secret.verify_browser_tag(id, tag)
        })
        .map(|(id, _)| id.to_owned());
    // A cookie is handed out with a page, never with a form's post: a browser without
    // cookies posts its form in the same (address) scope as its chunks.
    let hand_out = hand_out && matches!(*request.method(), Method::GET | Method::HEAD);
    let issued = known.is_none() && hand_out;
    let browser = BrowserId {
        rejected: sent && known.is_none(),
        fresh: known.is_none() && !hand_out,
        id: known.unwrap_or_else(|| hex::encode(rand::random::<[u8; 16]>())),
        wanted: Arc::default(),
    };
    request.extensions_mut().insert(browser.clone());
    let mut response = next.run(request).await;
    if issued {
        let secure = if secure { "; Secure" } else { "" };
        let value = format!(
            "{name}={}.{}; Path=/; Max-Age={COOKIE_MAX_AGE}; HttpOnly; SameSite=Lax{secure}",
            browser.id,
            secret.browser_tag(&browser.id)
        );
        if let Ok(value) = HeaderValue::from_str(&value) {
            let headers = response.headers_mut();
            headers.append(SET_COOKIE, value);
            // A shared cache must not hand this cookie (this scope) to anybody else.
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
        }
    }
    response
}

/// The value of cookie `name` in the request's `Cookie` headers, if it is there once. Two
/// of them mean somebody else set one (a sibling subdomain can, for a longer path, and
/// browsers send it first): neither is trusted.
fn cookie<'a>(headers: &'a HeaderMap, name: &'a str) -> Option<&'a str> {
    let mut found = cookies(headers, name);
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

/// Every value of cookie `name` in the request's `Cookie` headers.
fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(move |pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value.trim())
        })
}

/// Middleware: refuses (403) a state-changing request (any method but GET, HEAD and
/// OPTIONS) that a browser says comes from another origin, unless that origin is in
/// [`Settings::trusted_origins`](crate::Settings::trusted_origins). Browsers say so in
/// `Sec-Fetch-Site` (anything but `same-origin` or `none` is another origin), or
/// else in `Origin`, compared with the request's `Host`. A request with neither did not
/// come from another site's page (curl, apps, old browsers on the same origin) and
/// passes: this guards the visitor's browser, not the endpoint, which
/// [`router`](crate::router)'s own rules and the app's login guard.
/// [`router`](crate::router) applies it; put it on the app's forms too. A refused
/// upload's body is read first, so the browser sees the answer.
///
/// ```
/// use axum::{Router, body::Body, http::{Request, StatusCode}, middleware::from_fn_with_state, routing::post};
/// use sea_orm_resumable::{Secret, Settings, Uploads, refuse_cross_origin};
/// use tower::ServiceExt;
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// # let media = tempfile::tempdir().unwrap();
/// let uploads = Uploads::builder(Settings::new(media.path()), Secret::generate()).build().await.unwrap();
/// let app: Router = Router::new()
///     .route("/documents", post(|| async { "saved" }))
///     .layer(from_fn_with_state(uploads, refuse_cross_origin));
/// let post = |origin: &str| Request::post("/documents")
///     .header("host", "app.example").header("origin", origin)
///     .body(Body::empty()).unwrap();
/// let answer = app.clone().oneshot(post("http://app.example")).await.unwrap();
/// assert_eq!(answer.status(), StatusCode::OK);
/// let answer = app.oneshot(post("https://evil.example")).await.unwrap();
/// assert_eq!(answer.status(), StatusCode::FORBIDDEN);
/// # });
/// ```
pub async fn refuse_cross_origin(
    State(uploads): State<Uploads>,
    request: Request,
    next: Next,
) -> Response {
    match cross_origin(&request, &uploads.settings().trusted_origins) {
        None => next.run(request).await,
        Some(origin) => {
            let refusal = UploadError::Forbidden(format!(
                "this request came from another site ({origin}) and was refused; reload \
                 the page and try again"
            ));
            uploads.refuse(request, refusal).await
        }
    }
}

/// The other origin a state-changing browser request comes from, if it is not trusted.
fn cross_origin(request: &Request, trusted: &[String]) -> Option<String> {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return None;
    }
    let headers = request.headers();
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let origin = text(ORIGIN.as_str());
    let is_trusted = |origin: Option<&str>| {
        trusted.iter().any(|t| {
            t == "*" || origin.is_some_and(|o| t.trim_end_matches('/').eq_ignore_ascii_case(o))
        })
    };
    let from = match text("sec-fetch-site") {
        Some("same-origin" | "none") => return None,
        Some(site) => origin.unwrap_or(site),
        None => {
            let origin = origin?;
            let host = origin.split_once("://").map(|(_, host)| host);
            if host.is_some_and(|host| Some(host) == text(HOST.as_str())) {
                return None;
            }
            origin
        }
    };
    (!is_trusted(origin)).then(|| from.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, headers: &[(&str, &str)]) -> Request {
        let mut builder = Request::builder().method(method).uri("/");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn browsers_saying_another_site_sent_a_post_are_refused() {
        let none: &[String] = &[];
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[("sec-fetch-site", "cross-site")], true),
            (&[("sec-fetch-site", "same-site")], true),
            (&[("sec-fetch-site", "same-origin")], false),
            (&[("sec-fetch-site", "none")], false),
            (&[("origin", "https://evil.example"), ("host", "app")], true),
            (&[("origin", "null"), ("host", "app")], true),
            (&[("origin", "http://app"), ("host", "app")], false),
            (
                &[("origin", "http://app:8000"), ("host", "app:8000")],
                false,
            ),
            (&[("host", "app")], false),
        ];
        for (headers, refused) in cases {
            let found = cross_origin(&request(Method::POST, headers), none);
            assert_eq!(found.is_some(), *refused, "{headers:?}");
            assert!(cross_origin(&request(Method::GET, headers), none).is_none());
        }
    }

    #[test]
    fn trusted_origins_may_post() {
        let trusted = vec!["https://app.example/".to_owned()];
        let headers = [
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://app.example"),
        ];
        assert!(cross_origin(&request(Method::POST, &headers), &trusted).is_none());
        let headers = [
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.example"),
        ];
        assert!(cross_origin(&request(Method::POST, &headers), &trusted).is_some());
        let any = vec!["*".to_owned()];
        assert!(cross_origin(&request(Method::POST, &headers), &any).is_none());
    }

    #[test]
    fn the_scope_cookie_is_read_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=1; resumable_scope=x.y ;b=2"),
        );
        assert_eq!(cookie(&headers, SCOPE_COOKIE), Some("x.y"));
        assert_eq!(cookie(&headers, "c"), None);
        // A second one (planted for a longer path by a sibling subdomain): neither counts.
        headers.append(COOKIE, HeaderValue::from_static("resumable_scope=p.q"));
        assert_eq!(cookie(&headers, SCOPE_COOKIE), None);
    }
}
