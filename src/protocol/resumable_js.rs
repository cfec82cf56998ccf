//! The chunk parameters resumable.js and flow.js send, read and checked.
//!
//! Each request carries its parameters under one naming scheme: resumable.js names
//! (`resumableChunkNumber`, … — renameable and optionally prefixed with a namespace) or
//! flow.js names (`flowChunkNumber`, …). [`ParameterNames`] describes one scheme; the
//! scheme is recognised per request by the presence of its chunk-number parameter.

use crate::{ChunkParams, ParameterNames};

/// Longest identifier or file name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 255;
/// Longest relative path or content type accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;

/// A parameter that is missing or malformed; the message is one line for the client.
///
/// ```
/// use sea_orm_resumable::{ChunkParams, ParameterNames};
/// let error = ChunkParams::parse(&[ParameterNames::flow()], |_| None).unwrap_err();
/// assert_eq!(error.to_string(), "missing chunk parameters (expected flowChunkNumber)");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamError(pub String);

impl ChunkParams {
    /// Reads the parameters through `lookup` (which returns a parameter's value by its
    /// full name), recognising the first scheme in `schemes` whose chunk-number parameter
    /// is present.
    pub fn parse<'a>(
        schemes: &[ParameterNames],
        lookup: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Self, ParamError> {
        let Some(names) = schemes
            .iter()
            .find(|n| lookup(&n.key(&n.chunk_number)).is_some())
        else {
            let expected: Vec<String> = schemes.iter().map(|n| n.key(&n.chunk_number)).collect();
            return Err(ParamError(format!(
                "missing chunk parameters (expected {})",
                expected.join(" or ")
            )));
        };
        let get = |name: &str| {
            let key = names.key(name);
            match lookup(&key) {
                Some(value) => Ok((key, value)),
                None => Err(ParamError(format!("missing parameter {key}"))),
            }
        };
        let number = |name: &str| get(name).and_then(|(key, value)| parse_number(&key, value));
        let text = |name: &str, max: usize| {
            get(name).and_then(|(key, value)| check_text(&key, value, max).map(str::to_owned))
        };
        let optional = |name: &str| -> Result<Option<String>, ParamError> {
            let key = names.key(name);
            match lookup(&key) {
                None | Some("") => Ok(None),
                Some(value) => check_text(&key, value, MAX_PATH_BYTES).map(|v| Some(v.into())),
            }
        };
        Ok(Self {
            chunk_number: number(&names.chunk_number)?,
            chunk_size: number(&names.chunk_size)?,
            current_chunk_size: number(&names.current_chunk_size)?,
            total_size: number(&names.total_size)?,
            identifier: text(&names.identifier, MAX_NAME_BYTES)?,
            filename: text(&names.filename, MAX_NAME_BYTES)?,
            relative_path: optional(&names.relative_path)?,
            content_type: optional(&names.content_type)?,
            file_part: names.key(&names.file),
            field: match lookup(&names.key(&names.field)) {
                None | Some("") => None,
                Some(value) => {
                    Some(check_text(&names.key(&names.field), value, MAX_NAME_BYTES)?.into())
                }
            },
        })
    }
}

/// A decimal number of ASCII digits only: no sign, no spaces, no overflow.
fn parse_number(key: &str, value: &str) -> Result<u64, ParamError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParamError(format!(
            "{key} must be a non-negative whole number"
        )));
    }
    value
        .parse()
        .map_err(|_| ParamError(format!("{key} is too large")))
}

/// Non-empty text of at most `max` bytes without control characters (NUL included).
fn check_text<'v>(key: &str, value: &'v str, max: usize) -> Result<&'v str, ParamError> {
    if value.is_empty() {
        return Err(ParamError(format!("{key} must not be empty")));
    }
    if value.len() > max {
        return Err(ParamError(format!("{key} is longer than {max} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(ParamError(format!(
            "{key} must not contain control characters"
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<ChunkParams, ParamError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let schemes = [
            ParameterNames::resumable(),
            ParameterNames::flow(),
            ParameterNames::resumable().with_namespace("ns_"),
        ];
        ChunkParams::parse(&schemes, |k| {
            pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
        })
    }

    const FLOW: &str = "flowChunkNumber=1&flowChunkSize=10&flowCurrentChunkSize=5&flowTotalSize=5&flowIdentifier=5-a&flowFilename=a&flowRelativePath=dir/a";

    #[test]
    fn flow_names_are_recognised() {
        let params = parse(FLOW).unwrap();
        assert_eq!(params.total_size, 5);
        assert_eq!(params.relative_path.as_deref(), Some("dir/a"));
        assert_eq!(params.content_type, None);
    }

    #[test]
    fn the_field_parameter_names_the_upload_field_in_either_scheme() {
        assert_eq!(parse(FLOW).unwrap().field, None);
        let flow = format!("{FLOW}&flowField=avatar");
        assert_eq!(parse(&flow).unwrap().field.as_deref(), Some("avatar"));
        let resumable = format!("{}&resumableField=cover", FLOW.replace("flow", "resumable"));
        assert_eq!(parse(&resumable).unwrap().field.as_deref(), Some("cover"));
        let empty = format!("{FLOW}&flowField=");
        assert_eq!(parse(&empty).unwrap().field, None);
        let control = format!("{FLOW}&flowField=a%00b");
        assert!(parse(&control).is_err());
    }

    #[test]
    fn a_namespace_prefix_is_recognised() {
        let query = FLOW.replace("flow", "ns_resumable");
        assert_eq!(parse(&query).unwrap().identifier, "5-a");
    }

    #[test]
    fn numbers_must_be_plain_digits() {
        for bad in ["-1", "+1", " 1", "1.0", "0x10", "", "abc", "1e3"] {
            let query = FLOW.replace("flowChunkNumber=1", &format!("flowChunkNumber={bad}"));
            let err = parse(&query).unwrap_err().0;
            assert!(err.contains("flowChunkNumber"), "{bad}: {err}");
        }
        let query = FLOW.replace("flowTotalSize=5", "flowTotalSize=18446744073709551616");
        assert_eq!(parse(&query).unwrap_err().0, "flowTotalSize is too large");
    }

    #[test]
    fn names_must_be_short_printable_and_present() {
        let long = "x".repeat(256);
        for bad in ["", "a%00b", "a%0Ab", long.as_str()] {
            let query = FLOW.replace("flowFilename=a", &format!("flowFilename={bad}"));
            assert!(parse(&query).is_err(), "{bad:?}");
        }
        let query = FLOW.replace("&flowIdentifier=5-a", "");
        assert_eq!(
            parse(&query).unwrap_err().0,
            "missing parameter flowIdentifier"
        );
        assert!(
            parse("foo=bar")
                .unwrap_err()
                .0
                .contains("resumableChunkNumber")
        );
    }

    #[test]
    fn hostile_file_names_are_kept_as_metadata() {
        for name in ["../../etc/passwd", "C:%5Cx", "%2Fabs", "..", "NUL"] {
            let query = FLOW.replace("flowFilename=a", &format!("flowFilename={name}"));
            assert!(parse(&query).is_ok(), "{name}");
        }
    }
}
