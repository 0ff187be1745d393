//! Stage 2: a raw message -> sanitized e-mail data (mail-parser decodes, ammonia sanitizes).
//! Pure: no I/O, never panics on input. A message mail-parser cannot read still yields data
//! from what could be read (the envelope, and the raw text as the message).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders, PartType};
use serde::{Deserialize, Serialize};

/// The SMTP envelope a message arrived with.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Envelope {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub client_addr: String,
    pub helo: String,
}

impl Envelope {
    pub fn new(mail_from: &str, rcpt_to: Vec<String>, client: SocketAddr, helo: &str) -> Self {
        Self {
            mail_from: mail_from.to_string(),
            rcpt_to,
            client_addr: client.to_string(),
            helo: helo.to_string(),
        }
    }
}

/// A part of the message that is not its body: listed with its name, type and size (the part
/// itself stays in the raw message, which is stored).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Attachment {
    pub name: String,
    #[serde(rename = "type")]
    pub content_type: String,
    pub size: usize,
    /// The part's Content-ID without `<>`, which an HTML body's `cid:` URLs name (inline
    /// images); null when it has none.
    pub content_id: Option<String>,
}

/// The e-mail data of spec step 2: what templates see as `data` and what the log shows.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EmailData {
    pub to: String,
    pub from: String,
    pub subject: String,
    /// Sanitized HTML when the message has an HTML part, otherwise the text part.
    pub message: String,
    /// Plain text, derived from the HTML when there is no text part.
    pub text: String,
    pub cc: String,
    /// RFC 3339, or empty when the Date header is missing or unreadable.
    pub date: String,
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub headers: BTreeMap<String, String>,
    pub attachments: Vec<Attachment>,
    pub envelope: Envelope,
    /// The sub-address tag of the recipient that routed it here (`ops+db@` -> `db`).
    pub tag: Option<String>,
    /// The index of the integration's e-mail rule that matched, set by `adapt::email` (null
    /// when none did).
    pub rule: Option<usize>,
    /// Set when the message could not be fully decoded; says what was wrong.
    pub parse_error: Option<String>,
}

/// Parses and sanitizes one message. Never fails: unreadable parts fall back to what could be read.
pub fn parse(raw: &[u8], envelope: Envelope) -> EmailData {
    let Some(msg) = MessageParser::default().parse(raw) else {
        let text = String::from_utf8_lossy(raw).into_owned();
        return EmailData {
            to: envelope.rcpt_to.join(";"),
            from: envelope.mail_from.clone(),
            subject: String::new(),
            message: escape_html(&text),
            text,
            cc: String::new(),
            date: String::new(),
            message_id: None,
            in_reply_to: None,
            references: Vec::new(),
            headers: BTreeMap::new(),
            attachments: Vec::new(),
            envelope,
            tag: None,
            rule: None,
            parse_error: Some("not a readable RFC 5322 message".into()),
        };
    };

    let has_html = msg.html_bodies().any(|p| p.is_text_html());
    let has_text = msg
        .text_bodies()
        .any(|p| matches!(p.body, PartType::Text(_)));
    let html = if has_html {
        join_bodies(&msg, true)
    } else {
        String::new()
    };
    let mut parse_error = msg
        .parts
        .iter()
        .any(|p| p.is_encoding_problem)
        .then(|| "a part could not be decoded with its declared encoding".to_string());
    let text = if has_text {
        join_bodies(&msg, false)
    } else if let Some(t) = msg.body_text(0) {
        t.into_owned()
    } else {
        // No readable body part (a broken multipart, say): show the raw body instead.
        parse_error = Some("no readable body part; the raw body is shown".into());
        raw_body(raw)
    };
    let message = if has_html {
        sanitize_html(&html)
    } else {
        escape_html(&text)
    };

    let to = addresses(msg.to()).unwrap_or_else(|| envelope.rcpt_to.join(";"));
    let from = addresses(msg.from()).unwrap_or_else(|| envelope.mail_from.clone());

    EmailData {
        to,
        from,
        subject: msg.subject().unwrap_or_default().to_string(),
        message,
        text,
        cc: addresses(msg.cc()).unwrap_or_default(),
        date: msg.date().map(|d| d.to_rfc3339()).unwrap_or_default(),
        message_id: msg.message_id().map(str::to_string),
        in_reply_to: text_list(msg.in_reply_to()).into_iter().next(),
        references: text_list(msg.references()),
        headers: headers(&msg),
        attachments: msg
            .attachments()
            // A multipart container left over from broken MIME is not an attachment.
            .filter(|a| {
                !a.is_multipart()
                    && !a
                        .content_type()
                        .is_some_and(|ct| ct.ctype().eq_ignore_ascii_case("multipart"))
            })
            .map(|a| Attachment {
                name: a.attachment_name().unwrap_or_default().to_string(),
                content_type: a
                    .content_type()
                    .map(|ct| match ct.subtype() {
                        Some(sub) => format!("{}/{}", ct.ctype(), sub),
                        None => ct.ctype().to_string(),
                    })
                    .unwrap_or_else(|| "application/octet-stream".into())
                    .to_ascii_lowercase(),
                size: a.len(),
                content_id: a.content_id().map(content_id),
            })
            .collect(),
        envelope,
        tag: None,
        rule: None,
        parse_error,
    }
}

/// Plain text made safe to show as HTML: `&`, `<` and `>` become entities, nothing is lost.
/// `message` is always HTML, sanitized or escaped; `text` keeps the plain text.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    let mut plain = 0;
    // The three characters are ASCII, so byte positions are character boundaries.
    for (i, b) in text.bytes().enumerate() {
        let entity = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            _ => continue,
        };
        out.push_str(&text[plain..i]);
        out.push_str(entity);
        plain = i + 1;
    }
    out.push_str(&text[plain..]);
    out
}

/// A Content-ID as `cid:` URLs name it: without the angle brackets.
fn content_id(raw: &str) -> String {
    raw.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}

/// Sanitizes HTML for display: no scripts, event handlers, `javascript:`/`data:` URLs or styles.
/// `cid:` URLs stay (they name parts of the message itself; [`embed_inline_images`]).
pub fn sanitize_html(html: &str) -> String {
    // Text with none of these is one text node that the sanitizer would return unchanged
    // (its serializer escapes only `&`, `<`, `>` and U+00A0; parsing rewrites CR and NUL).
    if !html.contains(['<', '>', '&', '\r', '\0', '\u{a0}']) {
        return html.to_string();
    }
    SANITIZER.clean(html).to_string()
}

/// Built once: a `Builder` is a dozen sets and maps of allowed tags and attributes.
static SANITIZER: std::sync::LazyLock<ammonia::Builder<'static>> = std::sync::LazyLock::new(|| {
    let mut b = ammonia::Builder::default();
    // Relative URLs mean nothing in an alert (there is no base), and a "relative" URL such as
    // `` `javascript:… `` is one old browsers ran: only absolute http(s)/mailto URLs stay.
    b.url_schemes(["http", "https", "mailto", "cid"].into())
        .url_relative(ammonia::UrlRelative::Deny)
        .link_rel(Some("noopener noreferrer"));
    b
});

/// Image types a browser shows from a `data:` URL without running anything (no SVG).
const INLINE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// Makes the `cid:` images of sanitized `html` resolvable wherever it is shown: each
/// `src="cid:…"` that names an inline image part of `raw` becomes a `data:` URL of it, as long
/// as the result stays within `max` bytes (an image that does not fit keeps its `cid:` URL, and
/// stays listed in `attachments`). Only a fixed image type and base64 go into the attribute, so
/// nothing active can be introduced.
pub fn embed_inline_images(html: &str, raw: &[u8], max: usize) -> String {
    const MARK: &str = "src=\"cid:";
    if !html.contains(MARK) {
        return html.to_string();
    }
    let Some(msg) = MessageParser::default().parse(raw) else {
        return html.to_string();
    };
    let (mut out, mut len) = (String::with_capacity(html.len()), html.len());
    let mut rest = html;
    while let Some(at) = rest.find(MARK) {
        let start = at + MARK.len();
        let Some(end) = rest[start..].find('"').map(|n| start + n) else {
            break;
        };
        let cid = rest[start..end].replace("&amp;", "&");
        out.push_str(&rest[..at]);
        match inline_image(&msg, &cid) {
            // `cid:` (4 bytes) and the id give way to the URL.
            Some(url) if len + url.len() <= max + 4 + (end - start) => {
                len = len + url.len() - 4 - (end - start);
                out.push_str("src=\"");
                out.push_str(&url);
            }
            _ => out.push_str(&rest[at..end]),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The `data:` URL of the part whose Content-ID is `cid`, when it is an image of a safe type.
fn inline_image(msg: &mail_parser::Message<'_>, cid: &str) -> Option<String> {
    use base64::Engine as _;
    let decoded = percent_decoded(cid);
    let part = msg.parts.iter().find(|p| {
        p.content_id()
            .map(content_id)
            .is_some_and(|id| id == cid || decoded.as_deref() == Some(id.as_str()))
    })?;
    let ct = part.content_type()?;
    let mime = format!("{}/{}", ct.ctype(), ct.subtype()?).to_ascii_lowercase();
    if !INLINE_TYPES.contains(&mime.as_str()) {
        return None;
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(part.contents());
    Some(format!("data:{mime};base64,{b64}"))
}

/// `cid:` URLs are percent-encoded (RFC 2392); `None` when there is nothing to decode.
fn percent_decoded(cid: &str) -> Option<String> {
    cid.contains('%').then(|| {
        form_urlencoded::parse(format!("x={}", cid.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    })
}

/// Everything after the header block, as text.
fn raw_body(raw: &[u8]) -> String {
    let start = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
        .unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[start..]).into_owned()
}

fn join_bodies(msg: &mail_parser::Message<'_>, html: bool) -> String {
    let parts: Vec<&str> = if html {
        msg.html_bodies()
            .filter_map(|p| match &p.body {
                PartType::Html(h) => Some(h.as_ref()),
                _ => None,
            })
            .collect()
    } else {
        msg.text_bodies()
            .filter_map(|p| match &p.body {
                PartType::Text(t) => Some(t.as_ref()),
                _ => None,
            })
            .collect()
    };
    parts.join("\n")
}

fn addresses(addr: Option<&Address<'_>>) -> Option<String> {
    let list: Vec<&str> = addr?.iter().filter_map(|a| a.address()).collect();
    (!list.is_empty()).then(|| list.join(";"))
}

fn text_list(v: &HeaderValue<'_>) -> Vec<String> {
    match v {
        HeaderValue::Text(t) => vec![t.to_string()],
        HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// Header name -> decoded value; a repeated header's values are joined with a newline.
fn headers(msg: &mail_parser::Message<'_>) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in msg.headers_raw() {
        let value = decode_header_value(value);
        out.entry(name.to_string())
            .and_modify(|v| {
                v.push('\n');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

/// Unfolds a raw header value and decodes RFC 2047 words in it.
fn decode_header_value(raw: &str) -> String {
    let unfolded: String = raw
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if !unfolded.contains("=?") {
        return unfolded;
    }
    let header = format!("Subject: {unfolded}\r\n\r\n");
    MessageParser::default()
        .parse_headers(header.as_bytes())
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or(unfolded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Envelope {
        Envelope::new(
            "a@b",
            vec!["ops@alerts.localhost".into()],
            "127.0.0.1:1".parse().unwrap(),
            "h",
        )
    }

    #[test]
    fn sanitize_removes_active_content() {
        let dirty = r#"<p onclick="x()">Hi<script>alert(1)</script><a href="javascript:alert(1)">l</a><img src="data:image/png;base64,AA" style="x:expression(1)"></p>"#;
        let clean = sanitize_html(dirty);
        for bad in [
            "<script",
            "onclick",
            "javascript:",
            "data:",
            "style=",
            "expression",
        ] {
            assert!(!clean.contains(bad), "{bad} survived in {clean}");
        }
        assert!(clean.contains("Hi"));
    }

    #[test]
    fn garbage_still_yields_data() {
        let d = parse(b"\x00\xff\xfe not a message", env());
        assert_eq!(d.to, "ops@alerts.localhost");
        assert_eq!(d.from, "a@b");
    }

    #[test]
    fn text_without_markup_is_returned_as_the_sanitizer_would() {
        let full = |t: &str| super::SANITIZER.clean(t).to_string();
        let mut cases: Vec<String> = (1u8..0x80)
            .map(|b| format!("a{}b", b as char))
            .filter(|t| !t.contains(['<', '>', '&', '\r', '\0']))
            .collect();
        cases.extend(
            [
                "Example Incident Description",
                "über straße 東京 🚨 \u{200b}\u{feff}\u{7f}\u{85}",
                "line one\nline two\n\ttabbed",
                "\"quoted\" 'single' = / ; : ? ! # % $ @ * + ( ) [ ] { } | \\ ^ ` ~",
                "javascript:alert(1) http://x.test/?a=b",
            ]
            .map(String::from),
        );
        for t in &cases {
            assert_eq!(sanitize_html(t), full(t), "{t:?}");
        }
        assert_eq!(sanitize_html("a\u{a0}b"), full("a\u{a0}b"));
        assert_eq!(sanitize_html("<script>x</script>y"), "y");
    }

    #[test]
    fn escape_html_escapes_exactly_three_characters() {
        let naive = |t: &str| {
            t.chars()
                .map(|c| match c {
                    '&' => "&amp;".to_string(),
                    '<' => "&lt;".to_string(),
                    '>' => "&gt;".to_string(),
                    c => c.to_string(),
                })
                .collect::<String>()
        };
        for t in [
            "",
            "plain",
            "<b>&amp;</b>",
            "é<ü>&ß",
            "&",
            "<<>>",
            "x>",
            "\"quotes\" 'stay'",
        ] {
            assert_eq!(escape_html(t), naive(t), "{t}");
        }
    }

    #[test]
    fn text_only_message() {
        let raw = b"From: Nagios <nagios@x.example>\r\nTo: ops@alerts.localhost, b@c\r\nSubject: =?UTF-8?Q?caf=C3=A9?=\r\nMessage-ID: <m1@x>\r\nIn-Reply-To: <m0@x>\r\n\r\nbody <b>not html</b>\r\n";
        let d = parse(raw, env());
        assert_eq!(d.from, "nagios@x.example");
        assert_eq!(d.to, "ops@alerts.localhost;b@c");
        assert_eq!(d.subject, "café");
        assert_eq!(d.message_id.as_deref(), Some("m1@x"));
        assert_eq!(d.in_reply_to.as_deref(), Some("m0@x"));
        assert!(d.text.contains("body <b>not html</b>"));
        assert_eq!(
            d.message, "body &lt;b&gt;not html&lt;/b&gt;\r\n",
            "plain text is escaped, not parsed"
        );
        assert_eq!(d.headers.get("Subject").map(String::as_str), Some("café"));
    }

    /// A multipart/related message: HTML naming two inline parts by Content-ID, a PNG and an
    /// SVG, and a PDF attachment.
    const RELATED: &str = "From: nas@x\r\nTo: ops@alerts.localhost\r\nSubject: Disk\r\n\
        MIME-Version: 1.0\r\nContent-Type: multipart/related; boundary=\"b\"\r\n\r\n\
        --b\r\nContent-Type: text/html\r\n\r\n\
        <p>Graph:<img src=\"cid:graph@nas\" alt=\"graph\"><img src=\"cid:logo@nas\"><img src=\"cid:gone@nas\"></p>\r\n\
        --b\r\nContent-Type: image/png; name=\"graph.png\"\r\nContent-ID: <graph@nas>\r\n\
        Content-Disposition: inline; filename=\"graph.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
        iVBORw0KGgo=\r\n\
        --b\r\nContent-Type: image/svg+xml\r\nContent-ID: <logo@nas>\r\n\r\n\
        <svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>\r\n\
        --b\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\n\
        Content-Disposition: attachment; filename=\"report.pdf\"\r\n\r\n%PDF-1.4\r\n\
        --b--\r\n";

    #[test]
    fn attachments_are_listed_and_inline_images_embed_within_the_budget() {
        let d = parse(RELATED.as_bytes(), env());
        let listed: Vec<(&str, &str, Option<&str>)> = d
            .attachments
            .iter()
            .map(|a| {
                (
                    a.name.as_str(),
                    a.content_type.as_str(),
                    a.content_id.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            listed,
            [
                ("graph.png", "image/png", Some("graph@nas")),
                ("", "image/svg+xml", Some("logo@nas")),
                ("report.pdf", "application/pdf", None),
            ]
        );
        assert_eq!(d.attachments[0].size, 8, "the decoded size");
        assert!(
            d.message.contains(r#"src="cid:graph@nas""#),
            "{}",
            d.message
        );

        let shown = embed_inline_images(&d.message, RELATED.as_bytes(), 1 << 20);
        assert!(
            shown.contains(r#"src="data:image/png;base64,iVBORw0KGgo=""#),
            "{shown}"
        );
        // An SVG could carry script: it keeps its cid: URL; so does a part that is not there.
        assert!(shown.contains(r#"src="cid:logo@nas""#) && shown.contains(r#"src="cid:gone@nas""#));
        // Over the budget, nothing is embedded.
        assert_eq!(
            embed_inline_images(&d.message, RELATED.as_bytes(), d.message.len()),
            d.message
        );
        // Percent-encoded cid: URLs (RFC 2392) name the same part.
        let encoded = d.message.replace("cid:graph@nas", "cid:graph%40nas");
        assert!(embed_inline_images(&encoded, RELATED.as_bytes(), 1 << 20).contains("base64,"));
        // Only sanitized src attributes are touched.
        assert_eq!(
            embed_inline_images("cid:graph@nas", RELATED.as_bytes(), 1 << 20),
            "cid:graph@nas"
        );
    }
}
