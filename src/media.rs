//! [`Media`]: the media root stored files live under, and the URL it is served at.
//!
//! The database holds paths *relative* to the media root (`documents/2026/11/report.pdf`),
//! as Django does, so the root can move. Every relative path read from a row or given by
//! code is checked here before it touches the filesystem.

use std::path::{Path, PathBuf};

/// A relative path that is not safe to join to the media root.
///
/// ```
/// use sea_orm_resumable::media::check_relative;
/// assert!(check_relative("docs/a.pdf").is_ok());
/// assert_eq!(check_relative("../etc/passwd").unwrap_err().to_string(),
///     "the path \"../etc/passwd\" is not a plain relative path (no \"..\", \".\", empty or absolute parts)");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Absolute, `..`, `.`, empty components, backslashes or control characters.
    #[error(
        "the path {0:?} is not a plain relative path (no \"..\", \".\", empty or absolute parts)"
    )]
    NotRelative(String),
    /// Inside a directory the app keeps private (the chunk directories).
    #[error("the path {0:?} is inside a private upload directory")]
    Private(String),
}

/// Checks that `relative` is a plain relative path: `/`-separated, non-empty components,
/// none `.` or `..`, no backslash or control character. Such a path joined to a directory
/// always stays inside it.
pub fn check_relative(relative: &str) -> Result<(), PathError> {
    let bad = relative.is_empty()
        || relative.starts_with('/')
        || relative.contains('\\')
        || relative.chars().any(char::is_control)
        || relative
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        Err(PathError::NotRelative(relative.to_owned()))
    } else {
        Ok(())
    }
}

/// Where stored files live (the media root), the URL they are served under, and which
/// directories under the root are private (chunk areas: they hold other users' unfinished
/// uploads and must never be served or named by a stored path).
///
/// ```
/// use sea_orm_resumable::Media;
///
/// let media = Media::new("/srv/media", "/media").with_private("resumable_chunks");
/// assert_eq!(media.path("docs/a.pdf").unwrap(), std::path::Path::new("/srv/media/docs/a.pdf"));
/// assert_eq!(media.url("docs/ä b.pdf").unwrap(), "/media/docs/%C3%A4%20b.pdf");
/// assert!(media.path("../secret").is_err());
/// assert!(media.path("resumable_chunks/0123.data").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Media {
    root: PathBuf,
    url: String,
    private: Vec<String>,
}

impl Media {
    /// The media root and its URL prefix (a trailing `/` is added when missing).
    pub fn new(root: impl Into<PathBuf>, url: impl Into<String>) -> Self {
        let mut url = url.into();
        if !url.ends_with('/') {
            url.push('/');
        }
        Self {
            root: root.into(),
            url,
            private: Vec::new(),
        }
    }

    /// Marks a directory under the root (relative, e.g. the chunk subdirectory) private.
    /// It is compared by path components (`./chunks/` is `chunks`); a directory outside the
    /// root (absolute, or with `..`) needs no marking: media paths cannot reach it.
    pub fn with_private(mut self, relative_dir: impl AsRef<Path>) -> Self {
        let mut parts = Vec::new();
        for component in relative_dir.as_ref().components() {
            match component {
                std::path::Component::Normal(part) => parts.push(part.to_string_lossy()),
                std::path::Component::CurDir => {}
                _ => return self,
            }
        }
        let dir = parts.join("/");
        if !dir.is_empty() && !self.private.contains(&dir) {
            self.private.push(dir);
        }
        self
    }

    /// The media root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The URL prefix, ending in `/`.
    pub fn base_url(&self) -> &str {
        &self.url
    }

    /// Whether `relative` is inside a private directory.
    pub fn is_private(&self, relative: &str) -> bool {
        self.private.iter().any(|dir| {
            relative == dir
                || relative
                    .strip_prefix(dir.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    }

    /// Checks `relative` ([`check_relative`], and not private).
    pub fn check(&self, relative: &str) -> Result<(), PathError> {
        check_relative(relative)?;
        if self.is_private(relative) {
            return Err(PathError::Private(relative.to_owned()));
        }
        Ok(())
    }

    /// The file system path of a stored file, after [`check`](Self::check).
    pub fn path(&self, relative: &str) -> Result<PathBuf, PathError> {
        self.check(relative)?;
        Ok(self.root.join(relative))
    }

    /// The URL of a stored file: the prefix, then each path segment percent-encoded.
    pub fn url(&self, relative: &str) -> Result<String, PathError> {
        self.check(relative)?;
        let mut url = self.url.clone();
        for (i, segment) in relative.split('/').enumerate() {
            if i > 0 {
                url.push('/');
            }
            for byte in segment.bytes() {
                if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                    url.push(byte as char);
                } else {
                    url.push_str(&format!("%{byte:02X}"));
                }
            }
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_that_could_leave_the_root_are_refused() {
        for bad in [
            "", "/abs", "a//b", "a/./b", "a/../b", "..", ".", "a\\b", "a\0b", "a/", "a\nb",
        ] {
            assert!(check_relative(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "a/b.txt", "ä/漢字.pdf", "a..b/c", ".hidden/x"] {
            assert!(check_relative(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn private_directories_are_matched_by_whole_components() {
        let media = Media::new("/m", "/media/").with_private("chunks");
        assert!(media.is_private("chunks"));
        assert!(media.is_private("chunks/x.data"));
        assert!(!media.is_private("chunks2/x.data"));
        assert!(!media.is_private("docs/chunks/x"));
    }

    #[test]
    fn private_directories_are_normalised() {
        let media = Media::new("/m", "/media/")
            .with_private("./chunks/")
            .with_private("a//b")
            .with_private("/elsewhere")
            .with_private("../up");
        assert!(media.is_private("chunks/k.data"));
        assert!(media.is_private("a/b/k.data"));
        assert!(!media.is_private("elsewhere/x") && !media.is_private("up/x"));
    }
}
