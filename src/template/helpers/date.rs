//! Date helpers: reading timestamps (RFC 3339, RFC 2822, unix seconds or milliseconds) and
//! formatting them strftime-style in UTC.

use serde_json::Value;

use super::{number, optional_text, type_name};
use crate::template::registry::{Spec, spec};

/// `formatDate` without a format, and `now` without one.
const DEFAULT_DATE_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

pub(in crate::template) const HELPERS: &[Spec] = &[
    spec("formatDate", 1, 2, |c| {
        let format = optional_text(c, 1, DEFAULT_DATE_FORMAT)?;
        Ok(format_date(timestamp(c.arg(0))?, &format)?.into())
    })
    .doc(
        "a date formatted strftime-style in UTC (default RFC 3339)",
        "{{formatDate data.started \"%d %b %Y %H:%M %Z\"}}",
        "15 Jul 2024 16:24 UTC",
    ),
    spec("now", 0, 1, |c| {
        let format = optional_text(c, 0, DEFAULT_DATE_FORMAT)?;
        Ok(format_date(jiff::Timestamp::now(), &format)?.into())
    })
    .doc(
        "the current time, formatted as `formatDate` does",
        "{{length (now \"%Y\")}}",
        "4",
    ),
];

/// RFC 3339 text (`2024-07-15T16:24:59Z`), RFC 2822 text (an e-mail `Date:`), or unix time as a
/// number or numeric text: seconds, or milliseconds when larger than 10^11 (year 5138 in
/// seconds).
fn timestamp(v: &Value) -> Result<jiff::Timestamp, String> {
    const MS_FROM: f64 = 1e11;
    let unix = |x: f64| {
        let ms = if x.abs() >= MS_FROM { x } else { x * 1000.0 };
        if !ms.is_finite() || ms.abs() > 1e15 {
            return Err(format!("{x} is out of range for a date"));
        }
        jiff::Timestamp::from_millisecond(ms.round() as i64).map_err(|e| e.to_string())
    };
    match v {
        Value::Number(_) => unix(number(v)?.float()),
        Value::String(s) => {
            let s = s.trim();
            let numeric = !s.is_empty()
                && s.trim_start_matches('-')
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.');
            if numeric && let Ok(n) = number(v) {
                return unix(n.float());
            }
            s.parse::<jiff::Timestamp>()
                .or_else(|_| jiff::fmt::rfc2822::DateTimeParser::new().parse_timestamp(s))
                .map_err(|_| {
                    format!(
                        "cannot read \"{s}\" as a date; use RFC 3339 text or unix seconds or milliseconds"
                    )
                })
        }
        other => Err(format!("expects a date, got {}", type_name(other))),
    }
}

/// strftime-style, in UTC.
pub(in crate::template) fn format_date(
    ts: jiff::Timestamp,
    format: &str,
) -> Result<String, String> {
    let utc = ts.to_zoned_datetime(jiff::tz::TimeZone::UTC);
    jiff::fmt::strtime::format(format, &utc)
        .map_err(|e| format!("cannot format a date with \"{format}\": {e}"))
}
