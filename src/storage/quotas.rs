//! What uploads may hold on the server before a model saves them: per scope (user or
//! browser), per client address, and in all, counted in uploads and in bytes (their
//! announced sizes). An upload counts from its first chunk until it is saved or expires,
//! whether or not it is complete, so neither endless unfinished uploads nor a flood of
//! tiny complete ones fill the disk faster than expiry empties it; the address bound
//! holds a client that drops its cookies (a new browser scope each time) to the same
//! limit. On local files the counts are kept here (counted again from disk at start); on
//! object storage the chunk ledger holds them for every server
//! ([`ChunkLedger::held`](crate::storage::ledger::ChunkLedger::held)), and [`Quotas::check`]
//! judges them.

use std::{collections::HashMap, sync::Mutex};

use crate::UploadKey;

/// One upload: its chunk directory (`None`: the default one) and key.
pub(crate) type Slot = (Option<&'static str>, UploadKey);

/// Who holds an upload, and how large it is.
#[derive(Clone, Debug)]
pub(crate) struct Held {
    pub scope: String,
    pub client: Option<String>,
    pub bytes: u64,
}

impl From<&crate::UploadMeta> for Held {
    fn from(meta: &crate::UploadMeta) -> Self {
        Self {
            scope: meta.scope.clone(),
            client: meta.client.clone(),
            bytes: meta.total_size,
        }
    }
}

/// Uploads and bytes held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    uploads: u64,
    bytes: u64,
}

impl From<crate::storage::ledger::Held> for Usage {
    fn from(held: crate::storage::ledger::Held) -> Self {
        Self {
            uploads: held.uploads,
            bytes: held.bytes,
        }
    }
}

impl Usage {
    fn add(&mut self, bytes: u64) {
        self.uploads += 1;
        self.bytes = self.bytes.saturating_add(bytes);
    }

    fn remove(&mut self, bytes: u64) {
        self.uploads = self.uploads.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(bytes);
    }

    /// Why one more upload of `bytes` would break `limit`, if it would.
    fn exceeds(&self, limit: &Usage, bytes: u64) -> Option<Limit> {
        if self.uploads >= limit.uploads {
            Some(Limit::Uploads(limit.uploads))
        } else if self.bytes.saturating_add(bytes) > limit.bytes {
            Some(Limit::Bytes(limit.bytes))
        } else {
            None
        }
    }
}

enum Limit {
    Uploads(u64),
    Bytes(u64),
}

#[derive(Debug, Default)]
struct State {
    held: HashMap<Slot, Held>,
    scopes: HashMap<String, Usage>,
    clients: HashMap<String, Usage>,
    total: Usage,
}

/// The uploads held, by scope, client address and in all, against the settings' limits.
#[derive(Debug)]
pub(crate) struct Quotas {
    scope: Usage,
    client: Usage,
    total: Usage,
    state: Mutex<State>,
}

impl Quotas {
    /// Quotas of (uploads, bytes) per scope, per client address and in all.
    pub fn new(scope: (u64, u64), client: (u64, u64), total: (u64, u64)) -> Self {
        let usage = |(uploads, bytes)| Usage { uploads, bytes };
        Self {
            scope: usage(scope),
            client: usage(client),
            total: usage(total),
            state: Mutex::new(State::default()),
        }
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a new upload; refused (with a sentence saying which limit) when it would
    /// break one. An upload already counted is fine: false then (true: counted by this
    /// call, for the caller to release should it give the upload up).
    pub fn try_hold(&self, slot: Slot, held: Held) -> Result<bool, String> {
        let mut state = self.locked();
        if state.held.contains_key(&slot) {
            return Ok(false);
        }
        let scope = state.scopes.get(&held.scope).copied().unwrap_or_default();
        let client = held
            .client
            .as_ref()
            .map(|client| state.clients.get(client).copied().unwrap_or_default());
        self.check(
            [scope, client.unwrap_or_default(), state.total],
            held.client.is_some(),
            held.bytes,
        )?;
        state.add(slot, held);
        Ok(true)
    }

    /// Whether one more upload of `bytes` fits beside what its scope, its client (when
    /// `by_client`) and everybody hold; if not, a sentence saying which limit it breaks.
    pub fn check(
        &self,
        [scope, client, total]: [Usage; 3],
        by_client: bool,
        bytes: u64,
    ) -> Result<(), String> {
        if let Some(limit) = scope.exceeds(&self.scope, bytes) {
            return Err(match limit {
                Limit::Uploads(n) => format!(
                    "too many uploads not yet saved (at most {n} per user, unfinished or \
                     complete): finish and save some first, or wait until they expire"
                ),
                Limit::Bytes(n) => format!(
                    "your uploads not yet saved would exceed {n} bytes: save some first, or \
                     wait until they expire"
                ),
            });
        }
        if by_client && let Some(limit) = client.exceeds(&self.client, bytes) {
            return Err(match limit {
                Limit::Uploads(n) => format!(
                    "too many uploads not yet saved from your network address (at most \
                     {n}): save some first, or wait until they expire"
                ),
                Limit::Bytes(n) => format!(
                    "uploads not yet saved from your network address would exceed {n} \
                     bytes: save some first, or wait until they expire"
                ),
            });
        }
        if let Some(limit) = total.exceeds(&self.total, bytes) {
            return Err(match limit {
                Limit::Uploads(n) => format!(
                    "the server holds too many uploads not yet saved (at most {n}): try \
                     again later"
                ),
                Limit::Bytes(n) => format!(
                    "the server's uploads not yet saved would exceed {n} bytes: try again later"
                ),
            });
        }
        Ok(())
    }

    /// Counts an upload found on disk, whatever the limits (it exists; new ones wait).
    pub fn force_hold(&self, slot: Slot, held: Held) {
        let mut state = self.locked();
        if !state.held.contains_key(&slot) {
            state.add(slot, held);
        }
    }

    /// The upload was saved or removed.
    pub fn release(&self, slot: Slot) {
        let mut state = self.locked();
        let Some(held) = state.held.remove(&slot) else {
            return;
        };
        state.total.remove(held.bytes);
        if let Some(usage) = state.scopes.get_mut(&held.scope) {
            usage.remove(held.bytes);
            if usage.uploads == 0 {
                state.scopes.remove(&held.scope);
            }
        }
        if let Some(client) = &held.client
            && let Some(usage) = state.clients.get_mut(client)
        {
            usage.remove(held.bytes);
            if usage.uploads == 0 {
                state.clients.remove(client);
            }
        }
    }
}

impl State {
    fn add(&mut self, slot: Slot, held: Held) {
        self.total.add(held.bytes);
        self.scopes
            .entry(held.scope.clone())
            .or_default()
            .add(held.bytes);
        if let Some(client) = &held.client {
            self.clients
                .entry(client.clone())
                .or_default()
                .add(held.bytes);
        }
        self.held.insert(slot, held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scope;

    fn slot(identifier: &str) -> Slot {
        (None, UploadKey::derive(&Scope::anonymous(), identifier))
    }

    fn held(scope: &str, client: Option<&str>, bytes: u64) -> Held {
        Held {
            scope: scope.into(),
            client: client.map(Into::into),
            bytes,
        }
    }

    fn quotas(scope: (u64, u64), client: (u64, u64), total: (u64, u64)) -> Quotas {
        Quotas::new(scope, client, total)
    }

    #[test]
    fn a_scope_at_its_limit_holds_nothing_new_until_one_is_released() {
        let quotas = quotas((2, 100), (10, 1000), (10, 1000));
        quotas.try_hold(slot("1"), held("a", None, 1)).unwrap();
        assert!(quotas.try_hold(slot("2"), held("a", None, 1)).unwrap());
        assert!(
            !quotas.try_hold(slot("2"), held("a", None, 1)).unwrap(),
            "held already: not this call's to release"
        );
        let refused = quotas.try_hold(slot("3"), held("a", None, 1)).unwrap_err();
        assert!(refused.contains("at most 2 per user"), "{refused}");
        quotas.try_hold(slot("3"), held("b", None, 1)).unwrap();
        quotas.release(slot("1"));
        quotas.try_hold(slot("4"), held("a", None, 1)).unwrap();
    }

    #[test]
    fn bytes_count_per_scope_per_client_and_in_all() {
        let quotas = quotas((10, 100), (10, 150), (10, 180));
        let refused = quotas
            .try_hold(slot("1"), held("a", None, 101))
            .unwrap_err();
        assert!(refused.contains("exceed 100 bytes"), "{refused}");
        quotas
            .try_hold(slot("1"), held("a", Some("ip"), 100))
            .unwrap();
        let refused = quotas
            .try_hold(slot("2"), held("b", Some("ip"), 51))
            .unwrap_err();
        assert!(
            refused.contains("network address would exceed 150"),
            "{refused}"
        );
        quotas
            .try_hold(slot("2"), held("b", Some("ip"), 50))
            .unwrap();
        let refused = quotas.try_hold(slot("3"), held("c", None, 31)).unwrap_err();
        assert!(refused.contains("server's uploads"), "{refused}");
        quotas.release(slot("1"));
        quotas
            .try_hold(slot("3"), held("c", Some("ip"), 100))
            .unwrap();
    }

    #[test]
    fn a_client_dropping_its_scope_keeps_its_address_limit() {
        let quotas = quotas((100, u64::MAX), (3, u64::MAX), (100, u64::MAX));
        for n in 0..3 {
            let scope = format!("browser-{n}");
            quotas
                .try_hold(slot(&scope), held(&scope, Some("ip"), 0))
                .unwrap();
        }
        let refused = quotas
            .try_hold(slot("x"), held("fresh", Some("ip"), 0))
            .unwrap_err();
        assert!(refused.contains("network address (at most 3)"), "{refused}");
        quotas
            .try_hold(slot("y"), held("other", Some("ip2"), 0))
            .unwrap();
    }
}
