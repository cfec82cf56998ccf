//! What type a file is, judged from its first bytes (never from the name or the type the
//! browser claimed): what the endpoint checks at a field's first chunk and the form
//! checks again before a save.

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use std::io;

use crate::storage::upload_store::Body;

/// How many of a file's first bytes its content type is judged from.
pub const SNIFF_BYTES: usize = 8192;

/// The first `at_least` bytes of `body` (fewer if it is shorter or breaks off), and the
/// body again from its start: how the service looks at a file's type before any store
/// sees its bytes.
pub(crate) async fn peek(mut body: Body<'_>, at_least: usize) -> (Vec<u8>, Body<'_>) {
    let mut seen: Vec<io::Result<Bytes>> = Vec::new();
    let mut head = Vec::new();
    while head.len() < at_least {
        match body.next().await {
            Some(Ok(piece)) => {
                head.extend_from_slice(&piece);
                seen.push(Ok(piece));
            }
            Some(Err(e)) => {
                seen.push(Err(e));
                break;
            }
            None => break,
        }
    }
    (head, stream::iter(seen).chain(body).boxed())
}

/// The content type of bytes from a file's start: a known signature (magic number, via the
/// `infer` crate), else HTML, SVG or XML by how the text starts, else `text/plain` for
/// UTF-8 text without NUL bytes, else `application/octet-stream`; `application/x-empty`
/// for no bytes. Note that `image/*` admits SVG and `text/*` admits HTML, which can carry
/// scripts: serve stored files as downloads, or allow exact types.
///
/// ```
/// use sea_orm_resumable::form::sniff;
/// assert_eq!(sniff(b"%PDF-1.7\n..."), "application/pdf");
/// assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png");
/// assert_eq!(sniff("name,size\nä,1\n".as_bytes()), "text/plain");
/// assert_eq!(sniff(&[0, 159, 146, 150]), "application/octet-stream");
/// assert_eq!(sniff(b"<!DOCTYPE html><script>alert(1)</script>"), "text/html");
/// assert_eq!(sniff(b"<svg xmlns='http://www.w3.org/2000/svg' onload='x()'/>"), "image/svg+xml");
/// // Any tag-like start is markup, whatever the tag and case, after white space or a BOM.
/// assert_eq!(sniff(b"<img src=x onerror=alert(1)>"), "text/html");
/// assert_eq!(sniff(b"\xef\xbb\xbf \n<BODY\tonload=alert(1)>"), "text/html");
/// assert_eq!(sniff(b"<!DOCTYPE svg PUBLIC \"-//W3C//DTD SVG 1.1//EN\" \"x\"><svg onload=alert(1)>"), "image/svg+xml");
/// assert_eq!(sniff(b"a < b, and <b> is bold"), "text/plain");
/// ```
pub fn sniff(head: &[u8]) -> String {
    if head.is_empty() {
        return "application/x-empty".into();
    }
    if let Some(markup) = markup_type(head) {
        return markup.into();
    }
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().into();
    }
    let text = match std::str::from_utf8(head) {
        Ok(_) => true,
        // Cut inside a character at the end of the sample: still text.
        Err(e) => e.error_len().is_none(),
    };
    if text && !head.contains(&0) {
        "text/plain".into()
    } else {
        "application/octet-stream".into()
    }
}

/// Markup a browser would render (and run scripts in): HTML, SVG, XML. Browsers take
/// anything that starts like a tag as markup, whatever the tag, in any case, after
/// white space and a byte order mark; so does this, so that a field allowing
/// `text/plain` or `image/png` never takes `<img src=x onerror=…>` as such.
fn markup_type(head: &[u8]) -> Option<&'static str> {
    let sample = String::from_utf8_lossy(&head[..head.len().min(1024)]).to_ascii_lowercase();
    let start = sample
        .trim_start_matches('\u{feff}')
        .trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '\u{c}');
    let mut chars = start.chars();
    let tag_like = chars.next() == Some('<')
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '!' | '?' | '/'));
    if !tag_like {
        return None;
    }
    Some(if sample.contains("<svg") {
        "image/svg+xml"
    } else if start.starts_with("<?xml") && !sample.contains("<html") {
        "application/xml"
    } else {
        "text/html"
    })
}

/// Whether `found` is allowed by `pattern`: equal, `type/*` or `*/*`.
///
/// ```
/// use sea_orm_resumable::form::type_matches;
/// assert!(type_matches("image/*", "image/png"));
/// assert!(type_matches("application/pdf", "application/pdf"));
/// assert!(!type_matches("image/*", "application/pdf"));
/// assert!(type_matches("*/*", "text/plain"));
/// ```
pub fn type_matches(pattern: &str, found: &str) -> bool {
    if pattern == "*/*" || pattern == "*" {
        return true;
    }
    match pattern.strip_suffix('*') {
        Some(prefix) if prefix.ends_with('/') => found.starts_with(prefix),
        _ => pattern.eq_ignore_ascii_case(found),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_never_plain_text_whatever_its_first_tag() {
        for html in [
            "<img src=x onerror=alert(1)>",
            "<body\tonload=alert(1)>",
            "\u{feff}\n\t <IFRAME src=javascript:alert(1)>",
            "<a href=javascript:x>hi</a>",
            "<!-- a comment --><script>x()</script>",
            "</p><script>x()</script>",
            "<x-custom onclick=x()>",
        ] {
            assert_eq!(sniff(html.as_bytes()), "text/html", "{html:?}");
        }
        for svg in [
            "<!DOCTYPE svg PUBLIC \"-//W3C//DTD SVG 1.1//EN\" \"x\"><svg onload=alert(1)>",
            "<?xml version=\"1.0\"?><SVG xmlns=\"http://www.w3.org/2000/svg\"/>",
            "  <svg/onload=alert(1)>",
        ] {
            assert_eq!(sniff(svg.as_bytes()), "image/svg+xml", "{svg:?}");
        }
        assert_eq!(sniff(b"<?xml version=\"1.0\"?><note/>"), "application/xml");
    }

    #[test]
    fn text_that_only_contains_angle_brackets_stays_text() {
        for text in ["a < b", "1 <2", "< not a tag", "name,size\n<b>,1\n"] {
            assert_eq!(sniff(text.as_bytes()), "text/plain", "{text:?}");
        }
    }
}
