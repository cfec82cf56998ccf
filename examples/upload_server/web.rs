//! The example app's pages: the document form, document pages and the media files.

use axum::{
    Form, Router,
    body::Body,
    extract::{Path, State},
    http::{HeaderValue, Request, StatusCode, header, request::Parts},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, DatabaseConnection, EntityTrait, QueryOrder};
use sea_orm_resumable::{
    Uploads, Widget,
    assets::{Assets, assets_router},
    field::save_error_message,
    form::FileInput,
    router,
    widget::Escaped,
};
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
        .nest_service(ASSETS_URL, assets_router())
        .nest_service("/resumable_upload", router(app.uploads.clone()))
        .with_state(app)
}

/// The form a page posts once its upload is complete.
#[derive(Deserialize)]
pub struct DocumentForm {
    #[serde(default)]
    title: String,
    /// The widget's hidden input: the upload token.
    #[serde(default)]
    file: FileInput<DocumentFile>,
}

/// Where the widget uploads, and where its script and stylesheet are served.
const UPLOAD_URL: &str = "/resumable_upload/";
const ASSETS_URL: &str = "/static/resumable";

/// `GET /`: the document form and the list of documents.
async fn index(State(app): State<App>) -> Result<Html<String>, AppError> {
    let form = document_form(
        "",
        Widget::for_field::<DocumentFile>("file", UPLOAD_URL).required(true),
        None,
    );
    Ok(page(
        "Documents",
        &format!("{form}{}", document_list(&app).await?),
    ))
}

/// The list of documents, newest first.
async fn document_list(app: &App) -> Result<String, AppError> {
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
    parts: Parts,
    Form(form): Form<DocumentForm>,
) -> Result<Response, AppError> {
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
    let body = document_form(&form.title, widget, title_error);
    Ok((
        StatusCode::UNPROCESSABLE_ENTITY,
        page("Invalid document", &body),
    )
        .into_response())
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
        Escaped(&doc.title),
        Escaped(path),
        size,
        doc.created_at.to_rfc3339(),
        Escaped(&url),
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
    let mut response = match app.uploads.media().path(&path) {
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

/// The document form: a title and the file widget.
fn document_form(title: &str, widget: Widget, title_error: Option<&str>) -> String {
    let title_error = title_error.map_or(String::new(), |e| {
        format!(
            "<p class=\"error\" id=\"title-error\" role=\"alert\">{}</p>",
            Escaped(e)
        )
    });
    format!(
        "<h2>New document</h2>\
         <form method=\"post\" action=\"/documents\" id=\"document-form\">\
         <p><label>Title <input name=\"title\" id=\"title\" value=\"{}\" required></label></p>{title_error}\
         {}\
         <p><button id=\"save\">Save</button></p></form>",
        Escaped(title),
        widget.label("File"),
    )
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
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
