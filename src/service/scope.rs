//! Who an upload belongs to: the scope, taken from each request by a hook the app gives.
//!
//! Uploads are keyed by (scope, identifier): two users sending the same identifier get two
//! uploads, and a scope can neither see nor write nor claim another scope's upload.
//!
//! Without a login, the default resolver, [`BrowserScope`], gives each browser a scope
//! of its own from a signed random cookie (see [`scope_cookie`](crate::scope_cookie)).

use axum::http::request::Parts;
use std::{
    fmt,
    hash::{Hash, Hasher},
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

/// The browser a request came from, as [`scope_cookie`](crate::scope_cookie) puts it in the extensions.
#[derive(Clone, Debug)]
pub(crate) struct BrowserId {
    /// Random, 128 bits, hex.
    pub id: String,
    /// The request has no valid cookie and none is handed out with its answer: its
    /// scope must come from elsewhere (the client's address).
    pub fresh: bool,
    /// It sent a scope cookie that is not valid, or two of them (one planted by a
    /// sibling subdomain): refused rather than moved to another scope.
    pub rejected: bool,
    /// Set when [`BrowserScope`](crate::BrowserScope) found no cookie to go by.
    pub wanted: Arc<AtomicBool>,
}

/// The owner of an upload: a user id, a browser, or the one anonymous scope. It may carry
/// the client's network address, which the per-address limits count; the address is not
/// part of the scope's identity.
///
/// ```
/// use sea_orm_resumable::Scope;
/// assert_eq!(Scope::new("user-42").as_str(), "user-42");
/// assert_eq!(Scope::anonymous().as_str(), "");
/// let from = Scope::new("user-42").with_client("2001:db8:1:2:3:4:5:6".parse().unwrap());
/// assert_eq!(from, Scope::new("user-42"));
/// assert_eq!(from.client(), Some("2001:db8:1:2::/64"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Scope {
    id: String,
    client: Option<String>,
}

impl PartialEq for Scope {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Scope {}

impl Hash for Scope {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl Scope {
    /// The scope named `id` (e.g. a user's primary key).
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            client: None,
        }
    }

    /// The single scope shared by everybody: only for an app with one user, or tests.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// The scope's name.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// This scope, for a request from `address` (an IPv6 address counts by its /64, the
    /// block one client is usually given).
    pub fn with_client(mut self, address: IpAddr) -> Self {
        self.client = Some(match address {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let s = v6.segments();
                    let block = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                    format!("{block}/64")
                }
            },
        });
        self
    }

    /// The client address the per-address limits count, if known.
    pub fn client(&self) -> Option<&str> {
        self.client.as_deref()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.id.is_empty() {
            f.write_str("(anonymous)")
        } else {
            f.write_str(&self.id)
        }
    }
}

/// Maps a request to its scope; `None` refuses the request (answered 400).
///
/// Any `Fn(&Parts) -> Option<Scope>` is a resolver. Auth layers usually put the user in the
/// request extensions, so a resolver reads it from there:
///
/// ```
/// use axum::http::request::Parts;
/// use sea_orm_resumable::{Scope, ScopeResolver};
///
/// #[derive(Clone)]
/// struct CurrentUser { id: i64 }
///
/// let resolver = |parts: &Parts| parts.extensions.get::<CurrentUser>().map(|u| Scope::new(u.id.to_string()));
/// let (mut parts, _) = axum::http::Request::new(()).into_parts();
/// assert_eq!(resolver.resolve(&parts), None);
/// parts.extensions.insert(CurrentUser { id: 7 });
/// assert_eq!(resolver.resolve(&parts), Some(Scope::new("7")));
/// ```
pub trait ScopeResolver: Send + Sync + 'static {
    /// The scope of the request with these parts, or `None` to refuse it.
    fn resolve(&self, parts: &Parts) -> Option<Scope>;
}

impl<F> ScopeResolver for F
where
    F: Fn(&Parts) -> Option<Scope> + Send + Sync + 'static,
{
    fn resolve(&self, parts: &Parts) -> Option<Scope> {
        self(parts)
    }
}

/// The default resolver: a scope per browser, from the signed random cookie that the
/// [`scope_cookie`](crate::scope_cookie) middleware on the app's pages hands out.
/// Visitors without a login are kept apart: nobody can test, write or claim another
/// browser's upload, and a browser's quota is its own. A request without the cookie (a
/// script, a page without the middleware) is scoped by its client's network address
/// (IPv6: its /64), from [`UploadsBuilder::client_address`](crate::UploadsBuilder::client_address):
/// clients without cookies behind one address share that scope. Without either, the
/// request is refused (400), and so is one whose cookie is not valid or comes twice.
/// The address scope is only as good as the address: behind a reverse proxy, set
/// `client_address` to the proxy's header (never a header clients can set themselves),
/// or every cookie-less client shares the proxy's scope. What it does not do is prove
/// who somebody is: whoever holds the cookie (the browser, or anyone who stole it) is
/// that scope. The cookie is `SameSite=Lax`: a page on another site (see
/// [`Settings::trusted_origins`](crate::Settings::trusted_origins)) never sends it, so
/// an endpoint serving other sites needs a scope of its own (a login, a token).
///
/// ```
/// use axum::http::Request;
/// use sea_orm_resumable::{BrowserScope, ScopeResolver};
/// let (parts, _) = Request::new(()).into_parts();
/// assert_eq!(BrowserScope.resolve(&parts), None, "no cookie middleware ran");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct BrowserScope;

impl ScopeResolver for BrowserScope {
    fn resolve(&self, parts: &Parts) -> Option<Scope> {
        let browser = parts.extensions.get::<BrowserId>()?;
        if browser.rejected {
            return None;
        }
        if browser.fresh {
            // No cookie: the service scopes the request by its client's address.
            browser.wanted.store(true, Ordering::Relaxed);
            return None;
        }
        Some(Scope::new(format!("browser:{}", browser.id)))
    }
}

/// The resolver that puts every request in [`Scope::anonymous`]: one scope shared by
/// everybody, so anyone may test, write or claim anyone's upload. Only for an app with a
/// single user, behind its own login, or for tests.
///
/// ```
/// use sea_orm_resumable::{AnonymousScope, Scope, ScopeResolver};
/// let (parts, _) = axum::http::Request::new(()).into_parts();
/// assert_eq!(AnonymousScope.resolve(&parts), Some(Scope::anonymous()));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct AnonymousScope;

impl ScopeResolver for AnonymousScope {
    fn resolve(&self, _: &Parts) -> Option<Scope> {
        Some(Scope::anonymous())
    }
}
