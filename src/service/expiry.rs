//! Expiry in the upload stores: unfinished uploads idle longer than
//! [`Settings::incomplete_expiry`](crate::Settings::incomplete_expiry), complete ones no
//! model saved within [`Settings::complete_expiry`](crate::Settings::complete_expiry).
//! What a save holds is the field's to say ([`Uploads::expire`] asks it).

use std::{io, time::SystemTime};

use crate::{
    UploadKey, Uploads,
    storage::upload_store::{Expired, ExpiryRule, StoreError},
};

/// Whether a save under way holds an upload (its chunk directory and key).
pub(crate) type Saving<'a> = dyn Fn(Option<&str>, &UploadKey) -> bool + Send + Sync + 'a;

impl Uploads {
    /// Removes from every store the uploads expired at `now`, but those `saving` holds.
    pub(crate) async fn expire_uploads(
        &self,
        now: SystemTime,
        saving: &Saving<'_>,
    ) -> io::Result<Expired> {
        let settings = self.settings();
        let mut all = Expired::default();
        for (chunks_upload_to, store) in self.stores() {
            let saving = |key: &UploadKey| saving(chunks_upload_to, key);
            let expired = store
                .expire(ExpiryRule {
                    now,
                    incomplete: settings.incomplete_expiry,
                    complete: settings.complete_expiry,
                    saving: &saving,
                })
                .await
                .map_err(|e| match e {
                    StoreError::Io(e) => e,
                    other => io::Error::other(other.to_string()),
                })?;
            all.incomplete += expired.incomplete;
            all.complete += expired.complete;
        }
        Ok(all)
    }
}
