//! The loop and auto-reply guard: mail that no monitoring tool sends, and that must not become
//! an alert, is logged with outcome `ignored` and the reason. Auto-replies (RFC 3834
//! `Auto-Submitted: auto-replied`, `X-Autoreply`, `X-Autorespond`, `Precedence: auto_reply` or
//! `junk`), delivery status and disposition notifications (`multipart/report`), and mail that
//! carries this Siren's own loop header (every e-mail destination adds it), which would
//! otherwise page about its own pages forever. `Auto-Submitted: auto-generated` and
//! `Precedence: bulk` are what cron and monitoring tools send: such mail passes. Pure: no I/O.

use super::Event;
use crate::domain::Action;
use crate::email::EmailData;

/// The header every e-mail Siren sends carries, with its `smtp.hostname` as the value.
pub const LOOP_HEADER: &str = "X-Siren-Loop";

/// Why a message should change no alert, or `None` when it is an alert like any other.
/// `hostname` is this Siren's `smtp.hostname`; with `accept_auto_replies`, only the loop
/// header is checked.
pub fn check(data: &EmailData, hostname: &str, accept_auto_replies: bool) -> Option<String> {
    if header(data, LOOP_HEADER)
        .flat_map(|v| v.split([',', ' ', '\n']))
        .any(|v| v.trim().eq_ignore_ascii_case(hostname))
    {
        return Some(format!(
            "sent by this Siren ({LOOP_HEADER}: {hostname}): a loop"
        ));
    }
    if accept_auto_replies {
        return None;
    }
    if let Some(report) = report_type(data) {
        return Some(format!(
            "a {} (multipart/report; report-type={report}){}",
            if report == "delivery-status" {
                "delivery status notification"
            } else {
                "disposition notification (read receipt)"
            },
            null_sender(data)
        ));
    }
    for value in header(data, "Auto-Submitted") {
        let kind = token(value);
        if kind == "auto-replied" {
            return Some(format!(
                "an auto-reply (Auto-Submitted: {}){}",
                value.trim(),
                null_sender(data)
            ));
        }
    }
    for name in ["X-Autoreply", "X-Autorespond"] {
        if let Some(value) = header(data, name).next() {
            return Some(format!("an auto-reply ({name}: {})", value.trim()));
        }
    }
    for value in header(data, "Precedence") {
        if matches!(token(value).as_str(), "auto_reply" | "junk") {
            return Some(format!("an auto-reply (Precedence: {})", value.trim()));
        }
    }
    None
}

/// The event of a message the guard stopped: `other` (logged as `ignored`, no alert), with the
/// reason for the log.
pub fn ignored(data: EmailData, reason: String) -> Event {
    let id = super::email::default_id(&data);
    Event {
        reason: Some(format!("not an alert: {reason}")),
        ..Event::new(
            Action::Other,
            id,
            serde_json::to_value(&data).unwrap_or_default(),
        )
    }
}

/// The `report-type` of a `multipart/report` message when it is a delivery status or
/// disposition notification.
fn report_type(data: &EmailData) -> Option<&'static str> {
    let content_type = header(data, "Content-Type").next()?;
    let mut params = content_type.split(';');
    if !params
        .next()?
        .trim()
        .eq_ignore_ascii_case("multipart/report")
    {
        return None;
    }
    let report = params.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("report-type")
            .then(|| value.trim().trim_matches('"').to_ascii_lowercase())
    })?;
    match report.as_str() {
        "delivery-status" => Some("delivery-status"),
        "disposition-notification" => Some("disposition-notification"),
        _ => None,
    }
}

fn null_sender(data: &EmailData) -> &'static str {
    if data.envelope.mail_from.is_empty() {
        ", from the null sender"
    } else {
        ""
    }
}

/// The first word of a header value, lower case: `auto-replied (vacation)` -> `auto-replied`.
fn token(value: &str) -> String {
    value
        .split([';', '(', ' '])
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Every value of the header `name` (names compared ignoring case; repeated headers are
/// joined with a newline in the data).
fn header<'a>(data: &'a EmailData, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    data.headers
        .iter()
        .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split('\n'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::email::{Envelope, parse};

    fn mail(headers: &str, mail_from: &str) -> EmailData {
        let raw = format!("From: a@b\r\nTo: ops@x\r\nSubject: s\r\n{headers}\r\nbody\r\n");
        let envelope = Envelope {
            mail_from: mail_from.into(),
            ..Envelope::default()
        };
        parse(raw.as_bytes(), envelope)
    }

    #[test]
    fn what_is_ignored_by_table() {
        // (headers, envelope sender, reason or None when accepted)
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("", "n@x", None),
            ("Auto-Submitted: auto-generated\r\n", "cron@x", None),
            ("Auto-Submitted: no\r\n", "n@x", None),
            ("Precedence: bulk\r\n", "n@x", None),
            ("Precedence: list\r\n", "n@x", None),
            (
                "Auto-Submitted: auto-replied\r\n",
                "",
                Some("an auto-reply (Auto-Submitted: auto-replied), from the null sender"),
            ),
            (
                "Auto-Submitted: Auto-Replied (vacation)\r\nPrecedence: bulk\r\n",
                "j@x",
                Some("an auto-reply (Auto-Submitted: Auto-Replied (vacation))"),
            ),
            (
                "X-Autoreply: yes\r\n",
                "j@x",
                Some("an auto-reply (X-Autoreply: yes)"),
            ),
            (
                "x-autorespond: on\r\n",
                "j@x",
                Some("an auto-reply (X-Autorespond: on)"),
            ),
            (
                "Precedence: junk\r\n",
                "j@x",
                Some("an auto-reply (Precedence: junk)"),
            ),
            (
                "Precedence: auto_reply\r\n",
                "j@x",
                Some("an auto-reply (Precedence: auto_reply)"),
            ),
            (
                "Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n",
                "",
                Some(
                    "a delivery status notification (multipart/report; report-type=delivery-status), from the null sender",
                ),
            ),
            (
                "Content-Type: Multipart/Report; boundary=b;\r\n report-type=\"disposition-notification\"\r\n",
                "j@x",
                Some(
                    "a disposition notification (read receipt) (multipart/report; report-type=disposition-notification)",
                ),
            ),
            // Other reports (e.g. DMARC aggregate feedback) are not delivery reports.
            (
                "Content-Type: multipart/report; report-type=feedback-report; boundary=b\r\n",
                "j@x",
                None,
            ),
            (
                "X-Siren-Loop: siren.test\r\n",
                "siren@x",
                Some("sent by this Siren (X-Siren-Loop: siren.test): a loop"),
            ),
            // Another Siren's mail is an alert like any other: Sirens may be chained.
            ("X-Siren-Loop: siren.other\r\n", "siren@x", None),
        ];
        for (headers, from, want) in cases {
            let got = check(&mail(headers, from), "siren.test", false);
            assert_eq!(got.as_deref(), *want, "{headers:?}");
        }
    }

    #[test]
    fn accept_auto_replies_still_stops_loops() {
        let reply = mail("Auto-Submitted: auto-replied\r\n", "");
        assert_eq!(check(&reply, "siren.test", true), None);
        let dsn = mail(
            "Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n",
            "",
        );
        assert_eq!(check(&dsn, "siren.test", true), None);
        let looped = mail("X-Siren-Loop: SIREN.test\r\n", "");
        assert!(check(&looped, "siren.test", true).is_some());
    }
}
