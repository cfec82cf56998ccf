//! What the endpoint checks of an upload for a registered model field before the upload
//! is done: its chunk directory, its size limit and the content types its first bytes
//! may show. The form checks them again on the whole file at the end.

use crate::UploadError;

/// What the endpoint knows of a registered model field: where its chunks go, and the
/// limits it can check before the upload is done (the form checks them again at the end).
#[derive(Clone, Copy, Debug)]
pub(crate) struct FieldRules {
    pub chunks_upload_to: Option<&'static str>,
    pub max_size: Option<u64>,
    pub content_types: &'static [&'static str],
}

impl FieldRules {
    /// The rules of requests that name no field: the default chunk directory, no limits
    /// beyond the settings'.
    pub const NONE: Self = Self {
        chunks_upload_to: None,
        max_size: None,
        content_types: &[],
    };

    /// Refuses a file over the field's size limit, before anything is stored.
    pub fn check_size(&self, total_size: u64) -> Result<(), UploadError> {
        match self.max_size {
            Some(max) if total_size > max => Err(UploadError::BadRequest(format!(
                "the file is larger than this field allows ({max} bytes)"
            ))),
            _ => Ok(()),
        }
    }

    /// Refuses a file whose first chunk shows a content type the field does not allow.
    pub(crate) fn check_head(&self, head: &[u8]) -> Result<(), UploadError> {
        if self.content_types.is_empty() {
            return Ok(());
        }
        let found = crate::service::sniff::sniff(head);
        if self
            .content_types
            .iter()
            .any(|allowed| crate::service::sniff::type_matches(allowed, &found))
        {
            return Ok(());
        }
        Err(UploadError::UnsupportedMediaType(format!(
            "this field does not take {found} files (allowed: {})",
            self.content_types.join(", ")
        )))
    }
}
