//! Optional login (`--require-login`, `--user NAME:PASSWORD`): users checked by an
//! axum-login backend, sessions from tower-sessions, and a CSRF token per session that
//! every state-changing request must carry.
//!
//! Each user is an upload scope: the endpoint, the forms and `/media/` only show a user
//! their own uploads and documents.

use axum::{
    Form,
    extract::{Query, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use axum_login::{AuthSession, AuthUser, AuthnBackend, UserId};
use hmac::{Hmac, Mac};
use sea_orm_resumable::{BrowserScope, Scope, ScopeResolver, Uploads, widget::Escaped};
use serde::Deserialize;
use sha2::Sha256;
use std::{collections::HashMap, convert::Infallible, sync::Arc};
use subtle::ConstantTimeEq;
use tower_sessions::Session;

use crate::web::page;

/// A `--user NAME:PASSWORD` flag.
#[derive(Clone, Debug)]
pub struct UserFlag {
    name: String,
    password: String,
}

/// Longest user name: it is the owner column of documents (`varchar(64)`).
const MAX_NAME_BYTES: usize = 64;

/// Parses `NAME:PASSWORD` (the password may contain `:`; neither part may be empty; the
/// name at most 64 bytes).
pub fn parse_user_flag(text: &str) -> Result<UserFlag, String> {
    match text.split_once(':') {
        Some((name, password))
            if !name.is_empty() && !password.is_empty() && name.len() <= MAX_NAME_BYTES =>
        {
            Ok(UserFlag {
                name: name.to_owned(),
                password: password.to_owned(),
            })
        }
        _ => Err("expected NAME:PASSWORD, both non-empty, the name at most 64 bytes".into()),
    }
}

/// A logged-in user: their name is their upload scope and their documents' owner.
#[derive(Clone)]
pub struct User {
    /// The user name given with `--user`.
    pub name: String,
    /// HMAC of the password under the process's key: what logins are checked against,
    /// and (axum-login's session hash) what ends sessions when the password changes.
    password_mac: Vec<u8>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User").field("name", &self.name).finish()
    }
}

impl AuthUser for User {
    type Id = String;

    fn id(&self) -> String {
        self.name.clone()
    }

    fn session_auth_hash(&self) -> &[u8] {
        &self.password_mac
    }
}

/// The users given on the command line.
#[derive(Clone)]
pub struct Users {
    key: Arc<[u8; 32]>,
    by_name: Arc<HashMap<String, User>>,
}

impl Users {
    /// The users of these flags (a later flag for the same name wins).
    pub fn new(flags: &[UserFlag]) -> Self {
        let key = Arc::new(rand::random::<[u8; 32]>());
        let by_name = flags
            .iter()
            .map(|flag| {
                let user = User {
                    name: flag.name.clone(),
                    password_mac: password_mac(&key, &flag.password)
                        .finalize()
                        .into_bytes()
                        .to_vec(),
                };
                (flag.name.clone(), user)
            })
            .collect();
        Self {
            key,
            by_name: Arc::new(by_name),
        }
    }
}

fn password_mac(key: &[u8; 32], password: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(password.as_bytes());
    mac
}

/// What the login form posts.
#[derive(Clone, Deserialize)]
pub struct Credentials {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    next: String,
}

impl AuthnBackend for Users {
    type User = User;
    type Credentials = Credentials;
    type Error = Infallible;

    async fn authenticate(&self, credentials: Credentials) -> Result<Option<User>, Infallible> {
        let user = self.by_name.get(&credentials.username);
        // The MAC is computed and compared (in constant time) for unknown names too.
        let given = password_mac(&self.key, &credentials.password);
        let expected = user.map_or(&[0u8; 32][..], |u| &u.password_mac);
        let matches = given.verify_slice(expected).is_ok();
        Ok(user.filter(|_| matches).cloned())
    }

    async fn get_user(&self, name: &UserId<Self>) -> Result<Option<User>, Infallible> {
        Ok(self.by_name.get(name).cloned())
    }
}

/// The auth session axum-login puts in every request's extensions.
pub type Auth = AuthSession<Users>;

/// The upload scope of a request: the logged-in user; without `--require-login`, the
/// visitor's browser (the library's default, from a signed cookie).
pub fn scope_of(parts: &Parts, require_login: bool) -> Option<Scope> {
    let user = parts.extensions.get::<Auth>().and_then(|a| a.user.as_ref());
    match user {
        Some(user) => Some(Scope::new(user.name.clone())),
        None if require_login => None,
        None => BrowserScope.resolve(parts),
    }
}

/// The name every form's CSRF input has, and the session key of its token.
pub const CSRF_FIELD: &str = "csrf_token";

/// The session's CSRF token, made on first use.
pub async fn csrf_token(session: &Session) -> String {
    if let Ok(Some(token)) = session.get::<String>(CSRF_FIELD).await {
        return token;
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    if let Err(e) = session.insert(CSRF_FIELD, &token).await {
        tracing::error!(error = %e, "storing the CSRF token");
    }
    token
}

/// Whether `given` is the session's CSRF token.
pub async fn csrf_matches(session: &Session, given: &str) -> bool {
    match session.get::<String>(CSRF_FIELD).await {
        Ok(Some(token)) => same_token(&token, given),
        _ => false,
    }
}

/// Whether a CSRF token sent back is `expected` (compared in constant time).
pub fn same_token(expected: &str, given: &str) -> bool {
    !given.is_empty() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// The answer to a state-changing request without the session's CSRF token.
pub fn csrf_refusal() -> Response {
    (
        StatusCode::FORBIDDEN,
        "the form has expired or did not come from this site: reload the page and try again\n",
    )
        .into_response()
}

/// Middleware for the upload endpoint and `/media/`: 401 with a sentence unless logged
/// in; a POST must also carry the session's CSRF token as `X-CSRF-Token` (the widget
/// sends it from the page's `<meta name="csrf-token">`). A refused chunk's body is read
/// first, so the client gets the answer rather than a broken connection.
pub async fn require_user(
    State(uploads): State<Uploads>,
    auth: Auth,
    request: Request,
    next: Next,
) -> Response {
    if auth.user.is_none() {
        let refusal = (StatusCode::UNAUTHORIZED, "log in first\n");
        return uploads.refuse(request, refusal).await;
    }
    if request.method() == axum::http::Method::POST {
        let given = request
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !csrf_matches(&auth.session, given).await {
            return uploads.refuse(request, csrf_refusal()).await;
        }
    }
    next.run(request).await
}

/// Middleware for pages: to the login form (and back afterwards) unless logged in.
pub async fn require_user_page(auth: Auth, request: Request, next: Next) -> Response {
    if auth.user.is_some() {
        return next.run(request).await;
    }
    let back = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("next", back)
        .finish();
    Redirect::to(&format!("/login?{query}")).into_response()
}

/// `?next=` of the login page.
#[derive(Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    next: String,
}

/// The cookie holding the login form's CSRF token: the form sends it back beside the
/// cookie (a double-submit token), so showing the form keeps nothing on the server.
const LOGIN_CSRF_COOKIE: &str = "login_csrf";

/// The login form's CSRF token the browser holds, if it looks like one of ours.
fn login_csrf(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            pair.trim()
                .strip_prefix(LOGIN_CSRF_COOKIE)?
                .strip_prefix('=')
        })
        .filter(|token| token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `GET /login`: the login form. No session is made for it (a visitor who never logs in
/// costs the server nothing): its CSRF token lives in a cookie.
pub async fn login_form(headers: HeaderMap, Query(query): Query<LoginQuery>) -> Response {
    let token =
        login_csrf(&headers).map_or_else(|| hex::encode(rand::random::<[u8; 32]>()), str::to_owned);
    let mut page = login_page(StatusCode::OK, &token, &query.next, None);
    let cookie = format!("{LOGIN_CSRF_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Strict");
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        page.headers_mut().append(header::SET_COOKIE, cookie);
    }
    page
}

/// `POST /login` (`username`, `password`, `csrf_token`, `next`): starts the session and
/// goes to `next` (a path on this site) or `/`; a wrong name or password is a 401 with
/// the form again.
pub async fn login(
    mut auth: Auth,
    headers: HeaderMap,
    Form(credentials): Form<Credentials>,
) -> Response {
    let Some(token) = login_csrf(&headers).map(str::to_owned) else {
        return csrf_refusal();
    };
    if !same_token(&token, &credentials.csrf_token) {
        return csrf_refusal();
    }
    let next = local_path(&credentials.next).to_owned();
    let user = match auth.authenticate(credentials).await {
        Ok(Some(user)) => user,
        _ => {
            let error = "Wrong user name or password.";
            return login_page(StatusCode::UNAUTHORIZED, &token, &next, Some(error));
        }
    };
    // A new session id whatever the session held before (axum-login renews it only for a
    // session that was not logged in), so a planted cookie never becomes a login.
    if let Err(e) = auth.session.cycle_id().await {
        tracing::error!(error = %e, "renewing the session id");
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not start a session\n",
        )
            .into_response();
    }
    if let Err(e) = auth.login(&user).await {
        tracing::error!(error = %e, "starting a session");
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not start a session\n",
        )
            .into_response();
    }
    // A new token for the new session: one seen before login is worth nothing after.
    let _ = auth.session.remove::<String>(CSRF_FIELD).await;
    csrf_token(&auth.session).await;
    Redirect::to(&next).into_response()
}

/// What `POST /logout` carries.
#[derive(Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf_token: String,
}

/// `POST /logout`: ends the session.
pub async fn logout(mut auth: Auth, Form(form): Form<LogoutForm>) -> Response {
    if !csrf_matches(&auth.session, &form.csrf_token).await {
        return csrf_refusal();
    }
    if let Err(e) = auth.logout().await {
        tracing::error!(error = %e, "ending a session");
    }
    Redirect::to("/login").into_response()
}

/// `next` if it is a path on this site, else `/`. No open redirects: `//host`, `/\host`,
/// absolute URLs and anything with whitespace or control characters (browsers drop tabs
/// and newlines from URLs, so `/<tab>/host` would be `//host`) go home.
fn local_path(next: &str) -> &str {
    let mut chars = next.chars();
    let local = chars.next() == Some('/')
        && !matches!(chars.next(), Some('/' | '\\'))
        && !next.chars().any(|c| c.is_control() || c.is_whitespace());
    if local { next } else { "/" }
}

fn login_page(status: StatusCode, token: &str, next: &str, error: Option<&str>) -> Response {
    let error = error.map_or(String::new(), |e| {
        format!(
            "<p class=\"error\" id=\"login-error\" role=\"alert\">{}</p>",
            Escaped(e)
        )
    });
    let body = format!(
        "{error}<form method=\"post\" action=\"/login\" id=\"login-form\">\
         <input type=\"hidden\" name=\"{CSRF_FIELD}\" value=\"{}\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <p><label>User name <input name=\"username\" id=\"username\" required autocomplete=\"username\"></label></p>\
         <p><label>Password <input name=\"password\" id=\"password\" type=\"password\" required autocomplete=\"current-password\"></label></p>\
         <p><button id=\"log-in\">Log in</button></p></form>",
        Escaped(token),
        Escaped(next),
    );
    (status, page("Log in", &body, Some(token))).into_response()
}
