//! Errors of the upload endpoint and the status codes they answer with.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};

/// Why a chunk or test request failed. Each variant maps to one status code that both
/// resumable.js and flow.js read the intended way (see `PROTOCOL.md`): 400/404/415 stop the
/// upload for good, 503 makes the client retry later. The body is
/// `{"error": "<one line>"}`.
///
/// ```
/// use axum::{http::StatusCode, response::IntoResponse};
/// use sea_orm_resumable::UploadError;
///
/// let response = UploadError::BadRequest("chunk numbers start at 1".into()).into_response();
/// assert_eq!(response.status(), StatusCode::BAD_REQUEST);
/// ```
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The request can never succeed as sent: bad parameters, wrong sizes, over a limit.
    #[error("{0}")]
    BadRequest(String),
    /// The upload or chunk asked about does not exist for this scope.
    #[error("{0}")]
    NotFound(String),
    /// The body is not in a form the endpoint reads.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Not allowed: another site's page sent it (see
    /// [`refuse_cross_origin`](crate::refuse_cross_origin)).
    #[error("{0}")]
    Forbidden(String),
    /// Not now: the chunk is busy or the body stalled; the client should retry.
    #[error("{0}")]
    Retry(String),
    /// The storage failed (disk full, permission denied, …); the upload stays resumable.
    #[error("storage is unavailable right now, try again later")]
    Unavailable(#[source] std::io::Error),
}

impl UploadError {
    /// The status code this error answers with.
    ///
    /// ```
    /// use sea_orm_resumable::UploadError;
    /// let busy = UploadError::Retry("chunk 3 is being received by another request".into());
    /// assert_eq!(busy.status(), 503);
    /// ```
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Retry(_) | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<std::io::Error> for UploadError {
    fn from(e: std::io::Error) -> Self {
        Self::Unavailable(e)
    }
}

impl IntoResponse for UploadError {
    fn into_response(self) -> Response {
        if let Self::Unavailable(e) = &self {
            tracing::warn!(error = %e, "upload storage failed");
        } else {
            tracing::debug!(error = %self, "upload request refused");
        }
        let status = self.status();
        // One line, whatever the source said.
        let message = self.to_string().replace(['\r', '\n'], " ");
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}
