//! Comparison helpers of handlebars-helpers: JavaScript's `===`, `==`, `<` and truthiness.
//! Inline each is a boolean (or a value); as a block it renders the block when true and the
//! `else` part otherwise.

use serde_json::Value;

use super::js;
use crate::template::registry::{Call, Spec, spec};

/// `b`, or the `compare=` argument when only `a` is given.
fn other<'a>(c: &'a Call<'_>) -> &'a Value {
    if c.args.len() >= 2 {
        c.arg(1)
    } else {
        c.hash("compare")
    }
}

fn binary(c: &Call<'_>, f: fn(&Value, &Value) -> bool) -> Result<Value, String> {
    Ok(f(c.arg(0), other(c)).into())
}

/// `===` and `!==` tell undefined (a missing field) from null.
fn strict(c: &Call<'_>, equal: bool) -> Result<Value, String> {
    let b_missing = if c.args.len() >= 2 {
        c.is_missing(1)
    } else {
        c.hash("compare").is_null()
    };
    let same =
        js::strict_eq(c.arg(0), other(c)) && (!c.arg(0).is_null() || c.is_missing(0) == b_missing);
    Ok((same == equal).into())
}

pub(in crate::template) const HELPERS: &[Spec] = &[
    spec("and", 0, 0, |c| Ok(c.args.iter().all(|v| js::truthy(v)).into()))
        .variadic()
        .missing_ok().branches()
        .doc(
            "`true` when every argument is truthy",
            "{{#and data.host data.tags}}both{{else}}not both{{/and}}",
            "both",
        ),
    spec("compare", 3, 3, compare).missing_ok().branches().doc(
        "`a operator b` with `==`, `===`, `!=`, `!==`, `<`, `>`, `<=`, `>=` or `typeof`",
        "{{compare data.count \"==\" 12}}",
        "true",
    ),
    spec("contains", 2, 3, contains).missing_ok().branches().doc(
        "`true` when text or an array contains the value (from `startIndex`)",
        "{{#contains data.tags \"prod\"}}production{{/contains}}",
        "production",
    ),
    spec("default", 1, 1, |c| {
        let found = c.args.iter().find(|v| !v.is_null());
        Ok(found.map_or(Value::from(""), |v| (*v).clone()))
    })
    .variadic()
    .missing_ok()
    .doc(
        "the first argument that is not null or missing (`\"\"` counts as a value)",
        "{{default data.runbook \"none\"}}",
        "none",
    ),
    spec("eq", 1, 2, |c| strict(c, true))
        .missing_ok().branches()
        .doc(
            "`a === b` (`\"12\"` is not `12`)",
            "{{#eq data.severity \"critical\"}}page{{/eq}}",
            "page",
        ),
    spec("gt", 1, 2, |c| binary(c, js::gt))
        .missing_ok().branches()
        .doc("`a > b`", "{{gt data.count 10}}", "true"),
    spec("gte", 1, 2, |c| binary(c, js::gte))
        .missing_ok().branches()
        .doc("`a >= b`", "{{gte data.load 7.25}}", "true"),
    spec("has", 0, 2, has).missing_ok().branches().doc(
        "`true` when text or an array contains `pattern`, or an object has the key",
        "{{has data.labels \"alertname\"}}",
        "true",
    ),
    spec("isFalsey", 1, 1, |c| Ok(falsey(c.arg(0)).into()))
        .missing_ok().branches()
        .doc(
            "`true` for falsy values, empty arrays and objects, and \"no\", \"none\", \"0\", \"false\"…",
            "{{isFalsey data.empty}}",
            "true",
        ),
    spec("isTruthy", 1, 1, |c| Ok((!falsey(c.arg(0))).into()))
        .missing_ok().branches()
        .doc("the opposite of `isFalsey`", "{{isTruthy data.host}}", "true"),
    spec("ifEven", 1, 1, |c| Ok((!odd(c.arg(0))?).into()))
        .missing_ok().branches()
        .doc(
            "`true` when the integer is even",
            "{{#ifEven data.count}}even{{else}}odd{{/ifEven}}",
            "even",
        ),
    spec("ifNth", 2, 2, |c| {
        let (a, b) = (c.arg(0), c.arg(1));
        let nth = js::is_number(a) && js::is_number(b) && js::number(b) % js::number(a) == 0.0;
        Ok(nth.into())
    })
    .missing_ok().branches()
    .doc(
        "`true` when `b` is a multiple of `a`",
        "{{#ifNth 4 data.count}}every fourth{{/ifNth}}",
        "every fourth",
    ),
    spec("ifOdd", 1, 1, |c| Ok(odd(c.arg(0))?.into()))
        .missing_ok().branches()
        .doc(
            "`true` when the integer is odd",
            "{{#ifOdd 3}}odd{{/ifOdd}}",
            "odd",
        ),
    spec("is", 1, 2, |c| binary(c, js::loose_eq))
        .missing_ok().branches()
        .doc(
            "`a == b` (`\"12\"` is `12`)",
            "{{#is data.count 12}}twelve{{/is}}",
            "twelve",
        ),
    spec("isnt", 1, 2, |c| binary(c, |a, b| !js::loose_eq(a, b)))
        .missing_ok().branches()
        .doc("`a != b`", "{{isnt data.host \"db-2\"}}", "true"),
    spec("lt", 1, 2, |c| binary(c, js::lt))
        .missing_ok().branches()
        .doc("`a < b`", "{{lt data.load 5}}", "false"),
    spec("lte", 1, 2, |c| binary(c, js::lte))
        .missing_ok().branches()
        .doc("`a <= b`", "{{lte 3 3}}", "true"),
    spec("neither", 2, 2, |c| {
        Ok((!js::truthy(c.arg(0)) && !js::truthy(c.arg(1))).into())
    })
    .missing_ok().branches()
    .doc(
        "`true` when both are falsy",
        "{{neither data.empty data.runbook}}",
        "true",
    ),
    spec("not", 1, 1, |c| Ok((!js::truthy(c.arg(0))).into()))
        .missing_ok().branches()
        .doc("`!value`", "{{not data.empty}}", "true"),
    spec("or", 0, 0, |c| Ok(c.args.iter().any(|v| js::truthy(v)).into()))
        .variadic()
        .missing_ok().branches()
        .doc(
            "`true` when any argument is truthy",
            "{{or data.empty data.host}}",
            "true",
        ),
    spec("unlessEq", 1, 2, |c| strict(c, false))
        .missing_ok().branches()
        .doc(
            "`a !== b`",
            "{{#unlessEq data.severity \"info\"}}act{{/unlessEq}}",
            "act",
        ),
    spec("unlessGt", 1, 2, |c| binary(c, js::lte))
        .missing_ok().branches()
        .doc("`a <= b`", "{{unlessGt data.count 20}}", "true"),
    spec("unlessLt", 1, 2, |c| binary(c, js::gte))
        .missing_ok().branches()
        .doc("`a >= b`", "{{unlessLt data.count 20}}", "false"),
    spec("unlessGteq", 1, 2, |c| binary(c, js::lt))
        .missing_ok().branches()
        .doc("`a < b`", "{{unlessGteq data.load 8}}", "true"),
    spec("unlessLteq", 1, 2, |c| binary(c, js::gt))
        .missing_ok().branches()
        .doc("`a > b`", "{{unlessLteq data.load 8}}", "false"),
];

fn compare(c: &Call<'_>) -> Result<Value, String> {
    let (a, b) = (c.arg(0), c.arg(2));
    let op = js::string(c.arg(1));
    let typeof_a = || match a {
        Value::Null if c.is_missing(0) => "undefined",
        Value::Null | Value::Array(_) | Value::Object(_) => "object",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
    };
    let result = match op.as_str() {
        "==" => js::loose_eq(a, b),
        "===" => js::strict_eq(a, b),
        "!=" => !js::loose_eq(a, b),
        "!==" => !js::strict_eq(a, b),
        "<" => js::lt(a, b),
        ">" => js::gt(a, b),
        "<=" => js::lte(a, b),
        ">=" => js::gte(a, b),
        "typeof" => b.as_str() == Some(typeof_a()),
        other => return Err(format!("invalid operator: `{other}`")),
    };
    Ok(result.into())
}

/// handlebars-helpers' `utils.contains`: `indexOf` on text or an array.
fn contains(c: &Call<'_>) -> Result<Value, String> {
    let start = match c.args.get(2) {
        Some(v) if !v.is_object() => js::number(v),
        _ => 0.0,
    };
    Ok(index_of(c.arg(0), c.arg(1), start).is_some().into())
}

/// `haystack.indexOf(needle, start)` for text and arrays; `None` for anything else too.
pub(super) fn index_of(haystack: &Value, needle: &Value, start: f64) -> Option<usize> {
    let from = |len: usize| {
        let s = if start.is_nan() { 0.0 } else { start.trunc() };
        if s < 0.0 {
            (len as f64 + s).max(0.0) as usize
        } else {
            s as usize
        }
    };
    match haystack {
        Value::String(s) => {
            let units: Vec<u16> = s.encode_utf16().collect();
            let pat: Vec<u16> = js::string(needle).encode_utf16().collect();
            let begin = from(units.len()).min(units.len());
            if pat.is_empty() {
                return Some(begin);
            }
            (begin..units.len()).find(|&i| units[i..].starts_with(&pat))
        }
        Value::Array(items) => {
            (from(items.len())..items.len()).find(|&i| js::strict_eq(&items[i], needle))
        }
        _ => None,
    }
}

fn has(c: &Call<'_>) -> Result<Value, String> {
    let (value, pattern) = (c.arg(0), c.arg(1));
    if c.args.is_empty() || value.is_null() {
        return Ok(false.into());
    }
    if c.args.len() == 1 {
        // has-value over `this`: the path exists and holds something.
        let key = js::string(value);
        let found = key
            .split('.')
            .try_fold(c.this, |v, seg| v.as_object()?.get(seg));
        return Ok(found.is_some_and(has_value).into());
    }
    let pattern_text = pattern.as_str().filter(|s| !s.is_empty());
    let yes = match (value, pattern_text) {
        (Value::Array(_), Some(_)) | (Value::String(_), Some(_))
            if !value.as_str().is_some_and(str::is_empty) =>
        {
            index_of(value, pattern, 0.0).is_some()
        }
        (Value::Object(map), Some(p)) => map.contains_key(p),
        _ => false,
    };
    Ok(yes.into())
}

/// has-value: not null, not empty text, array or object.
fn has_value(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => a.iter().any(has_value),
        Value::Object(m) => !m.is_empty(),
        _ => true,
    }
}

/// The falsey package: falsy, empty arrays and objects, and its keywords.
pub(super) fn falsey(v: &Value) -> bool {
    if !js::truthy(v) {
        return true;
    }
    match v {
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::String(s) => {
            ["none", "nil", "nope", "no", "nada", "0", "false"].contains(&s.to_lowercase().as_str())
        }
        _ => false,
    }
}

/// is-odd: an integer, as a number or numeric text.
fn odd(v: &Value) -> Result<bool, String> {
    let n = js::number(v).abs();
    if !js::is_number(v) {
        return Err("expected a number".into());
    }
    if n.fract() != 0.0 {
        return Err("expected an integer".into());
    }
    if n > 9_007_199_254_740_991.0 {
        return Err("value exceeds maximum safe integer".into());
    }
    Ok(n % 2.0 == 1.0)
}
