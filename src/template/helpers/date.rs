//! Date helpers: handlebars-helpers' `year`, `date` and `moment` (moment.js format tokens,
//! English, UTC; numbers are milliseconds as moment reads them), and Siren's `formatDate`
//! (strftime-style) and `now`. Timestamps are read from RFC 3339, RFC 2822, `YYYY-MM-DD`
//! (with an optional ` HH:mm[:ss]`) text and unix time.

use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use serde_json::Value;

use super::{js, number, optional_text, type_name};
use crate::template::registry::{Call, Spec, spec};

/// `formatDate` without a format, and `now` without one.
const DEFAULT_DATE_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

pub(in crate::template) const HELPERS: &[Spec] = &[
    spec("year", 0, 1, |c| {
        let year = jiff::Timestamp::now()
            .to_zoned_datetime(TimeZone::UTC)
            .year()
            .to_string();
        Ok(match c.arg(0).as_str() {
            None => year.into(),
            Some(p) if p.to_lowercase().contains("yyyy") => year.into(),
            Some(p) if p.to_lowercase().contains("yy") => year[2..].to_string().into(),
            Some(_) => Value::Null,
        })
    })
    .missing_ok()
    .doc(
        "the current year (`YY` for two digits)",
        "{{length (year)}}",
        "4",
    ),
    spec("date", 0, 2, moment).missing_ok().doc(
        "a date formatted with moment.js tokens (`YYYY-MM-DD HH:mm`), in UTC or `tz=\"Europe/Paris\"`",
        "{{date data.started \"YYYY-MM-DD HH:mm\"}}",
        "2024-07-15 16:24",
    ),
    spec("moment", 0, 2, moment).missing_ok().doc(
        "`date` by another name",
        "{{moment data.started \"dddd, MMMM Do YYYY, h:mm a\"}}",
        "Monday, July 15th 2024, 4:24 pm",
    ),
    // Siren's own.
    spec("formatDate", 1, 2, |c| {
        let format = optional_text(c, 1, DEFAULT_DATE_FORMAT)?;
        Ok(format_date(timestamp(c.arg(0))?, &format, &zone_arg(c)?)?.into())
    })
    .doc(
        "Siren: a date formatted strftime-style (default RFC 3339), in UTC or `tz=`",
        "{{formatDate data.started \"%d %b %Y %H:%M %Z\"}}",
        "15 Jul 2024 16:24 UTC",
    )
    .named(),
    spec("now", 0, 1, |c| {
        let format = optional_text(c, 0, DEFAULT_DATE_FORMAT)?;
        Ok(format_date(jiff::Timestamp::now(), &format, &zone_arg(c)?)?.into())
    })
    .doc(
        "Siren: the current time, formatted as `formatDate` does",
        "{{length (now \"%Y\")}}",
        "4",
    )
    .named(),
];

fn moment(c: &Call<'_>) -> Result<Value, String> {
    let tz = zone_arg(c)?;
    let (input, pattern) = (c.arg(0), c.arg(1));
    if input.is_null() && pattern.is_null() {
        return Ok(format_moment(jiff::Timestamp::now(), "MMMM DD, YYYY", &tz).into());
    }
    let ts = match (input, pattern) {
        (Value::String(s), Value::Null) => {
            return Ok(format_moment(jiff::Timestamp::now(), s, &tz).into());
        }
        (Value::Number(n), _) => {
            let ms = n.as_f64().unwrap_or(f64::NAN);
            if !ms.is_finite() || ms.abs() > 8.64e15 {
                return Ok("Invalid date".into());
            }
            jiff::Timestamp::from_millisecond(ms as i64).map_err(|e| e.to_string())?
        }
        (Value::String(s), _) => match parse_text(s) {
            Some(ts) => ts,
            None => return Ok("Invalid date".into()),
        },
        (Value::Null, _) => jiff::Timestamp::now(),
        (other, _) => return Err(format!("expects a date, got {}", type_name(other))),
    };
    let pattern = match pattern {
        Value::Null => "YYYY-MM-DDTHH:mm:ssZ".to_string(),
        p => js::string(p),
    };
    Ok(format_moment(ts, &pattern, &tz).into())
}

/// RFC 3339, RFC 2822, or `YYYY-MM-DD[ HH:mm[:ss]]` (UTC).
fn parse_text(s: &str) -> Option<jiff::Timestamp> {
    let s = s.trim();
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Some(ts);
    }
    if let Ok(ts) = jiff::fmt::rfc2822::DateTimeParser::new().parse_timestamp(s) {
        return Some(ts);
    }
    let civil = s.parse::<jiff::civil::DateTime>().ok().or_else(|| {
        s.parse::<jiff::civil::Date>()
            .ok()
            .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
    })?;
    civil
        .to_zoned_datetime(TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// moment's tokens, longest first; `[…]` is literal text.
const TOKENS: &[&str] = &[
    "YYYYYY",
    "YYYYY",
    "YYYY",
    "MMMM",
    "dddd",
    "DDDD",
    "SSSSSSSSS",
    "SSSSSSSS",
    "SSSSSSS",
    "SSSSSS",
    "SSSSS",
    "SSSS",
    "GGGG",
    "gggg",
    "DDDo",
    "MMM",
    "ddd",
    "DDD",
    "SSS",
    "Mo",
    "MM",
    "Do",
    "DD",
    "do",
    "dd",
    "wo",
    "ww",
    "Wo",
    "WW",
    "Qo",
    "YY",
    "GG",
    "gg",
    "hh",
    "HH",
    "kk",
    "mm",
    "ss",
    "SS",
    "ZZ",
    "zz",
    "M",
    "D",
    "d",
    "w",
    "W",
    "Q",
    "Y",
    "e",
    "E",
    "a",
    "A",
    "h",
    "H",
    "k",
    "m",
    "s",
    "S",
    "x",
    "X",
    "Z",
    "z",
];

/// English long-date formats (`LT`, `LL`…).
fn long_format(t: &str) -> Option<&'static str> {
    Some(match t {
        "LTS" => "h:mm:ss A",
        "LT" => "h:mm A",
        "LLLL" => "dddd, MMMM D, YYYY h:mm A",
        "LLL" => "MMMM D, YYYY h:mm A",
        "LL" => "MMMM D, YYYY",
        "L" => "MM/DD/YYYY",
        "llll" => "ddd, MMM D, YYYY h:mm A",
        "lll" => "MMM D, YYYY h:mm A",
        "ll" => "MMM D, YYYY",
        "l" => "M/D/YYYY",
        _ => return None,
    })
}

/// Pieces of a format: `(true, token)` or `(false, literal)`.
pub(in crate::template) fn tokenize(format: &str) -> Vec<(bool, String)> {
    let mut expanded = String::new();
    let mut rest = format;
    'outer: while !rest.is_empty() {
        if rest.starts_with('[')
            && let Some(end) = rest.find(']')
        {
            expanded.push_str(&rest[..=end]);
            rest = &rest[end + 1..];
            continue;
        }
        for t in [
            "LTS", "LT", "LLLL", "LLL", "LL", "L", "llll", "lll", "ll", "l",
        ] {
            if let Some(r) = rest.strip_prefix(t) {
                expanded.push_str(long_format(t).unwrap_or_default());
                rest = r;
                continue 'outer;
            }
        }
        let ch = rest.chars().next().unwrap_or_default();
        expanded.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    let mut out = Vec::new();
    let mut rest = expanded.as_str();
    'tokens: while !rest.is_empty() {
        if rest.starts_with('[')
            && let Some(end) = rest.find(']')
        {
            out.push((false, rest[1..end].to_string()));
            rest = &rest[end + 1..];
            continue;
        }
        if let Some(r) = rest.strip_prefix('\\') {
            let ch = r.chars().next().unwrap_or_default();
            out.push((false, ch.to_string()));
            rest = &r[ch.len_utf8().min(r.len())..];
            continue;
        }
        for t in TOKENS {
            if let Some(r) = rest.strip_prefix(t) {
                out.push((true, t.to_string()));
                rest = r;
                continue 'tokens;
            }
        }
        let ch = rest.chars().next().unwrap_or_default();
        out.push((false, ch.to_string()));
        rest = &rest[ch.len_utf8()..];
    }
    out
}

fn ordinal(n: i64) -> String {
    let suffix = match (n % 100, n % 10) {
        (11..=13, _) => "th",
        (_, 1) => "st",
        (_, 2) => "nd",
        (_, 3) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// moment's `weekOfYear` for a week starting on `dow` whose first week holds January `7 + dow - doy`.
fn week_of_year(date: jiff::civil::Date, dow: i64, doy: i64) -> (i64, i64) {
    let first_offset = |year: i16| {
        let fwd = 7 + dow - doy;
        let jan = jiff::civil::date(year, 1, fwd as i8);
        let fwdlw = (7 + i64::from(jan.weekday().to_sunday_zero_offset()) - dow) % 7;
        -fwdlw + fwd - 1
    };
    let weeks_in = |year: i16| {
        let days = if jiff::civil::date(year, 12, 31).day_of_year() == 366 {
            366
        } else {
            365
        };
        (days - first_offset(year) + first_offset(year + 1)) / 7
    };
    let year = date.year();
    let week = (i64::from(date.day_of_year()) - first_offset(year) - 1).div_euclid(7) + 1;
    if week < 1 {
        (week + weeks_in(year - 1), i64::from(year) - 1)
    } else if week > weeks_in(year) {
        (week - weeks_in(year), i64::from(year) + 1)
    } else {
        (week, i64::from(year))
    }
}

/// A timestamp in `tz` with moment's tokens, English names.
pub(in crate::template) fn format_moment(
    ts: jiff::Timestamp,
    format: &str,
    tz: &TimeZone,
) -> String {
    let z = ts.to_zoned_datetime(tz.clone());
    let offset = z.offset().seconds();
    let (sign, off_h, off_m) = (
        if offset < 0 { '-' } else { '+' },
        offset.abs() / 3600,
        offset.abs() % 3600 / 60,
    );
    let d = z.date();
    let (year, month, day) = (
        i64::from(z.year()),
        i64::from(z.month()),
        i64::from(z.day()),
    );
    let (hour, minute, second) = (
        i64::from(z.hour()),
        i64::from(z.minute()),
        i64::from(z.second()),
    );
    let wd = i64::from(z.weekday().to_sunday_zero_offset());
    let h12 = if hour % 12 == 0 { 12 } else { hour % 12 };
    let nanos = format!("{:09}", z.subsec_nanosecond());
    let pad = |n: i64, w: usize| format!("{n:0w$}");
    let mut out = String::new();
    for (token, piece) in tokenize(format) {
        if !token {
            out.push_str(&piece);
            continue;
        }
        let s = match piece.as_str() {
            "YYYYYY" => format!("{}{:06}", if year < 0 { "-" } else { "+" }, year.abs()),
            "YYYYY" => pad(year, 5),
            "YYYY" => pad(year, 4),
            "YY" => pad(year % 100, 2),
            "Y" => {
                if year > 9999 {
                    format!("+{year}")
                } else {
                    year.to_string()
                }
            }
            "Q" => ((month + 2) / 3).to_string(),
            "Qo" => ordinal((month + 2) / 3),
            "M" => month.to_string(),
            "Mo" => ordinal(month),
            "MM" => pad(month, 2),
            "MMM" => MONTHS[(month - 1) as usize][..3].to_string(),
            "MMMM" => MONTHS[(month - 1) as usize].to_string(),
            "D" => day.to_string(),
            "Do" => ordinal(day),
            "DD" => pad(day, 2),
            "DDD" => d.day_of_year().to_string(),
            "DDDo" => ordinal(i64::from(d.day_of_year())),
            "DDDD" => pad(i64::from(d.day_of_year()), 3),
            "d" | "e" => wd.to_string(),
            "do" => ordinal(wd),
            "dd" => DAYS[wd as usize][..2].to_string(),
            "ddd" => DAYS[wd as usize][..3].to_string(),
            "dddd" => DAYS[wd as usize].to_string(),
            "E" => (if z.weekday() == Weekday::Sunday {
                7
            } else {
                wd
            })
            .to_string(),
            "H" => hour.to_string(),
            "HH" => pad(hour, 2),
            "h" => h12.to_string(),
            "hh" => pad(h12, 2),
            "k" => (if hour == 0 { 24 } else { hour }).to_string(),
            "kk" => pad(if hour == 0 { 24 } else { hour }, 2),
            "m" => minute.to_string(),
            "mm" => pad(minute, 2),
            "s" => second.to_string(),
            "ss" => pad(second, 2),
            "a" => (if hour < 12 { "am" } else { "pm" }).to_string(),
            "A" => (if hour < 12 { "AM" } else { "PM" }).to_string(),
            "Z" => format!("{sign}{off_h:02}:{off_m:02}"),
            "ZZ" => format!("{sign}{off_h:02}{off_m:02}"),
            "z" | "zz" => String::new(),
            "X" => ts.as_second().to_string(),
            "x" => ts.as_millisecond().to_string(),
            s if s.starts_with('S') => nanos[..s.len()].to_string(),
            other => week_token(other, d).unwrap_or_else(|| other.to_string()),
        };
        out.push_str(&s);
    }
    out
}

/// moment's week and week-year tokens (locale weeks from Sunday, ISO weeks from Monday).
fn week_token(token: &str, d: jiff::civil::Date) -> Option<String> {
    let pad = |n: i64, w: usize| format!("{n:0w$}");
    Some(match token {
        "w" => week_of_year(d, 0, 6).0.to_string(),
        "wo" => ordinal(week_of_year(d, 0, 6).0),
        "ww" => pad(week_of_year(d, 0, 6).0, 2),
        "W" => week_of_year(d, 1, 4).0.to_string(),
        "Wo" => ordinal(week_of_year(d, 1, 4).0),
        "WW" => pad(week_of_year(d, 1, 4).0, 2),
        "gg" => pad(week_of_year(d, 0, 6).1 % 100, 2),
        "gggg" => pad(week_of_year(d, 0, 6).1, 4),
        "GG" => pad(week_of_year(d, 1, 4).1 % 100, 2),
        "GGGG" => pad(week_of_year(d, 1, 4).1, 4),
        _ => return None,
    })
}

/// A literal format that prints itself: for the start-up check.
pub(in crate::template) fn moment_format_is_literal(format: &str) -> bool {
    !tokenize(format).iter().any(|(token, _)| *token)
}

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

/// strftime-style, in `tz`.
pub(in crate::template) fn format_date(
    ts: jiff::Timestamp,
    format: &str,
    tz: &TimeZone,
) -> Result<String, String> {
    let zoned = ts.to_zoned_datetime(tz.clone());
    jiff::fmt::strtime::format(format, &zoned)
        .map_err(|e| format!("cannot format a date with \"{format}\": {e}"))
}

/// A time zone by IANA name (`Europe/Paris`, from the system's database) or as a fixed offset
/// (`+02:00`, `-0530`, `Z`).
pub(in crate::template) fn zone(name: &str) -> Result<TimeZone, String> {
    let name = name.trim();
    if name.eq_ignore_ascii_case("utc") || name == "Z" {
        return Ok(TimeZone::UTC);
    }
    if let Some(rest) = name.strip_prefix(['+', '-']) {
        let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
        let ok = digits.len() == 4 && rest.len() <= 5;
        let (h, m) = (
            digits.get(..2).and_then(|h| h.parse::<i32>().ok()),
            digits.get(2..).and_then(|m| m.parse::<i32>().ok()),
        );
        if let (true, Some(h), Some(m)) = (ok, h, m)
            && h < 24
            && m < 60
        {
            let sign = if name.starts_with('-') { -1 } else { 1 };
            let offset = jiff::tz::Offset::from_seconds(sign * (h * 3600 + m * 60))
                .map_err(|e| e.to_string())?;
            return Ok(TimeZone::fixed(offset));
        }
        return Err(format!(
            "the time zone \"{name}\" is not an offset like +02:00"
        ));
    }
    TimeZone::get(name).map_err(|_| format!("unknown time zone \"{name}\"; use an IANA name such as Europe/Paris or an offset such as +02:00"))
}

/// The `tz=` argument: UTC unless one is given.
fn zone_arg(c: &Call<'_>) -> Result<TimeZone, String> {
    match c.hash("tz") {
        Value::Null => Ok(TimeZone::UTC),
        v => zone(&js::string(v)),
    }
}
