//! The final name of a stored file: `upload_to` expanded, the client's file name made
//! safe, the whole kept within the column's length, and an alternative when taken.

use chrono::{DateTime, Datelike, Timelike, Utc};
use rand::{Rng, distr::Alphanumeric};

use crate::storage::media::{PathError, check_relative};

/// Expands the date placeholders of an `upload_to` directory, as Django's `strftime` does
/// for the common ones: `%Y` (2026), `%m` (01–12), `%d` (01–31), `%H`, `%M`, `%S` and
/// `%%`. Anything else is kept as written. Dates are UTC.
///
/// ```
/// use sea_orm_resumable::field::expand_date;
/// let when = chrono::DateTime::parse_from_rfc3339("2026-03-07T09:05:00Z").unwrap().to_utc();
/// assert_eq!(expand_date("docs/%Y/%m/%d", when), "docs/2026/03/07");
/// assert_eq!(expand_date("100%%/%q", when), "100%/%q");
/// ```
pub fn expand_date(template: &str, when: DateTime<Utc>) -> String {
    let mut out = String::with_capacity(template.len() + 8);
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&format!("{:04}", when.year())),
            Some('m') => out.push_str(&format!("{:02}", when.month())),
            Some('d') => out.push_str(&format!("{:02}", when.day())),
            Some('H') => out.push_str(&format!("{:02}", when.hour())),
            Some('M') => out.push_str(&format!("{:02}", when.minute())),
            Some('S') => out.push_str(&format!("{:02}", when.second())),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Names Windows refuses as file names, whatever the extension.
const WINDOWS_RESERVED: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// Makes a client's file name safe to store, like Django's `get_valid_filename`: the last
/// path component only, whitespace turned into `_`, only letters and digits (any script),
/// `-`, `_` and `.` kept, no leading dot, no reserved Windows name; `file` if nothing is
/// left.
///
/// ```
/// use sea_orm_resumable::field::sanitize_file_name;
/// assert_eq!(sanitize_file_name("My Report (final).pdf"), "My_Report_final.pdf");
/// assert_eq!(sanitize_file_name("../../etc/passwd"), "passwd");
/// assert_eq!(sanitize_file_name("C:\\Users\\x\\.bashrc"), "bashrc");
/// assert_eq!(sanitize_file_name("報告書.pdf"), "報告書.pdf");
/// assert_eq!(sanitize_file_name("nul.txt"), "_nul.txt");
/// assert_eq!(sanitize_file_name("..."), "file");
/// ```
pub fn sanitize_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut safe: String = last
        .trim()
        .chars()
        .filter_map(|c| {
            if c.is_whitespace() {
                Some('_')
            } else if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                Some(c)
            } else {
                None
            }
        })
        .collect();
    safe = safe.trim_start_matches('.').to_owned();
    if safe.is_empty() || safe.chars().all(|c| c == '.') {
        return "file".into();
    }
    let stem = safe.split('.').next().unwrap_or_default();
    if WINDOWS_RESERVED
        .iter()
        .any(|reserved| stem.eq_ignore_ascii_case(reserved))
    {
        safe.insert(0, '_');
    }
    safe
}

/// Longest extension kept as one, in characters; a longer "extension" is part of the stem.
const MAX_EXTENSION: usize = 16;

/// Splits `name` into stem and extension (with its dot): `a.tar.gz` → (`a.tar`, `.gz`).
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(dot) if dot > 0 && name[dot..].chars().count() <= MAX_EXTENSION => name.split_at(dot),
        _ => (name, ""),
    }
}

/// Characters (all ASCII, so also bytes) taken by the suffix of an alternative name
/// (`_` + 7 random).
const ALTERNATIVE_SUFFIX: usize = 8;

/// Longest file name most file systems take, in bytes.
const MAX_NAME_BYTES: usize = 255;

/// The relative path to store a file at, from what `upload_to` returned: the directory
/// part checked ([`check_relative`]), the file name made safe, and the file stem shortened
/// so that, with room for an alternative-name suffix, the path fits in `max_length`
/// characters and the file name in 255 bytes.
pub(crate) fn stored_path(upload_to: &str, max_length: u32) -> Result<String, NameError> {
    let (dir, name) = match upload_to.rsplit_once('/') {
        Some((dir, name)) => (dir, name),
        None => ("", upload_to),
    };
    if !dir.is_empty() {
        check_relative(dir).map_err(NameError::Directory)?;
    }
    let name = sanitize_file_name(name);
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    let (stem, extension) = split_extension(&name);
    let fixed = prefix.chars().count() + extension.chars().count() + ALTERNATIVE_SUFFIX;
    let room = (max_length as usize).saturating_sub(fixed);
    if room == 0 {
        return Err(NameError::TooLong {
            path: format!("{prefix}{name}"),
            max_length,
        });
    }
    let byte_room = MAX_NAME_BYTES - extension.len() - ALTERNATIVE_SUFFIX;
    let mut bytes = 0;
    let stem: String = stem
        .chars()
        .take(room)
        .take_while(|c| {
            bytes += c.len_utf8();
            bytes <= byte_room
        })
        .collect();
    Ok(format!("{prefix}{stem}{extension}"))
}

/// Attempts at a unique name before giving up (each alternative has 62^7 choices).
pub(crate) const NAME_ATTEMPTS: usize = 32;

/// An alternative to a taken path: `_` and 7 random letters or digits before the
/// extension, as Django does (`report_k3J9xQa.pdf`).
pub(crate) fn alternative_path(path: &str) -> String {
    let (dir, name) = match path.rsplit_once('/') {
        Some((dir, name)) => (format!("{dir}/"), name),
        None => (String::new(), path),
    };
    let (stem, extension) = split_extension(name);
    let suffix: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(ALTERNATIVE_SUFFIX - 1)
        .map(char::from)
        .collect();
    format!("{dir}{stem}_{suffix}{extension}")
}

/// Why no stored path could be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NameError {
    #[error("upload_to gave an unsafe directory: {0}")]
    Directory(PathError),
    #[error("the path {path:?} cannot fit in {max_length} characters")]
    TooLong { path: String, max_length: u32 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_path_keeps_directory_and_sanitises_the_name() {
        assert_eq!(
            stored_path("docs/2026/My File.PDF", 255).unwrap(),
            "docs/2026/My_File.PDF"
        );
        assert_eq!(stored_path("a b.txt", 255).unwrap(), "a_b.txt");
        assert!(stored_path("../x/a.txt", 255).is_err());
        assert!(stored_path("/abs/a.txt", 255).is_err());
    }

    #[test]
    fn long_names_are_shortened_to_fit_with_room_for_a_suffix() {
        let long = format!("docs/{}.pdf", "x".repeat(500));
        let path = stored_path(&long, 100).unwrap();
        assert!(path.ends_with(".pdf"));
        assert_eq!(path.chars().count(), 100 - ALTERNATIVE_SUFFIX);
        assert_eq!(alternative_path(&path).chars().count(), 100);
        assert!(stored_path(&format!("{}/a.pdf", "d".repeat(300)), 100).is_err());
    }

    #[test]
    fn long_names_fit_the_file_system_in_bytes_and_long_extensions_are_not_kept_whole() {
        let cjk = format!("{}.pdf", "報".repeat(200));
        let path = stored_path(&cjk, 1000).unwrap();
        let name = alternative_path(&path);
        assert!(name.len() <= 255, "{} bytes", name.len());
        assert!(name.ends_with(".pdf"));

        let odd = format!("a.{}", "x".repeat(250));
        let path = stored_path(&odd, 255).unwrap();
        assert!(path.chars().count() <= 255 - ALTERNATIVE_SUFFIX, "{path}");
        assert!(alternative_path(&path).len() <= 255);
    }

    #[test]
    fn alternative_paths_differ_and_keep_the_extension() {
        let a = alternative_path("docs/report.tar.gz");
        let b = alternative_path("docs/report.tar.gz");
        assert_ne!(a, b);
        assert!(
            a.starts_with("docs/report.tar_") && a.ends_with(".gz"),
            "{a}"
        );
    }
}
