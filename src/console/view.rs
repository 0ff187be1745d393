//! What the templates share: the layout's data ([`Chrome`]), times as the pages show them
//! ([`When`]), and small formatting helpers. Values are turned into plain strings here; the
//! templates escape them.

use askama::Template;
use axum::response::{Html, IntoResponse, Response};

use super::ConsoleError;
use super::session::Visitor;
use crate::store::{AlertEvent, Outcome, ResolvedBy, Status};

/// The layout's data: the title, which section is current, and the log-out form.
pub struct Chrome {
    pub title: String,
    /// `alerts`, `integrations`, `outbox`, or empty.
    pub section: &'static str,
    /// The CSRF token of the log-out form (empty when there is no form).
    pub csrf: String,
    pub logout: bool,
}

impl Chrome {
    pub fn new(title: impl Into<String>, section: &'static str, visitor: &Visitor) -> Self {
        Chrome {
            title: title.into(),
            section,
            csrf: visitor.csrf.clone(),
            logout: visitor.logged_in,
        }
    }

    /// For pages shown before anything is known of the visitor (errors, login).
    pub fn bare(title: impl Into<String>) -> Self {
        Chrome {
            title: title.into(),
            section: "",
            csrf: String::new(),
            logout: false,
        }
    }
}

/// A time as pages show it: `<time datetime=iso title=utc>utc</time>`, which the script turns
/// into the viewer's time zone (the UTC value stays in the title).
pub struct When {
    pub iso: String,
    pub utc: String,
    /// How long ago, e.g. `5m`; empty for times in the future.
    pub ago: String,
}

impl When {
    pub fn at(ms: u64, now_ms: u64) -> When {
        let t = i64::try_from(ms)
            .ok()
            .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        When {
            iso: crate::store::rfc3339_ms(ms),
            utc: t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
            ago: if ms <= now_ms {
                age(now_ms - ms)
            } else {
                String::new()
            },
        }
    }

    pub fn opt(ms: Option<u64>, now_ms: u64) -> Option<When> {
        ms.map(|ms| When::at(ms, now_ms))
    }

    /// From an RFC 3339 string as stored in log entries.
    pub fn parse(rfc3339: &str, now_ms: u64) -> When {
        let ms = rfc3339
            .parse::<jiff::Timestamp>()
            .map(|t| u64::try_from(t.as_millisecond()).unwrap_or(0))
            .unwrap_or(0);
        When::at(ms, now_ms)
    }
}

/// A short age: `45s`, `12m`, `3h`, `9d`.
pub fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

pub fn now_ms() -> u64 {
    crate::store::unix_ms(crate::clock::now())
}

/// The JSON name of a value (`acknowledged`, `user`, ...), as the API spells it.
pub fn name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

pub fn status(s: Status) -> String {
    name(&s)
}

pub fn outcome(o: Option<Outcome>) -> String {
    o.map(|o| name(&o)).unwrap_or_default()
}

/// A timeline line for a change without a log entry: "Acknowledged by a user".
pub fn change(event: AlertEvent, by: ResolvedBy) -> String {
    let what = match event {
        AlertEvent::Acknowledge => "Acknowledged",
        AlertEvent::Resolve => "Resolved",
        AlertEvent::Create => "Created",
        AlertEvent::Aggregate => "Aggregated",
    };
    let who = match by {
        ResolvedBy::User => "by a user",
        ResolvedBy::Auto => "by auto resolve",
        ResolvedBy::Integration => "by the integration",
    };
    format!("{what} {who}")
}

/// Bytes as `812 B`, `14.2 KiB`, `3.1 MiB`.
pub fn size(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
    }
}

/// A query string (`?a=1&b=2`) of the non-empty pairs, percent-encoded; empty when none is.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        s.append_pair(k, v);
    }
    let q = s.finish();
    if q.is_empty() { q } else { format!("?{q}") }
}

/// A template rendered into a 200 HTML response.
pub fn page(t: &impl Template) -> Result<Response, ConsoleError> {
    Ok(Html(t.render()?).into_response())
}

/// An empty form value means "not given" (a filter form sends every field).
pub fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// `?limit=` of a console list: 50 unless given, 1 to 1000 as in the API.
pub fn limit(v: Option<usize>) -> Result<usize, ConsoleError> {
    match v {
        None => Ok(50),
        Some(n @ 1..=1000) => Ok(n),
        Some(n) => Err(ConsoleError::bad_request(format!(
            "limit {n} is out of range; allowed: 1 to 1000"
        ))),
    }
}

/// `?cursor=`: the `next` of the page before.
pub fn cursor(v: &Option<String>) -> Result<Option<u64>, ConsoleError> {
    given(v)
        .map(|c| {
            c.parse()
                .map_err(|_| ConsoleError::bad_request(format!("cursor \"{c}\" is not valid")))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_sizes_read_well() {
        let w = When::at(1_700_000_000_123, 1_700_000_360_123);
        assert_eq!(w.iso, "2023-11-14T22:13:20.123Z");
        assert_eq!(w.utc, "2023-11-14 22:13:20 UTC");
        assert_eq!(w.ago, "6m");
        assert_eq!(age(59_999), "59s");
        assert_eq!(age(90_000_000), "1d");
        assert_eq!(size(2048), "2.0 KiB");
        assert_eq!(
            query(&[("q", "a&b c"), ("status", "")]),
            "?q=a%26b+c".to_string()
        );
        assert_eq!(query(&[("status", "")]), "");
    }
}
