//! Protocol adapters: what clients send and what they are answered. Today resumable.js /
//! flow.js ([`resumable_js`]) served by an axum [`router`](router::router), with the
//! middleware that tells browsers apart ([`browser`]); tus and the IETF draft come next.
//! Routing is the app's: mount the router and guard it with `route_layer`.

pub(crate) mod browser;
pub(crate) mod resumable_js;
pub(crate) mod router;
