//! Running a compiled template: output capped at a byte limit (which stops the render), one-line
//! render errors for the integration log, and the clean-up of titles and descriptions.

use std::io;

use handlebars::{Context, Handlebars, RenderError, RenderErrorReason};

use super::TITLE_MAX;

/// Renders `name`, keeping at most `limit` bytes: output past the limit is cut off (and
/// rendering stops there), which is not an error.
pub(super) fn render_capped(
    registry: &Handlebars<'static>,
    name: &str,
    ctx: &Context,
    limit: usize,
) -> Result<String, String> {
    let mut out = Capped {
        buf: Vec::new(),
        limit,
        full: false,
    };
    match registry.render_with_context_to_write(name, ctx, &mut out) {
        Ok(()) => {}
        Err(_) if out.full => {}
        Err(e) => return Err(describe_render_error(&e)),
    }
    Ok(out.into_string())
}

/// An `io::Write` that keeps the first `limit` bytes and then refuses more, which stops the
/// render: memory and time stay bounded however large the data or the loop.
struct Capped {
    buf: Vec<u8>,
    limit: usize,
    full: bool,
}

impl io::Write for Capped {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let room = self.limit - self.buf.len();
        if bytes.len() <= room {
            self.buf.extend_from_slice(bytes);
            return Ok(bytes.len());
        }
        self.buf.extend_from_slice(&bytes[..room]);
        self.full = true;
        Err(io::Error::other("template output limit reached"))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Capped {
    fn into_string(self) -> String {
        // Only the cut can split a character; drop its partial bytes.
        match String::from_utf8(self.buf) {
            Ok(s) => s,
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                let mut bytes = e.into_bytes();
                bytes.truncate(valid);
                String::from_utf8(bytes).unwrap_or_default()
            }
        }
    }
}

/// A one-line reason for a failed render, for the integration log.
pub(super) fn describe_render_error(e: &RenderError) -> String {
    let reason = match e.reason() {
        RenderErrorReason::MissingVariable(Some(path)) => format!("missing field \"{path}\""),
        RenderErrorReason::MissingVariable(None) => "missing field".to_string(),
        RenderErrorReason::HelperNotFound(name) => format!("unknown helper \"{name}\""),
        RenderErrorReason::Other(message) => message.clone(),
        other => other.to_string(),
    };
    match (e.line_no, e.column_no) {
        (Some(line), Some(column)) => format!("{reason} (line {line}, column {column})"),
        _ => reason,
    }
}

/// Titles are one line of plain text: control characters and runs of whitespace become one
/// space, and at most [`TITLE_MAX`] characters are kept.
pub(super) fn clean_title(raw: &str) -> String {
    let spaced: String = raw
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut title = spaced.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some((cut, _)) = title.char_indices().nth(TITLE_MAX) {
        title.truncate(cut);
        title.truncate(title.trim_end().len());
    }
    title
}

/// Cuts sanitized HTML to at most `max` bytes without leaving half a tag or half an entity
/// behind (ammonia's output escapes every literal `<` and `&`, so any left is markup).
pub(super) fn bound_html(mut html: String, max: usize) -> String {
    if html.len() <= max {
        return html;
    }
    let mut cut = max;
    while !html.is_char_boundary(cut) {
        cut -= 1;
    }
    let head = &html[..cut];
    if let Some(lt) = head.rfind('<')
        && !head[lt..].contains('>')
    {
        cut = lt;
    }
    let head = &html[..cut];
    if let Some(amp) = head.rfind('&')
        && !head[amp..].contains(';')
    {
        cut = amp;
    }
    html.truncate(cut);
    html
}
