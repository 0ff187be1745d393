//! JavaScript's value semantics over JSON values, as handlebars-helpers sees its arguments:
//! truthiness, `String(v)`, `Number(v)`, `==`, `<`, number formatting, and what handlebars.js
//! writes for a helper's result. Alert templates written for PagerTree rely on these.

use std::cmp::Ordering;

use serde_json::Value;

/// `!!v`: `[]`, `{}` and `"0"` are true; `0`, `NaN`, `""`, `false` and null are false.
pub(crate) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// handlebars.js's `isEmpty`, which `{{#if}}` and `{{#unless}}` use: falsy or an empty array.
/// So `{}` and `"0"` are not empty, and neither is `0` when `includeZero` is set.
pub(crate) fn hbs_empty(v: &Value, include_zero: bool) -> bool {
    match v {
        Value::Array(a) => a.is_empty(),
        Value::Number(n) if include_zero => n.as_f64().is_some_and(f64::is_nan),
        other => !truthy(other),
    }
}

/// `String(v)`, with null as the empty string (handlebars writes nothing for null and
/// undefined, and the two are one value here).
pub(crate) fn string(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number_string(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                if i.is_null() {
                    String::new()
                } else {
                    string(i)
                }
            })
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(_) => {
            super::regex::regex_text(v).unwrap_or_else(|| "[object Object]".to_string())
        }
    }
}

/// `Number(v)`: numeric text (trimmed, `""` is 0, `0x` hex, `Infinity`), booleans as 0 and 1,
/// null as 0, a one-element array as its element; anything else is NaN.
pub(crate) fn number(v: &Value) -> f64 {
    match v {
        Value::Null => 0.0,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) => parse_number(s),
        Value::Array(a) if a.is_empty() => 0.0,
        Value::Array(a) if a.len() == 1 => parse_number(&string(&a[0])),
        _ => f64::NAN,
    }
}

fn parse_number(s: &str) -> f64 {
    let t = s.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if t.is_empty() {
        return 0.0;
    }
    let radix = |p: &str, r| {
        t.strip_prefix(p)
            .or_else(|| t.strip_prefix(&p.to_uppercase()))
            .map(|d| {
                u64::from_str_radix(d, r)
                    .map(|n| n as f64)
                    .unwrap_or(f64::NAN)
            })
    };
    if let Some(n) = radix("0x", 16)
        .or_else(|| radix("0o", 8))
        .or_else(|| radix("0b", 2))
    {
        return n;
    }
    match t.trim_start_matches(['+', '-']) {
        "Infinity" => {
            return if t.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            };
        }
        rest if rest.is_empty() || !rest.starts_with(|c: char| c.is_ascii_digit() || c == '.') => {
            return f64::NAN;
        }
        _ => {}
    }
    if t.contains(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E') {
        return f64::NAN;
    }
    t.parse::<f64>().unwrap_or(f64::NAN)
}

/// `parseFloat(String(v))`: the longest numeric prefix, else NaN.
pub(crate) fn parse_float(v: &Value) -> f64 {
    let s = string(v);
    let t = s.trim_start();
    if let Some(rest) = t.strip_prefix("Infinity").or(t.strip_prefix("+Infinity")) {
        let _ = rest;
        return f64::INFINITY;
    }
    if t.starts_with("-Infinity") {
        return f64::NEG_INFINITY;
    }
    let b = t.as_bytes();
    let mut end = 0;
    let mut best = None;
    if end < b.len() && (b[end] == b'+' || b[end] == b'-') {
        end += 1;
    }
    let mut digits = false;
    while end < b.len() && b[end].is_ascii_digit() {
        end += 1;
        digits = true;
        best = Some(end);
    }
    if end < b.len() && b[end] == b'.' {
        end += 1;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
            digits = true;
            best = Some(end);
        }
    }
    if digits && end < b.len() && (b[end] == b'e' || b[end] == b'E') {
        let mut e = end + 1;
        if e < b.len() && (b[e] == b'+' || b[e] == b'-') {
            e += 1;
        }
        let start = e;
        while e < b.len() && b[e].is_ascii_digit() {
            e += 1;
        }
        if e > start {
            best = Some(e);
        }
    }
    match best {
        Some(end) => t[..end].parse().unwrap_or(f64::NAN),
        None => f64::NAN,
    }
}

/// `parseInt(String(v), 10)`.
pub(crate) fn parse_int(v: &Value) -> f64 {
    let s = string(v);
    let t = s.trim_start();
    let (sign, digits) = match t.as_bytes().first() {
        Some(b'-') => (-1.0, &t[1..]),
        Some(b'+') => (1.0, &t[1..]),
        _ => (1.0, t),
    };
    let n: String = digits.chars().take_while(char::is_ascii_digit).collect();
    if n.is_empty() {
        return f64::NAN;
    }
    sign * n.parse::<f64>().unwrap_or(f64::NAN)
}

/// is-number: a finite number, or text that trims to one.
pub(crate) fn is_number(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.as_f64().is_some_and(f64::is_finite),
        Value::String(s) if !s.trim().is_empty() => parse_number(s).is_finite(),
        _ => false,
    }
}

/// A number as JavaScript prints it: `5`, `0.30000000000000004`, `1e+21`, `1e-7`, `NaN`.
pub(crate) fn number_string(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f == 0.0 {
        return "0".into();
    }
    // Shortest round-trip digits and exponent, from Rust's own formatting.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let k = digits.len() as i32;
    let n = exp.parse::<i32>().unwrap_or(0) + 1;
    let sign = if f < 0.0 { "-" } else { "" };
    let body = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let e = n - 1;
        let e = if e >= 0 {
            format!("+{e}")
        } else {
            e.to_string()
        };
        if k == 1 {
            format!("{digits}e{e}")
        } else {
            format!("{}.{}e{e}", &digits[..1], &digits[1..])
        }
    };
    format!("{sign}{body}")
}

/// A JavaScript number as a JSON value: whole numbers as integers, NaN and infinities as
/// their text (JSON has no place for them).
pub(crate) fn num(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        if f == 0.0 {
            return Value::from(0);
        }
        return Value::from(f as i64);
    }
    serde_json::Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(number_string(f)))
}

/// `typeof v`-like kind names of kind-of: `null`, `boolean`, `number`, `string`, `array`,
/// `object`.
pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "undefined",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `a === b` (arrays and objects compare by content: the same data is the same object).
pub(crate) fn strict_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// `a == b`.
pub(crate) fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array(_) | Value::Object(_), Value::Array(_) | Value::Object(_)) => a == b,
        (Value::Array(_) | Value::Object(_), Value::String(s))
        | (Value::String(s), Value::Array(_) | Value::Object(_)) => {
            let other = if a.is_string() { b } else { a };
            string(other) == *s
        }
        _ => {
            let prim = |v: &Value| match v {
                Value::Array(_) | Value::Object(_) => Value::String(string(v)),
                other => other.clone(),
            };
            number(&prim(a)) == number(&prim(b))
        }
    }
}

/// `a < b` and friends: text with text compares by UTF-16 code units, anything else as
/// numbers (NaN compares as nothing, so every comparison is false).
pub(crate) fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    let prim = |v: &Value| match v {
        Value::Array(_) | Value::Object(_) => Value::String(string(v)),
        other => other.clone(),
    };
    let (a, b) = (prim(a), prim(b));
    if let (Value::String(x), Value::String(y)) = (&a, &b) {
        return Some(x.encode_utf16().cmp(y.encode_utf16()));
    }
    number(&a).partial_cmp(&number(&b))
}

pub(crate) fn lt(a: &Value, b: &Value) -> bool {
    compare(a, b) == Some(Ordering::Less)
}

pub(crate) fn gt(a: &Value, b: &Value) -> bool {
    compare(a, b) == Some(Ordering::Greater)
}

pub(crate) fn lte(a: &Value, b: &Value) -> bool {
    matches!(compare(a, b), Some(Ordering::Less | Ordering::Equal))
}

pub(crate) fn gte(a: &Value, b: &Value) -> bool {
    matches!(compare(a, b), Some(Ordering::Greater | Ordering::Equal))
}

/// The length of text as JavaScript counts it (UTF-16 code units).
pub(crate) fn len16(s: &str) -> usize {
    s.encode_utf16().count()
}

/// `s.slice(start, end)` with JavaScript's negative indices, over UTF-16 code units.
pub(crate) fn slice16(s: &str, start: f64, end: Option<f64>) -> String {
    let units: Vec<u16> = s.encode_utf16().collect();
    let (a, b) = slice_bounds(units.len(), start, end);
    String::from_utf16_lossy(&units[a..b])
}

/// The `[a, b)` range `slice(start, end)` picks from `len` items.
pub(crate) fn slice_bounds(len: usize, start: f64, end: Option<f64>) -> (usize, usize) {
    let at = |x: f64| -> usize {
        let x = if x.is_nan() { 0.0 } else { x.trunc() };
        if x < 0.0 {
            (len as f64 + x).max(0.0) as usize
        } else {
            x.min(len as f64) as usize
        }
    };
    let a = at(start);
    let b = end.map_or(len, at);
    (a, b.max(a))
}

/// `JSON.stringify(v, null, indent)`, keys in their order.
pub(crate) fn stringify(v: &Value, indent: usize) -> String {
    let mut out = String::new();
    write_json(v, indent.min(10), 0, &mut out);
    out
}

fn write_json(v: &Value, indent: usize, depth: usize, out: &mut String) {
    let newline = |out: &mut String, depth: usize| {
        if indent > 0 {
            out.push('\n');
            out.push_str(&" ".repeat(indent * depth));
        }
    };
    match v {
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            out.push_str(&if f.is_finite() {
                number_string(f)
            } else {
                "null".into()
            });
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                write_json(item, indent, depth + 1, out);
            }
            newline(out, depth);
            out.push(']');
        }
        Value::Object(map) if !map.is_empty() => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if indent > 0 {
                    out.push(' ');
                }
                write_json(item, indent, depth + 1, out);
            }
            newline(out, depth);
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}
