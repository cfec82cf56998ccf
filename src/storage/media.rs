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

    /// Marks a directory private. It may be given relative to the root (`chunks`,
    /// `./chunks/`), absolute, or with `..`: it is resolved against the root, both as
    /// written and (where they exist) with links followed, and whatever lies inside the
    /// root is private. A directory outside the root needs no marking: media paths cannot
    /// reach it. The root itself (or a directory holding it) makes everything private.
    ///
    /// ```
    /// use sea_orm_resumable::Media;
    /// let media = Media::new("/srv/media", "/media/").with_private("/srv/media/tmp/../chunks");
    /// assert!(media.is_private("chunks/k.part"));
    /// assert!(Media::new("/srv/media", "/media/").with_private("..").is_private("docs/a.pdf"));
    /// ```
    pub fn with_private(mut self, dir: impl AsRef<Path>) -> Self {
        for dir in self.inside(&self.root.join(dir)) {
            if !self.private.contains(&dir) {
                self.private.push(dir);
            }
        }
        self
    }

    /// Whether `path` (a file system path in any form: relative to the working
    /// directory, absolute, with `..`, through links) is the root or lies inside it, so
    /// that a media URL could reach it. What an app checks its own files against (its
    /// database, its secret) before it serves the root.
    ///
    /// ```
    /// use sea_orm_resumable::Media;
    /// let media = Media::new("/srv/app/media", "/media/");
    /// assert!(media.holds("/srv/app/media/../media/db.sqlite".as_ref()));
    /// assert!(!media.holds("/srv/app/data/secret".as_ref()));
    /// assert!(Media::new("/srv", "/media/").holds("/srv/app/data/secret".as_ref()));
    /// ```
    pub fn holds(&self, path: &Path) -> bool {
        !self.inside(path).is_empty()
    }

    /// Where `path` lies inside the root, relative to it with `/` (`""`: the root, or a
    /// directory holding it), by name and with links followed; empty if it is outside.
    fn inside(&self, path: &Path) -> Vec<String> {
        let mut inside = Vec::new();
        let forms = [
            (absolute(&self.root), absolute(path)),
            (resolved(&self.root), resolved(path)),
        ];
        for (root, path) in forms {
            let (Ok(root), Ok(path)) = (root, path) else {
                continue;
            };
            if root.starts_with(&path) {
                inside.push(String::new());
            } else if let Ok(rest) = path.strip_prefix(&root) {
                let parts: Vec<_> = rest
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect();
                inside.push(parts.join("/"));
            }
        }
        inside
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
            dir.is_empty()
                || relative == dir
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

/// `path` made absolute (against the working directory) with `.` and `..` resolved by
/// name, without touching the file system.
fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    let mut resolved = PathBuf::new();
    for component in std::path::absolute(path)?.components() {
        match component {
            std::path::Component::ParentDir => {
                resolved.pop();
            }
            std::path::Component::CurDir => {}
            other => resolved.push(other),
        }
    }
    Ok(resolved)
}

/// [`absolute`], with links followed as far as the path exists (the rest appended).
fn resolved(path: &Path) -> std::io::Result<PathBuf> {
    let absolute = absolute(path)?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return Ok(rest.iter().rev().fold(real, |path, part| path.join(part)));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                existing = parent;
            }
            _ => return Ok(absolute),
        }
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

    #[test]
    fn a_private_directory_given_absolute_or_with_dots_inside_the_root_stays_private() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("chunks")).unwrap();
        let absolute = Media::new(root.path(), "/media/").with_private(root.path().join("chunks"));
        assert!(absolute.is_private("chunks/k.part"));
        assert!(absolute.path("chunks/k.part").is_err());
        let dotted = Media::new(root.path(), "/media/").with_private("x/../chunks");
        assert!(dotted.is_private("chunks/k.part"));
        let name = root.path().file_name().unwrap().to_str().unwrap();
        let around = Media::new(root.path(), "/media/").with_private(format!("../{name}/chunks"));
        assert!(around.is_private("chunks/k.part"));
        // Through a link to the root: found once links are followed.
        let link = tempfile::tempdir().unwrap();
        let linked_root = link.path().join("root");
        std::os::unix::fs::symlink(root.path(), &linked_root).unwrap();
        let linked = Media::new(root.path(), "/media/").with_private(linked_root.join("chunks"));
        assert!(linked.is_private("chunks/k.part"));
        assert!(!linked.is_private("docs/a.pdf"));
    }

    #[test]
    fn the_root_itself_or_a_directory_above_it_makes_everything_private() {
        for dir in [".", "..", "/"] {
            let media = Media::new("/srv/media", "/media/").with_private(dir);
            assert!(media.is_private("docs/a.pdf"), "{dir}");
        }
    }
}
