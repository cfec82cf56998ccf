//! The axum side: [`router`] and its two handlers, test (GET) and upload (POST).

use axum::{
    Json, Router,
    body::Body,
    extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State, multipart::Field},
    http::{Method, StatusCode, header::CONTENT_TYPE, request::Parts},
    middleware::from_fn_with_state,
    response::{IntoResponse, Response},
    routing::get,
};
use futures_util::{Stream, StreamExt};
use std::time::Duration;
use tokio::sync::watch;

use crate::{
    ChunkParams, Scope, UploadError, UploadStatus, Uploads,
    protocol::browser::{read_scope_cookie, refuse_cross_origin},
    service::pace::{BodyError, BodyPace, Cut, drain, paced},
};

/// Most form fields read before the chunk's part of a multipart body (resumable.js and
/// flow.js send about ten, plus the app's own `query` entries).
pub(crate) const MAX_FORM_FIELDS: usize = 64;
/// Most bytes of form field text read before the chunk's part, all fields together.
pub(crate) const MAX_FORM_TEXT: usize = 16 * 1024;
/// Most bytes of a multipart body read before its chunk's part starts (fields, their
/// headers, boundaries, anything before the first boundary): the memory a request may
/// hold before its chunk is streamed to storage.
pub(crate) const MAX_PREAMBLE: u64 = 64 * 1024;

/// The upload endpoint, to nest wherever the app likes and restrict with its own layers.
///
/// * `GET /` — test: 200 with an [`UploadStatus`] when the chunk is stored or the upload
///   complete, 204 when it is not;
/// * `POST /` — upload: a `multipart/form-data` body (chunk in the file part, parameters in
///   the fields or the query string) or a raw body of any other type (parameters in the
///   query string); 200 with an [`UploadStatus`].
///
/// Errors are JSON `{"error": "…"}` with 400, 404 or 415 (final), 403 (a post another
/// site's page sent: [`refuse_cross_origin`](crate::refuse_cross_origin)) or 503 (retry
/// later). The router reads the browser-scope cookie that the app's pages hand out with
/// [`scope_cookie`](crate::scope_cookie) (it never sets one itself), and paces every
/// request body from its first byte (`Settings::body_idle_timeout`, `min_body_rate`).
///
/// ```
/// use axum::Router;
/// use sea_orm_resumable::{Secret, Settings, Uploads, router};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// # let media = tempfile::tempdir().unwrap();
/// let uploads = Uploads::builder(Settings::new(media.path()), Secret::generate())
///     .build()
///     .await
///     .unwrap();
/// let app: Router = Router::new().nest("/resumable_upload", router(uploads));
/// // Restrict it like any axum route: `.route_layer(your_auth_layer)`.
/// # let _ = app;
/// # });
/// ```
pub fn router<S>(uploads: Uploads) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let limit = uploads.settings().max_body_size();
    Router::new()
        .route("/", get(test_chunk).post(upload_chunk))
        .fallback(trailing_slash)
        .layer(from_fn_with_state(uploads.clone(), read_scope_cookie))
        .layer(from_fn_with_state(uploads.clone(), refuse_cross_origin))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(uploads)
}

/// Nested at `/resumable_upload`, the route `/` answers `/resumable_upload` only; this
/// serves `/resumable_upload/` too, and answers anything else under it with a JSON 404.
async fn trailing_slash(state: State<Uploads>, request: Request) -> Response {
    match (request.uri().path(), request.method()) {
        ("/", &Method::GET) => test_chunk(state, request).await,
        ("/", &Method::POST) => upload_chunk(state, request).await,
        ("/", _) => StatusCode::METHOD_NOT_ALLOWED.into_response(),
        _ => UploadError::NotFound("no such upload endpoint".into()).into_response(),
    }
}

/// The query string's pairs, decoded.
fn query_pairs(parts: &Parts) -> Vec<(String, String)> {
    parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// The first value of `name` among `pairs`.
fn lookup<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn parse(
    uploads: &Uploads,
    fields: &[(String, String)],
    query: &[(String, String)],
) -> Result<ChunkParams, UploadError> {
    ChunkParams::parse(&uploads.settings().parameter_names, |name| {
        lookup(fields, name).or_else(|| lookup(query, name))
    })
    .map_err(|e| UploadError::BadRequest(e.0))
}

fn answer(result: Result<UploadStatus, UploadError>) -> Response {
    match result {
        Ok(status) => Json(status).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn test_chunk(State(uploads): State<Uploads>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let tested = async {
        let scope = uploads.scope_of(&parts)?;
        let params = parse(&uploads, &[], &query_pairs(&parts))?;
        uploads.test_chunk(&scope, &params).await
    };
    match tested.await {
        Ok(Some(status)) => Json(status).into_response(),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn upload_chunk(State(uploads): State<Uploads>, request: Request) -> Response {
    // The chunk is written on a task of its own: if the client goes away, the handler is
    // dropped, but the write still ends cleanly (the body stream reports the cut) and the
    // chunk's claim is released only after its last byte has landed.
    let task = tokio::spawn(async move {
        let (parts, body) = request.into_parts();
        let limit = uploads.settings().max_body_size() as u64;
        let idle = uploads.settings().body_idle_timeout;
        let query = query_pairs(&parts);
        let multipart = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("multipart/form-data")
            });
        let scope = uploads.scope_of(&parts);
        // Every byte of the request, from its first, keeps to the pace: a multipart body
        // that stalls before its chunk is cut off like a chunk that stalls.
        let (body, cut) = paced(body.into_data_stream(), uploads.pace());
        if !multipart {
            let mut stream = Box::pin(body);
            let result = async {
                let params = parse(&uploads, &[], &query)?;
                uploads
                    .receive_paced(&scope?, &params, &mut stream, &cut)
                    .await
            }
            .await;
            if result.is_err() {
                drain(&mut stream, limit, BodyPace::refusal(idle)).await;
            }
            return result;
        }
        let (phase, watched) = watch::channel(Phase::Preamble);
        let refusal = BodyPace::refusal(idle);
        let gate = Gate {
            phase: watched,
            cut: cut.clone(),
            drain: (limit, refusal),
        };
        let body = Body::from_stream(preamble_limited(body, gate));
        let mut form = Multipart::from_request(Request::from_parts(parts, body), &())
            .await
            .map_err(|e| UploadError::BadRequest(e.body_text()))?;
        let result = match scope {
            Ok(scope) => multipart_chunk(&uploads, &scope, &query, &mut form, &phase, &cut).await,
            Err(e) => Err(e),
        };
        if result.is_err() && !matches!(cut.get(), Some(BodyError::Refused(_))) {
            // Lets the client read the refusal instead of a connection reset: the rest of
            // the body is read and dropped as it comes, past the multipart reader.
            phase.send_replace(Phase::Drain);
            while let Ok(Some(_)) = form.next_field().await {}
        }
        result
    });
    answer(
        task.await
            .unwrap_or_else(|e| Err(UploadError::Unavailable(std::io::Error::other(e)))),
    )
}

/// Where a multipart request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The form fields before the chunk.
    Preamble,
    /// The chunk's part has started.
    Chunk,
    /// The request was refused: the rest of its body is read and dropped.
    Drain,
}

/// What [`preamble_limited`] watches and does.
struct Gate {
    phase: watch::Receiver<Phase>,
    /// Where a refusal is noted.
    cut: Cut,
    /// How much of a refused body is read, and how fast it must come.
    drain: (u64, BodyPace),
}

/// How long the multipart reader may be held back before the chunk's part starts. All it
/// can do while held happens at once (it parses what it has read), so this is a margin.
const PATIENCE: Duration = Duration::from_secs(2);

/// `body`, held back once [`MAX_PREAMBLE`] bytes went by while the request is still in
/// its preamble: the multipart reader reads ahead all it can, so its buffer never holds
/// more than that and one piece before the chunk. A reader that gets no further with
/// what it has (a preamble that goes on and on) gets an error after [`PATIENCE`]. Once
/// the request is refused, the rest of the body is read and dropped here, not buffered.
fn preamble_limited(
    body: impl Stream<Item = Result<bytes::Bytes, BodyError>> + Send + 'static,
    gate: Gate,
) -> impl Stream<Item = Result<bytes::Bytes, BodyError>> + Send + 'static {
    futures_util::stream::unfold(
        (Box::pin(body), gate, 0u64, false),
        |(mut body, mut gate, seen, ended)| async move {
            if ended {
                return None;
            }
            if *gate.phase.borrow() == Phase::Drain {
                let (limit, pace) = gate.drain;
                drain(&mut body, limit.saturating_sub(seen), pace).await;
                return None;
            }
            if seen > MAX_PREAMBLE && *gate.phase.borrow() == Phase::Preamble {
                let moved = gate.phase.wait_for(|phase| *phase != Phase::Preamble);
                if !matches!(tokio::time::timeout(PATIENCE, moved).await, Ok(Ok(_))) {
                    let refused = BodyError::Refused(
                        "the form fields before the chunk are too long (at most 64 KiB)",
                    );
                    let _ = gate.cut.set(refused.clone());
                    return Some((Err(refused), (body, gate, seen, true)));
                }
                if *gate.phase.borrow() == Phase::Drain {
                    let (limit, pace) = gate.drain;
                    drain(&mut body, limit.saturating_sub(seen), pace).await;
                    return None;
                }
            }
            let item = body.next().await?;
            let seen = seen + item.as_ref().map_or(0, |piece| piece.len() as u64);
            let ended = item.is_err();
            Some((item, (body, gate, seen, ended)))
        },
    )
    .fuse()
}

/// Reads the form fields up to the chunk's part, then stores the chunk from it.
async fn multipart_chunk(
    uploads: &Uploads,
    scope: &Scope,
    query: &[(String, String)],
    form: &mut Multipart,
    phase: &watch::Sender<Phase>,
    cut: &Cut,
) -> Result<UploadStatus, UploadError> {
    let mut fields = Vec::new();
    let mut text = 0;
    let multipart_error = |e: axum::extract::multipart::MultipartError| match cut.get() {
        Some(BodyError::Refused(why)) => UploadError::BadRequest((*why).into()),
        // Too slow or stalled before the chunk: the client may send it again.
        Some(slow) => UploadError::Retry(slow.to_string()),
        None => bad_multipart(e),
    };
    while let Some(field) = form.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        let is_chunk = uploads
            .settings()
            .parameter_names
            .iter()
            .any(|names| names.key(&names.file) == name);
        if is_chunk {
            if field.file_name().is_none() {
                return Err(UploadError::UnsupportedMediaType(
                    "the chunk must be sent as a file part (base64 chunks are not supported)"
                        .into(),
                ));
            }
            phase.send_replace(Phase::Chunk);
            let params = parse(uploads, &fields, query)?;
            return uploads.receive_paced(scope, &params, field, cut).await;
        }
        if field.file_name().is_some() {
            return Err(UploadError::BadRequest(format!(
                "unexpected file part {name:?}: the chunk goes in the part named after fileParameterName"
            )));
        }
        if fields.len() == MAX_FORM_FIELDS {
            return Err(UploadError::BadRequest(format!(
                "too many form fields before the chunk (at most {MAX_FORM_FIELDS})"
            )));
        }
        let value = read_text(field, MAX_FORM_TEXT.saturating_sub(text))
            .await
            .map_err(|e| match e {
                TextError::Multipart(e) => multipart_error(e),
                TextError::Refused(why) => why,
            })?;
        text += name.len() + value.len();
        if text > MAX_FORM_TEXT {
            return Err(too_much_text());
        }
        fields.push((name, value));
    }
    Err(UploadError::BadRequest(
        "the request has no file part with the chunk".into(),
    ))
}

fn bad_multipart(e: axum::extract::multipart::MultipartError) -> UploadError {
    UploadError::BadRequest(format!("malformed multipart body: {}", e.body_text()))
}

fn too_much_text() -> UploadError {
    UploadError::BadRequest(format!(
        "the form fields before the chunk are too long (at most {MAX_FORM_TEXT} bytes in all)"
    ))
}

/// Why a form field's text was not read.
enum TextError {
    Multipart(axum::extract::multipart::MultipartError),
    Refused(UploadError),
}

/// A form field's text, refused past `room` bytes (what is left of [`MAX_FORM_TEXT`]).
async fn read_text(mut field: Field<'_>, room: usize) -> Result<String, TextError> {
    let name = field.name().unwrap_or_default().to_owned();
    let mut bytes = Vec::new();
    while let Some(frame) = field.next().await {
        let frame = frame.map_err(TextError::Multipart)?;
        if name.len() + bytes.len() + frame.len() > room {
            return Err(TextError::Refused(too_much_text()));
        }
        bytes.extend_from_slice(&frame);
    }
    String::from_utf8(bytes).map_err(|_| {
        TextError::Refused(UploadError::BadRequest(format!(
            "form field {name:?} is not UTF-8"
        )))
    })
}

impl Uploads {
    /// Answers a chunk request with `response` after reading and discarding what the
    /// client is still sending (up to the endpoint's body limit, while it keeps sending),
    /// so it reads the answer rather than a broken connection. For middleware in front of
    /// the endpoint that refuses requests (a login check): browsers report an answer sent
    /// over an unread body as a network error and retry, without the reason.
    ///
    /// ```
    /// use axum::{extract::{Request, State}, http::StatusCode, middleware::{self, Next}, response::Response, Router};
    /// use sea_orm_resumable::{Secret, Settings, Uploads, router};
    ///
    /// async fn require_login(State(uploads): State<Uploads>, request: Request, next: Next) -> Response {
    ///     let logged_in = request.headers().contains_key("authorization");
    ///     if !logged_in {
    ///         return uploads.refuse(request, (StatusCode::UNAUTHORIZED, "log in first")).await;
    ///     }
    ///     next.run(request).await
    /// }
    ///
    /// # async fn build() -> std::io::Result<()> {
    /// let uploads = Uploads::builder(Settings::new("./media"), Secret::generate()).build().await?;
    /// let guard = middleware::from_fn_with_state(uploads.clone(), require_login);
    /// let app: Router = Router::new().nest_service("/resumable_upload", router(uploads).route_layer(guard));
    /// # Ok(()) }
    /// ```
    pub async fn refuse(&self, request: Request, response: impl IntoResponse) -> Response {
        let settings = self.settings();
        let (limit, idle) = (settings.max_body_size(), settings.body_idle_timeout);
        drain(
            request.into_body().into_data_stream(),
            limit as u64,
            BodyPace::refusal(idle),
        )
        .await;
        response.into_response()
    }
}
