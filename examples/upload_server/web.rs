//! The example app's pages: the document form, document pages and the media files.

use axum::{
    Form, Router,
    body::Body,
    extract::{Path, State},
    http::{Request, StatusCode, header, request::Parts},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, DatabaseConnection, EntityTrait, QueryOrder};
use sea_orm_resumable::{ResumableFileField, Uploads, field::save_error_message, router};
use serde::Deserialize;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::document::{self, DocumentFile};

/// What the handlers share.
#[derive(Clone)]
pub struct App {
    pub db: DatabaseConnection,
    pub uploads: Uploads,
}

/// Every route of the example app.
pub fn routes(app: App) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/documents", post(create_document))
        .route("/documents/{id}", get(show_document))
        .route("/media/{*path}", get(media_file))
        .nest_service("/resumable_upload", router(app.uploads.clone()))
        .with_state(app)
}

/// The form a page posts once its upload is complete.
#[derive(Deserialize)]
pub struct DocumentForm {
    #[serde(default)]
    title: String,
    /// The upload token the endpoint answered with.
    #[serde(default)]
    file: String,
}

/// `GET /`: the document form and the list of documents.
async fn index(State(app): State<App>) -> Result<Html<String>, AppError> {
    let documents = document::Entity::find()
        .order_by_desc(document::Column::Id)
        .all(&app.db)
        .await?;
    let items: String = documents
        .iter()
        .map(|d| {
            format!(
                "<li><a href=\"/documents/{}\">{}</a></li>",
                d.id,
                escape(&d.title)
            )
        })
        .collect();
    Ok(page(
        "Documents",
        &format!(
            "{}<h2>All documents</h2><ul>{items}</ul>",
            document_form("", "", None)
        ),
    ))
}

/// `POST /documents`: a row from a title and a completed upload's token; 303 to its page.
async fn create_document(
    State(app): State<App>,
    parts: Parts,
    Form(form): Form<DocumentForm>,
) -> Result<Response, AppError> {
    let invalid = |reason: String| {
        let body = document_form(&form.title, &form.file, Some(&reason));
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            page("Invalid document", &body),
        )
            .into_response()
    };
    if form.title.trim().is_empty() {
        return Ok(invalid("Please give the document a title.".into()));
    }
    if form.file.trim().is_empty() {
        return Ok(invalid("Please upload a file first.".into()));
    }
    let scope = match app.uploads.scope_of(&parts) {
        Ok(scope) => scope,
        Err(e) => return Ok(invalid(e.to_string())),
    };
    let file = match ResumableFileField::<DocumentFile>::from_token(
        &app.uploads,
        &scope,
        form.file.trim(),
    )
    .await
    {
        Ok(file) => file,
        Err(e) => return Ok(invalid(e.to_string())),
    };
    let saved = document::ActiveModel {
        title: Set(form.title.trim().to_owned()),
        file: Set(file),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(&app.db)
    .await;
    let saved = match saved {
        Ok(saved) => saved,
        // The file field's own refusals (the upload saved meanwhile by a second submit, …)
        // are the user's to read; other database errors are ours.
        Err(e) => match save_error_message(&e) {
            Some(reason) => return Ok(invalid(reason.to_owned())),
            None => return Err(e.into()),
        },
    };
    Ok(Redirect::to(&format!("/documents/{}", saved.id)).into_response())
}

/// `GET /documents/{id}`: title, stored path and a link to the file.
async fn show_document(State(app): State<App>, Path(id): Path<i32>) -> Result<Response, AppError> {
    let Some(doc) = document::Entity::find_by_id(id).one(&app.db).await? else {
        return Ok((
            StatusCode::NOT_FOUND,
            page("Not found", "<p>No such document.</p>"),
        )
            .into_response());
    };
    let media = app.uploads.media();
    let path = doc.file.path().unwrap_or_default();
    let url = doc.file.url(&media).unwrap_or_default();
    let size = doc
        .file
        .size(&media)
        .await
        .map_or("missing".into(), |s| format!("{s} bytes"));
    let body = format!(
        "<dl><dt>Title</dt><dd id=\"title\">{}</dd>\
         <dt>Stored path</dt><dd id=\"path\">{}</dd>\
         <dt>Size</dt><dd id=\"size\">{}</dd>\
         <dt>Created</dt><dd>{}</dd></dl>\
         <p><a id=\"file\" href=\"{}\">Download</a> · <a href=\"/\">All documents</a></p>",
        escape(&doc.title),
        escape(path),
        size,
        doc.created_at.to_rfc3339(),
        escape(&url),
    );
    Ok(page(&doc.title, &body).into_response())
}

/// `GET /media/{path}`: a stored file. Chunk directories and anything outside the media
/// root are never served.
async fn media_file(
    State(app): State<App>,
    Path(path): Path<String>,
    request: Request<Body>,
) -> Response {
    match app.uploads.media().path(&path) {
        Ok(file) => match ServeFile::new(file).oneshot(request).await {
            Ok(response) => response.into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        },
        Err(_) => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// The document form, filled in again after an error (the upload token is kept, so the
/// user does not upload again).
fn document_form(title: &str, token: &str, error: Option<&str>) -> String {
    let error = error.map_or(String::new(), |e| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e))
    });
    format!(
        "<h2>New document</h2>{error}\
         <form method=\"post\" action=\"/documents\">\
         <p><label>Title <input name=\"title\" value=\"{}\" required></label></p>\
         <p><label>Upload token <input name=\"file\" value=\"{}\"></label> \
         (upload to <code>/resumable_upload/</code> first)</p>\
         <p><button>Save</button></p></form>",
        escape(title),
        escape(token),
    )
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{}</title></head><body><h1>{}</h1>{body}</body></html>",
        escape(title),
        escape(title)
    ))
}

/// Escapes text for HTML content and quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
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
