//! The per-scope limit on unfinished uploads ([`Settings::max_open_uploads`]): one user
//! cannot fill the disk with uploads they never finish, faster than expiry removes them.
//!
//! [`Settings::max_open_uploads`]: crate::Settings::max_open_uploads

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use crate::UploadKey;

/// One upload: its chunk directory (`None`: the default one) and key.
type Slot = (Option<&'static str>, UploadKey);

/// Unfinished uploads by scope.
#[derive(Debug)]
pub(crate) struct OpenUploads {
    limit: u64,
    by_scope: Mutex<HashMap<String, HashSet<Slot>>>,
}

impl OpenUploads {
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            by_scope: Mutex::new(HashMap::new()),
        }
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<Slot>>> {
        self.by_scope.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a new unfinished upload of `scope`; false (and nothing counted) if the scope
    /// is at its limit.
    pub fn try_open(&self, scope: &str, slot: Slot) -> bool {
        let mut by_scope = self.locked();
        let open = by_scope.entry(scope.to_owned()).or_default();
        if open.contains(&slot) {
            return true;
        }
        if open.len() as u64 >= self.limit {
            return false;
        }
        open.insert(slot);
        true
    }

    /// Counts an upload found on disk, whatever the limit.
    pub fn force_open(&self, scope: &str, slot: Slot) -> bool {
        self.locked()
            .entry(scope.to_owned())
            .or_default()
            .insert(slot)
    }

    /// The upload is finished or gone.
    pub fn close(&self, slot: Slot) {
        let mut by_scope = self.locked();
        by_scope.retain(|_, open| {
            open.remove(&slot);
            !open.is_empty()
        });
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scope;

    fn slot(identifier: &str) -> Slot {
        (None, UploadKey::derive(&Scope::anonymous(), identifier))
    }

    #[test]
    fn a_scope_at_its_limit_opens_nothing_new_until_one_closes() {
        let open = OpenUploads::new(2);
        assert!(open.try_open("a", slot("1")));
        assert!(open.try_open("a", slot("2")));
        assert!(
            open.try_open("a", slot("2")),
            "the same upload again is fine"
        );
        assert!(!open.try_open("a", slot("3")));
        assert!(
            open.try_open("b", slot("3")),
            "other scopes are not affected"
        );
        open.close(slot("1"));
        assert!(open.try_open("a", slot("3")));
    }
}
