//! Who an upload belongs to: the scope, taken from each request by a hook the app gives.
//!
//! Uploads are keyed by (scope, identifier): two users sending the same identifier get two
//! uploads, and a scope can neither see nor write nor claim another scope's upload.

use axum::http::request::Parts;
use std::fmt;

/// The owner of an upload: a user id, a session id, or the one anonymous scope.
///
/// ```
/// use sea_orm_resumable::Scope;
/// assert_eq!(Scope::new("user-42").as_str(), "user-42");
/// assert_eq!(Scope::anonymous().as_str(), "");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Scope(String);

impl Scope {
    /// The scope named `id` (e.g. a user's primary key).
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The single scope shared by everybody, used when the app gives no scope hook.
    pub fn anonymous() -> Self {
        Self(String::new())
    }

    /// The scope's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("(anonymous)")
        } else {
            f.write_str(&self.0)
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

/// The default resolver: every request is in [`Scope::anonymous`].
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
