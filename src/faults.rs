//! Crash points for the crate's own kill -9 tests, compiled only with the `failpoints`
//! feature (the tests and examples turn it on; an app never should).
//!
//! `RESUMABLE_FAILPOINTS="save-stored=pause"` (`;` between several, actions as in the
//! `fail` crate) makes a process stop at that point, so a test can SIGKILL it exactly
//! there. The points, in the order an upload meets them:
//!
//! | point | the process has … | … and not yet |
//! |---|---|---|
//! | `chunk-written` | written a chunk's bytes | marked the chunk as stored |
//! | `chunk-marked` | marked it | answered the request |
//! | `upload-finishing` | every chunk marked | made the upload complete |
//! | `save-reserved` | reserved the final path (before_save) | written the row |
//! | `save-stored` | stored the row | linked the file into place (after_save) |
//! | `save-linked` | linked the file | removed the upload's chunk files |
//! | `save-released` | removed them | removed the path's reservation |

/// Stops at the crash point `$name` if `RESUMABLE_FAILPOINTS` names it; nothing without
/// the `failpoints` feature.
macro_rules! fault_point {
    ($name:literal) => {{
        #[cfg(feature = "failpoints")]
        {
            $crate::faults::configure();
            fail::fail_point!($name);
        }
    }};
}
pub(crate) use fault_point;

/// Reads `RESUMABLE_FAILPOINTS` once per process.
#[cfg(feature = "failpoints")]
pub(crate) fn configure() {
    static CONFIGURED: std::sync::Once = std::sync::Once::new();
    CONFIGURED.call_once(|| {
        let Ok(points) = std::env::var("RESUMABLE_FAILPOINTS") else {
            return;
        };
        for point in points.split(';').filter(|p| !p.trim().is_empty()) {
            let Some((name, actions)) = point.split_once('=') else {
                tracing::error!(point, "RESUMABLE_FAILPOINTS: expected name=actions");
                continue;
            };
            if let Err(e) = fail::cfg(name.trim(), actions.trim()) {
                tracing::error!(point, error = %e, "RESUMABLE_FAILPOINTS");
            } else {
                tracing::warn!(point, "crash point armed (testing only)");
            }
        }
    });
}
