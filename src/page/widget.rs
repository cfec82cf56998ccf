//! [`Widget`]: the HTML of a file field — file input and drop area, hidden token input,
//! progress bar, pause/resume/cancel, errors — driven by the crate's JavaScript client
//! ([`assets`](crate::page::assets)). It is a value that displays as HTML, so any template engine
//! can print it; every text and attribute is escaped.

use std::fmt::{self, Display, Write};

use crate::{UploadStatus, field::FileFieldOptions};

/// The HTML of one file field. Several can share a page (give each its own `name`).
///
/// ```
/// use sea_orm_resumable::Widget;
/// sea_orm_resumable::file_field! { pub struct Scans { max_size: 1 << 30, content_types: ["application/pdf"] } }
///
/// let html = Widget::for_field::<Scans>("scan", "/resumable_upload/")
///     .label("Scanned contract")
///     .required(true)
///     .to_string();
/// assert!(html.contains(r#"<input type="hidden" name="scan" value="" data-rw-token>"#));
/// assert!(html.contains(r#"accept="application/pdf""#));
/// assert!(html.contains(r#"data-max-size="1073741824""#));
/// ```
#[derive(Clone, Debug)]
pub struct Widget {
    name: String,
    id: String,
    label: String,
    target: String,
    field: Option<String>,
    chunk_size: u64,
    simultaneous: u32,
    accept: Vec<String>,
    max_size: Option<u64>,
    required: bool,
    token: String,
    completed: Option<UploadStatus>,
    errors: Vec<String>,
}

/// Default chunk size of the widget's client: 4 MiB, large enough to keep per-request
/// costs low, small enough that a lost chunk costs little.
pub const DEFAULT_CHUNK_SIZE: u64 = 4 << 20;

impl Widget {
    /// A widget whose hidden input is named `name` and that uploads to `target` (where
    /// [`router`](crate::router) is mounted, e.g. `/resumable_upload/`).
    pub fn new(name: impl Into<String>, target: impl Into<String>) -> Self {
        let name = name.into();
        // Ids go into space-separated attributes (aria-describedby): keep them to one word.
        let id: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Self {
            id: format!("id_{id}"),
            label: String::new(),
            name,
            target: target.into(),
            field: None,
            chunk_size: DEFAULT_CHUNK_SIZE,
            simultaneous: 3,
            accept: Vec::new(),
            max_size: None,
            required: false,
            token: String::new(),
            completed: None,
            errors: Vec::new(),
        }
    }

    /// A widget for a field with options `C`: its content types become the file picker's
    /// `accept` hint and its size limit is checked before uploading (both are checked again
    /// on the server).
    pub fn for_field<C: FileFieldOptions>(
        name: impl Into<String>,
        target: impl Into<String>,
    ) -> Self {
        let mut widget = Self::new(name, target);
        widget.accept = C::CONTENT_TYPES.iter().map(|t| t.to_string()).collect();
        widget.max_size = C::MAX_SIZE;
        widget
    }

    /// The label text (default: none).
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// The file input's `id` (default `id_<name>`); other ids derive from it.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// The registered field name sent as `resumableField` (for fields with their own chunk
    /// directory; see [`UploadsBuilder::field`](crate::UploadsBuilder::field)).
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Chunk size in bytes (default [`DEFAULT_CHUNK_SIZE`]); keep it within the upload
    /// service's `max_chunk_size`.
    pub fn chunk_size(mut self, bytes: u64) -> Self {
        self.chunk_size = bytes.max(1);
        self
    }

    /// Chunks in flight at once (default 3).
    pub fn simultaneous(mut self, requests: u32) -> Self {
        self.simultaneous = requests.max(1);
        self
    }

    /// Whether the form needs a file (marks the picker `required` until a file is in).
    pub fn required(mut self, required: bool) -> Self {
        self.required = required;
        self
    }

    /// The token already in the form (when it is shown again after an error) and, if it
    /// still names an upload, that upload's status, so the widget shows the file as
    /// uploaded and the user does not send it again.
    pub fn value(mut self, token: impl Into<String>, status: Option<UploadStatus>) -> Self {
        self.token = token.into();
        self.completed = status.filter(|s| s.complete);
        if self.completed.is_none() {
            self.token.clear();
        }
        self
    }

    /// Errors to show under the field (e.g. from [`FileInput::clean`](crate::page::form::FileInput::clean)).
    pub fn errors<I, S>(mut self, errors: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.errors.extend(errors.into_iter().map(Into::into));
        self
    }
}

impl Display for Widget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = Escaped(&self.id);
        let done = self.completed.as_ref();
        write!(
            f,
            r#"<div class="rw" id="{id}-widget" data-resumable-widget data-target="{}" data-chunk-size="{}" data-simultaneous="{}""#,
            Escaped(&self.target),
            self.chunk_size,
            self.simultaneous
        )?;
        if let Some(field) = &self.field {
            write!(f, r#" data-field="{}""#, Escaped(field))?;
        }
        if let Some(max) = self.max_size {
            write!(f, r#" data-max-size="{max}""#)?;
        }
        if self.required {
            f.write_str(r#" data-required="true""#)?;
        }
        f.write_str(">")?;
        if !self.label.is_empty() {
            write!(
                f,
                r#"<label class="rw-label" for="{id}">{}</label>"#,
                Escaped(&self.label)
            )?;
        }
        write!(
            f,
            r#"<div class="rw-drop" data-rw-drop><input class="rw-input" type="file" id="{id}" aria-describedby="{id}-status {id}-errors""#
        )?;
        if !self.accept.is_empty() {
            write!(f, r#" accept="{}""#, Escaped(&self.accept.join(",")))?;
        }
        if self.required && done.is_none() {
            f.write_str(" required")?;
        }
        f.write_str(r#"><span class="rw-hint">or drop a file here</span></div>"#)?;
        write!(
            f,
            r#"<input type="hidden" name="{}" value="{}" data-rw-token>"#,
            Escaped(&self.name),
            Escaped(&self.token)
        )?;
        let (name, size) = done.map_or((String::new(), String::new()), |s| {
            (s.file_name.clone(), human_size(s.size))
        });
        write!(
            f,
            r#"<div class="rw-file" data-rw-file{}><span class="rw-name" data-rw-name>{}</span> <span class="rw-size" data-rw-size>{}</span></div>"#,
            if done.is_some() { "" } else { " hidden" },
            Escaped(&name),
            Escaped(&size)
        )?;
        write!(
            f,
            r#"<div class="rw-progress-row"><progress class="rw-progress" max="100" value="{}" aria-labelledby="{id}-status" data-rw-progress></progress> <span class="rw-status" id="{id}-status" role="status" aria-live="polite" data-rw-status>{}</span> <span class="rw-speed" aria-hidden="true" data-rw-speed></span></div>"#,
            if done.is_some() { 100 } else { 0 },
            if done.is_some() { "Uploaded" } else { "" }
        )?;
        write!(
            f,
            r#"<div class="rw-actions"><button type="button" class="rw-pause" data-rw-pause hidden>Pause</button> <button type="button" class="rw-resume" data-rw-resume hidden>Resume</button> <button type="button" class="rw-cancel" data-rw-cancel{}>{}</button></div>"#,
            if done.is_some() { "" } else { " hidden" },
            if done.is_some() { "Remove" } else { "Cancel" }
        )?;
        write!(
            f,
            r#"<ul class="rw-errors" id="{id}-errors" role="alert" data-rw-errors>"#
        )?;
        for error in &self.errors {
            write!(f, "<li>{}</li>", Escaped(error))?;
        }
        f.write_str("</ul></div>")
    }
}

/// `12.3 MB`-style size for people.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Text escaped for HTML content and double-quoted attributes.
///
/// ```
/// use sea_orm_resumable::widget::Escaped;
/// assert_eq!(Escaped(r#"<a href="x">&'"#).to_string(), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
/// ```
pub struct Escaped<'a>(pub &'a str);

impl Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Scope, Secret, UploadKey};

    fn status(name: &str) -> UploadStatus {
        let scope = Scope::anonymous();
        UploadStatus {
            token: Secret::generate().sign(&scope, &UploadKey::derive(&scope, name)),
            complete: true,
            chunks_received: 1,
            total_chunks: 1,
            size: 12_300_000,
            file_name: name.into(),
        }
    }

    #[test]
    fn everything_from_outside_is_escaped() {
        let html = Widget::new("f\"><script>", "/up?a=1&b=\"2\"")
            .label("<b>Label</b>")
            .field("x\" onclick=\"y")
            .value("t\"<", Some(status("<img src=x onerror=alert(1)>.pdf")))
            .errors(["<script>alert(1)</script>"])
            .to_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(html.contains(r#"data-field="x&quot; onclick=&quot;y""#));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }

    #[test]
    fn a_completed_upload_is_shown_as_uploaded_and_keeps_its_token() {
        let html = Widget::new("file", "/u/")
            .required(true)
            .value("k.sig", Some(status("report.pdf")))
            .to_string();
        assert!(html.contains(r#"value="k.sig""#));
        assert!(html.contains("report.pdf"));
        assert!(html.contains("12.3 MB"));
        assert!(html.contains(">Uploaded<"));
        assert!(
            !html.contains(" required"),
            "a kept upload satisfies required"
        );
    }

    #[test]
    fn a_token_without_a_completed_upload_is_dropped() {
        let html = Widget::new("file", "/u/")
            .value("stale.sig", None)
            .to_string();
        assert!(html.contains(r#"name="file" value="""#));
    }

    #[test]
    fn two_widgets_have_distinct_ids() {
        let a = Widget::new("a", "/u/").to_string();
        let b = Widget::new("b", "/u/").to_string();
        assert!(a.contains(r#"id="id_a""#) && b.contains(r#"id="id_b""#));
    }
}
