//! The example app's pages: the document form, document pages and the media files.

use axum::{
    Form, Router,
    body::Body,
    extract::{DefaultBodyLimit, FromRequestParts, Path, State},
    http::{HeaderValue, Method, Request, StatusCode, header, request::Parts},
    middleware::{self, Next, from_fn_with_state},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use axum_login::AuthManagerLayerBuilder;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder,
};
use sea_orm_resumable::{
    Uploads, Widget,
    assets::{Assets, assets_router},
    field::save_error_message,
    form::FileInput,
    refuse_cross_origin, router, scope_cookie,
    widget::Escaped,
};
use serde::Deserialize;
use std::time::Duration;
use tower::ServiceExt;
use tower_http::{services::ServeFile, set_header::SetResponseHeaderLayer};

use tower_sessions::{MemoryStore, SessionManagerLayer, cookie::SameSite};

use crate::document::{self, DocumentFile};
use crate::login::{self, Auth, CSRF_FIELD, Users};

/// What the handlers share.
#[derive(Clone)]
pub struct App {
    pub db: DatabaseConnection,
    pub uploads: Uploads,
    /// `--require-login`: pages, the upload endpoint and `/media/` are for logged-in
    /// users only, each seeing their own uploads and documents.
    pub require_login: bool,
    /// `--form-timeout`: how long a page's form may take to arrive.
    pub form_timeout: Duration,
}

/// Largest form a page takes (a title, a token, a CSRF token, a name and password).
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The policy of every page: scripts, styles and forms from this origin only (the page's
/// own `<style>` aside), never framed by another site.
const PAGE_POLICY: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Every route of the example app; `users` log in at `/login`.
pub fn routes(app: App, users: Users) -> Router {
    let mut pages = Router::new()
        .route("/", get(index))
        .route("/documents", post(create_document))
        .route("/documents/{id}", get(show_document));
    let mut files = Router::new().route("/media/{*path}", get(media_file));
    let mut endpoint = router(app.uploads.clone());
    if app.require_login {
        pages = pages.route_layer(middleware::from_fn(login::require_user_page));
        let require_user =
            || middleware::from_fn_with_state(app.uploads.clone(), login::require_user);
        files = files.route_layer(require_user());
        endpoint = endpoint.route_layer(require_user());
    }
    // Sessions live in memory: a restart logs everybody out (uploads resume after the
    // next login). SameSite=Lax keeps the cookie off cross-site POSTs as a second guard
    // beside the CSRF token.
    let sessions = SessionManagerLayer::new(MemoryStore::default())
        .with_secure(false)
        .with_same_site(SameSite::Lax);
    let auth = AuthManagerLayerBuilder::new(users, sessions).build();
    let forms = middleware::from_fn_with_state(app.form_timeout, form_within);
    let uploads = app.uploads.clone();
    Router::new()
        .merge(pages)
        .merge(files)
        .route("/login", get(login::login_form).post(login::login))
        .route("/logout", post(login::logout))
        // Pages' forms are small and must come quickly (the endpoint paces its own).
        .route_layer(forms)
        .route_layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        // A scope per browser from the first page on, so the widget's first chunks
        // already carry it (the endpoint reads the cookie but never hands one out).
        .route_layer(from_fn_with_state(uploads.clone(), scope_cookie))
        .nest_service(ASSETS_URL, assets_router())
        .nest_service("/resumable_upload", endpoint)
        .with_state(app)
        .layer(auth)
        // No state-changing request from another site, whatever the route.
        .layer(from_fn_with_state(uploads, refuse_cross_origin))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_POLICY),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
}

/// Middleware for pages: a POST's form is read whole within `limit` (408 after that),
/// so a client trickling a byte now and then holds nothing for long.
async fn form_within(
    State(limit): State<Duration>,
    request: Request<Body>,
    next: Next,
) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let read = axum::body::to_bytes(body, MAX_FORM_BYTES);
    match tokio::time::timeout(limit, read).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(_)) => (StatusCode::PAYLOAD_TOO_LARGE, "the form is too large\n").into_response(),
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            "the form took too long to arrive: try again\n",
        )
            .into_response(),
    }
}

/// Who is asking: the owner their documents get (their upload scope: the user name with
/// login, their browser without) and, with login, the session's CSRF token for the
/// page's forms and the widget.
pub struct Viewer {
    owner: String,
    csrf: Option<String>,
}

impl FromRequestParts<App> for Viewer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let auth = parts.extensions.get::<Auth>().cloned();
        let owner = app
            .uploads
            .scope_of(parts)
            .map_or(String::new(), |scope| scope.as_str().to_owned());
        let csrf = match (&auth, app.require_login) {
            (Some(auth), true) => Some(login::csrf_token(&auth.session).await),
            _ => None,
        };
        Ok(Self { owner, csrf })
    }
}

/// The form a page posts once its upload is complete.
#[derive(Deserialize)]
pub struct DocumentForm {
    #[serde(default)]
    title: String,
    /// The widget's hidden input: the upload token.
    #[serde(default)]
    file: FileInput<DocumentFile>,
    /// With login: the session's CSRF token.
    #[serde(default)]
    csrf_token: String,
}

/// Where the widget uploads, and where its script and stylesheet are served.
const UPLOAD_URL: &str = "/resumable_upload/";
const ASSETS_URL: &str = "/static/resumable";

/// `GET /`: the document form and the list of documents.
async fn index(State(app): State<App>, viewer: Viewer) -> Result<Html<String>, AppError> {
    let form = document_form(
        &viewer,
        "",
        Widget::for_field::<DocumentFile>("file", UPLOAD_URL).required(true),
        None,
    );
    let list = document_list(&app, &viewer).await?;
    Ok(page(
        "Documents",
        &format!("{}{form}{list}", who_is_logged_in(&viewer)),
        viewer.csrf.as_deref(),
    ))
}

/// "Logged in as …" and the logout button, with login.
fn who_is_logged_in(viewer: &Viewer) -> String {
    let Some(csrf) = &viewer.csrf else {
        return String::new();
    };
    format!(
        "<form method=\"post\" action=\"/logout\" id=\"logout-form\"><p>Logged in as \
         <strong id=\"user\">{}</strong> <input type=\"hidden\" name=\"{CSRF_FIELD}\" \
         value=\"{}\"><button id=\"log-out\">Log out</button></p></form>",
        Escaped(&viewer.owner),
        Escaped(csrf)
    )
}

/// The viewer's documents, newest first.
async fn document_list(app: &App, viewer: &Viewer) -> Result<String, AppError> {
    let documents = document::Entity::find()
        .filter(document::Column::Owner.eq(viewer.owner.as_str()))
        .order_by_desc(document::Column::Id)
        .all(&app.db)
        .await?;
    let items: String = documents
        .iter()
        .map(|d| {
            format!(
                "<li><a href=\"/documents/{}\">{}</a></li>",
                d.id,
                Escaped(&d.title)
            )
        })
        .collect();
    Ok(format!(
        "<h2>All documents</h2><ul id=\"documents\">{items}</ul>"
    ))
}

/// `POST /documents`: a row from a title and a completed upload's token; 303 to its page,
/// or the form again (422) with the reasons, keeping a completed upload.
async fn create_document(
    State(app): State<App>,
    viewer: Viewer,
    parts: Parts,
    Form(form): Form<DocumentForm>,
) -> Result<Response, AppError> {
    if let Some(csrf) = &viewer.csrf {
        // With login the session's token must come back; its absence is a forged post.
        if !login::same_token(csrf, &form.csrf_token) {
            return Ok(login::csrf_refusal());
        }
    }
    let scope = app.uploads.scope_of(&parts).ok();
    let title = form.title.trim();
    let title_error = title
        .is_empty()
        .then_some("Please give the document a title.");
    let file = match &scope {
        Some(scope) => form.file.clean(&app.uploads, scope).await,
        None => Err(sea_orm_resumable::FileFieldError::UnknownUpload),
    };
    let saved = match (title_error, file) {
        (None, Ok(file)) => document::ActiveModel {
            title: Set(title.to_owned()),
            file: Set(file),
            owner: Set(viewer.owner.clone()),
            created_at: Set(chrono::Utc::now()),
            ..Default::default()
        }
        .insert(&app.db)
        .await
        .map_err(|e| match save_error_message(&e) {
            // The file field's own refusals (the upload saved meanwhile by a second
            // submit, …) are the user's to read; other database errors are ours.
            Some(reason) => Ok(reason.to_owned()),
            None => Err(AppError::from(e)),
        }),
        (_, Err(reason)) => Err(Ok(reason.to_string())),
        (Some(_), Ok(_)) => Err(Ok(String::new())),
    };
    let file_error = match saved {
        Ok(saved) => return Ok(Redirect::to(&format!("/documents/{}", saved.id)).into_response()),
        Err(Err(database)) => return Err(database),
        Err(Ok(reason)) => reason,
    };
    // Keep the upload only when the file itself was fine (the title was missing).
    let status = match &scope {
        Some(scope) if file_error.is_empty() => form.file.status(&app.uploads, scope).await,
        _ => None,
    };
    let widget = Widget::for_field::<DocumentFile>("file", UPLOAD_URL)
        .required(true)
        .value(form.file.token(), status)
        .errors((!file_error.is_empty()).then_some(file_error));
    let body = document_form(&viewer, &form.title, widget, title_error);
    Ok((
        StatusCode::UNPROCESSABLE_ENTITY,
        page("Invalid document", &body, viewer.csrf.as_deref()),
    )
        .into_response())
}

/// `GET /documents/{id}`: title, stored path and a link to the file (the viewer's own
/// documents only: anybody else's is "not found").
async fn show_document(
    State(app): State<App>,
    viewer: Viewer,
    Path(id): Path<i32>,
) -> Result<Response, AppError> {
    let found = document::Entity::find_by_id(id)
        .filter(document::Column::Owner.eq(viewer.owner.as_str()))
        .one(&app.db)
        .await?;
    let Some(doc) = found else {
        return Ok((
            StatusCode::NOT_FOUND,
            page("Not found", "<p>No such document.</p>", None),
        )
            .into_response());
    };
    let media = app.uploads.media();
    let path = doc.file.path().unwrap_or_default();
    // The app's /media/ link: it checks the viewer, then serves the file (or, on object
    // storage, sends the browser to a short-lived presigned URL).
    let url = doc.file.url(&media).unwrap_or_default();
    let size = app
        .uploads
        .storage()
        .size(path)
        .await
        .map_or("missing".into(), |s| format!("{s} bytes"));
    let body = format!(
        "<dl><dt>Title</dt><dd id=\"title\">{}</dd>\
         <dt>Stored path</dt><dd id=\"path\">{}</dd>\
         <dt>Size</dt><dd id=\"size\">{}</dd>\
         <dt>Created</dt><dd>{}</dd></dl>\
         <p><a id=\"file\" href=\"{}\">Download</a> · <a href=\"/\">All documents</a></p>",
        Escaped(&doc.title),
        Escaped(path),
        size,
        doc.created_at.to_rfc3339(),
        Escaped(&url),
    );
    Ok(page(&doc.title, &body, None).into_response())
}

/// `GET /media/{path}`: a stored file. Chunk directories and anything outside the media
/// root are never served; with login, only files of the viewer's own documents are.
async fn media_file(
    State(app): State<App>,
    viewer: Viewer,
    Path(path): Path<String>,
    request: Request<Body>,
) -> Response {
    // Only the files of the viewer's own documents (a user's, or a browser's).
    let owned = document::Entity::find()
        .filter(document::Column::File.eq(path.as_str()))
        .filter(document::Column::Owner.eq(viewer.owner.as_str()))
        .one(&app.db)
        .await;
    match owned {
        Ok(Some(_)) if !viewer.owner.is_empty() => {}
        Ok(_) => return (StatusCode::NOT_FOUND, "not found").into_response(),
        Err(e) => return AppError(e).into_response(),
    }
    if app.uploads.is_shared() {
        return object_file(&app, &path).await;
    }
    let mut response = match app.uploads.media().path(&path) {
        // A directory is no document's file: tower-http would answer with a broken body.
        Ok(file) if !tokio::fs::metadata(&file).await.is_ok_and(|m| m.is_file()) => {
            return (StatusCode::NOT_FOUND, "not found").into_response();
        }
        Ok(file) => match ServeFile::new(file).oneshot(request).await {
            Ok(response) => response.into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        },
        Err(_) => return (StatusCode::NOT_FOUND, "not found").into_response(),
    };
    // Uploaded files are other people's content on this origin: never let the browser
    // render them as a page (an uploaded .html or .svg could run script here).
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    response
}

/// A stored file on object storage: a redirect to a presigned URL valid for a minute
/// (the bytes come from the store, on its own origin), or the bytes through the app for a
/// store that cannot sign.
async fn object_file(app: &App, path: &str) -> Response {
    let storage = app.uploads.storage();
    match storage.exists(path).await {
        Ok(true) => {}
        Ok(false) => return (StatusCode::NOT_FOUND, "not found").into_response(),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            return (StatusCode::NOT_FOUND, "not found").into_response();
        }
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
    match storage.url(path, std::time::Duration::from_secs(60)).await {
        Ok(url) => Redirect::temporary(&url).into_response(),
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => match storage.read(path).await {
            Ok(bytes) => (
                [
                    (header::CONTENT_DISPOSITION, "attachment"),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                    (header::CONTENT_SECURITY_POLICY, "sandbox"),
                ],
                Body::from_stream(bytes),
            )
                .into_response(),
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
        },
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// The document form: a title and the file widget (and, with login, the CSRF token).
fn document_form(
    viewer: &Viewer,
    title: &str,
    widget: Widget,
    title_error: Option<&str>,
) -> String {
    let csrf = viewer.csrf.as_ref().map_or(String::new(), |token| {
        format!(
            "<input type=\"hidden\" name=\"{CSRF_FIELD}\" value=\"{}\">",
            Escaped(token)
        )
    });
    let title_error = title_error.map_or(String::new(), |e| {
        format!(
            "<p class=\"error\" id=\"title-error\" role=\"alert\">{}</p>",
            Escaped(e)
        )
    });
    format!(
        "<h2>New document</h2>\
         <form method=\"post\" action=\"/documents\" id=\"document-form\">{csrf}\
         <p><label>Title <input name=\"title\" id=\"title\" value=\"{}\" required></label></p>{title_error}\
         {}\
         <p><button id=\"save\">Save</button></p></form>",
        Escaped(title),
        widget.label("File"),
    )
}

/// A whole page; `csrf` goes into `<meta name="csrf-token">`, where the widget reads the
/// token it sends with every chunk.
pub fn page(title: &str, body: &str, csrf: Option<&str>) -> Html<String> {
    let csrf = csrf.map_or(String::new(), |token| {
        format!("<meta name=\"csrf-token\" content=\"{}\">", Escaped(token))
    });
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{csrf}\
         <title>{}</title>{}\
         <style>body{{font-family:system-ui,sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem}}\
         .error{{color:#b91c1c}}</style></head><body><h1>{}</h1>{body}</body></html>",
        Escaped(title),
        Assets::tags(ASSETS_URL),
        Escaped(title)
    ))
}

/// A database failure: 500 with a short message (details in the log).
pub struct AppError(sea_orm::DbErr);

impl From<sea_orm::DbErr> for AppError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self(e)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        tracing::error!(error = %self.0, "database error");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "database error\n",
        )
            .into_response()
    }
}
