//! The upload service, [`Uploads`](uploads::Uploads): who may upload what and how fast
//! (scopes, signed tokens, settings, quotas, field rules, the body pace, content
//! sniffing), completion exactly once and its hooks, expiry. It keeps uploads through the
//! storage layer's upload store and knows nothing of HTTP routing, forms or models.

pub(crate) mod chunk;
pub(crate) mod expiry;
pub(crate) mod layout;
pub(crate) mod pace;
pub(crate) mod rules;
pub(crate) mod scope;
pub(crate) mod settings;
pub(crate) mod sniff;
pub(crate) mod token;
pub(crate) mod uploads;
