//! The widget's JavaScript client and stylesheet, embedded in the binary and served by
//! [`assets_router`] with the right content types, an `ETag`, and a year-long immutable
//! cache on the versioned names (`resumable-widget.<hash>.js`) that [`Assets`] hands to
//! pages.
//!
//! ```
//! use axum::Router;
//! use sea_orm_resumable::assets::{Assets, assets_router};
//!
//! let app: Router = Router::new().nest_service("/static/resumable", assets_router());
//! let tags = Assets::tags("/static/resumable");
//! assert!(tags.contains("/static/resumable/resumable-widget."));
//! ```

use axum::{
    Router,
    extract::Path,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// One embedded file.
struct Asset {
    /// Plain name (`resumable-widget.js`).
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const FILES: [Asset; 2] = [
    Asset {
        name: "resumable-widget.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/resumable-widget.js"),
    },
    Asset {
        name: "resumable-widget.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/resumable-widget.css"),
    },
];

/// Each file's content hash (first 12 hex digits of its SHA-256): its version.
static VERSIONS: LazyLock<Vec<String>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|file| hex::encode(&Sha256::digest(file.body)[..6]))
        .collect()
});

/// The versioned name of a file: `resumable-widget.<hash>.js`.
fn versioned(index: usize) -> String {
    let name = FILES[index].name;
    let (stem, extension) = name.rsplit_once('.').unwrap_or((name, ""));
    format!("{stem}.{}.{extension}", VERSIONS[index])
}

/// URLs of the embedded assets, for pages.
pub struct Assets;

impl Assets {
    /// The versioned URL of `name` (`resumable-widget.js` or `resumable-widget.css`) under
    /// `base`, where [`assets_router`] is mounted; `None` for an unknown name.
    ///
    /// ```
    /// use sea_orm_resumable::assets::Assets;
    /// let url = Assets::url("/assets", "resumable-widget.js").unwrap();
    /// assert!(url.starts_with("/assets/resumable-widget.") && url.ends_with(".js"));
    /// assert_eq!(Assets::url("/assets", "nope.js"), None);
    /// ```
    pub fn url(base: &str, name: &str) -> Option<String> {
        let index = FILES.iter().position(|file| file.name == name)?;
        Some(format!(
            "{}/{}",
            base.trim_end_matches('/'),
            versioned(index)
        ))
    }

    /// The `<link>` and `<script>` tags a page with widgets needs, for assets mounted at
    /// `base`.
    pub fn tags(base: &str) -> String {
        let css = Self::url(base, "resumable-widget.css").unwrap_or_default();
        let js = Self::url(base, "resumable-widget.js").unwrap_or_default();
        format!(
            r#"<link rel="stylesheet" href="{}"><script src="{}" defer></script>"#,
            crate::page::widget::Escaped(&css),
            crate::page::widget::Escaped(&js)
        )
    }
}

/// Serves the embedded assets: `GET /{name}` for the plain names (revalidated each time,
/// `Cache-Control: no-cache`) and the versioned ones (`public, max-age=31536000,
/// immutable`), both with an `ETag` and `304 Not Modified` for a matching
/// `If-None-Match`. Mount it anywhere, e.g. `.nest_service("/static/resumable", assets_router())`.
pub fn assets_router() -> Router {
    Router::new().route("/{name}", get(serve))
}

async fn serve(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let found = (0..FILES.len()).find_map(|i| {
        if FILES[i].name == name {
            Some((i, false))
        } else if versioned(i) == name {
            Some((i, true))
        } else {
            None
        }
    });
    let Some((index, immutable)) = found else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let file = &FILES[index];
    let etag = format!("\"{}\"", VERSIONS[index]);
    let cache = if immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            // Weak comparison (RFC 9110): a `W/` prefix from a proxy still matches.
            v.split(',')
                .map(|tag| tag.trim().trim_start_matches("W/"))
                .any(|tag| tag == etag || tag == "*")
        });
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(file.content_type),
            )],
            file.body,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    response
}
