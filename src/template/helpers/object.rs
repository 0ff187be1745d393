//! Object helpers of handlebars-helpers (paths, picking, merging, iterating keys, JSON in and
//! out with key order kept), and Siren's `json` and `jsonPretty`.

use handlebars::{RenderError, RenderErrorReason};
use serde_json::{Map, Value};

use super::array::get_path;
use super::js;
use crate::template::registry::{Block, Call, Spec, block, spec};

/// get-object: `{last: value}` for a path, `[value]` when the last segment is a number.
fn get_object(obj: &Value, prop: &Value) -> Value {
    if !js::truthy(prop) {
        return obj.clone();
    }
    if !js::truthy(obj) {
        return Value::Object(Map::new());
    }
    let path = js::string(prop);
    let segs: Vec<&str> = path
        .split(['[', '.', ']'])
        .filter(|s| !s.is_empty())
        .collect();
    let mut v = obj;
    for seg in &segs {
        let next = match v {
            Value::Object(m) => m.get(*seg),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
        match next {
            Some(n) if js::truthy(n) => v = n,
            _ => return Value::Object(Map::new()),
        }
    }
    let last = segs.last().copied().unwrap_or_default();
    if js::is_number(&Value::from(last)) {
        return Value::Array(vec![v.clone()]);
    }
    let mut res = Map::new();
    res.insert(last.to_string(), v.clone());
    Value::Object(res)
}

/// Copies the keys of every object argument (and the name=value arguments) into one.
fn extend(c: &Call<'_>, start: Map<String, Value>) -> Value {
    let mut out = start;
    let hash: Map<String, Value> = c
        .hash
        .iter()
        .map(|(k, v)| (k.to_string(), (*v).clone()))
        .collect();
    for v in c.args.iter().copied().chain([&Value::Object(hash)]) {
        if let Value::Object(m) = v {
            for (k, v) in m {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

fn stringify(c: &Call<'_>) -> Result<Value, String> {
    let v = c.arg(0);
    if v.is_null() && c.is_missing(0) {
        return Ok(Value::Null);
    }
    let indent = c.arg(1);
    let indent = if js::is_number(indent) {
        js::number(indent).clamp(0.0, 10.0) as usize
    } else {
        0
    };
    Ok(js::stringify(v, indent).into())
}

fn parse(c: &Call<'_>) -> Result<Value, String> {
    let s = js::string(c.arg(0));
    serde_json::from_str(&s).map_err(|e| format!("cannot parse the text as JSON: {e}"))
}

pub(in crate::template) const HELPERS: &[Spec] = &[
    spec("extend", 0, 0, |c| Ok(extend(c, Map::new())))
        .variadic()
        .missing_ok()
        .doc(
            "the keys of all the objects in one object",
            "{{JSONstringify (extend data.labels team=\"ops\")}}",
            "{\"alertname\":\"DiskFull\",\"instance\":\"db-1:9100\",\"team\":\"ops\"}",
        ),
    block("forIn", 1, 1, for_keys).doc(
        "the block for each key of an object, with `@key`",
        "{{#forIn data.labels}}{{@key}}={{this}} {{/forIn}}",
        "alertname=DiskFull instance=db-1:9100 ",
    ),
    block("forOwn", 1, 1, for_keys).doc(
        "the block for each own key of an object, with `@key`",
        "{{#forOwn data.labels}}{{@key}} {{/forOwn}}",
        "alertname instance ",
    ),
    spec("toPath", 0, 0, |c| {
        let parts: Vec<String> = c
            .args
            .iter()
            .filter(|v| v.is_string() || v.is_number())
            .map(|v| js::string(v))
            .collect();
        Ok(parts.join(".").into())
    })
    .variadic()
    .missing_ok()
    .doc(
        "the arguments joined into a property path",
        "{{toPath \"labels\" \"alertname\"}}",
        "labels.alertname",
    ),
    spec("get", 2, 2, |c| {
        Ok(get_path(c.arg(1), c.arg(0)).cloned().unwrap_or(Value::Null))
    })
    .on_block(|c, b| {
        let found = get_path(c.arg(1), c.arg(0)).cloned().unwrap_or(Value::Null);
        if js::truthy(&found) {
            b.render(Some(found), &[])
        } else {
            b.inverse()
        }
    })
    .missing_ok()
    .scoped()
    .doc(
        "the value at a property path",
        "{{get \"labels.alertname\" data}}",
        "DiskFull",
    ),
    spec("getObject", 2, 2, |c| Ok(get_object(c.arg(1), c.arg(0))))
        .missing_ok()
        .doc(
            "`{key: value}` for the value at a property path",
            "{{JSONstringify (getObject \"labels.alertname\" data)}}",
            "{\"alertname\":\"DiskFull\"}",
        ),
    spec("hasOwn", 2, 2, |c| match c.arg(0) {
        Value::Null => Err("cannot convert undefined or null to object".into()),
        Value::Object(m) => Ok(m.contains_key(&js::string(c.arg(1))).into()),
        Value::Array(a) => {
            let k = js::string(c.arg(1));
            Ok((k == "length" || k.parse::<usize>().is_ok_and(|i| i < a.len())).into())
        }
        Value::String(s) => {
            let k = js::string(c.arg(1));
            Ok((k == "length" || k.parse::<usize>().is_ok_and(|i| i < js::len16(s))).into())
        }
        _ => Ok(false.into()),
    })
    .missing_ok()
    .doc(
        "`true` when the object has the key itself",
        "{{hasOwn data.labels \"instance\"}}",
        "true",
    ),
    spec("isObject", 1, 1, |c| Ok(c.arg(0).is_object().into()))
        .missing_ok()
        .doc(
            "`true` for an object (not an array)",
            "{{isObject data.labels}}",
            "true",
        ),
    spec("JSONparse", 1, 1, parse).missing_ok().doc(
        "the value JSON text holds",
        "{{get \"a\" (JSONparse \"{\\\"a\\\": 1}\")}}",
        "1",
    ),
    spec("JSONstringify", 1, 2, stringify).missing_ok().doc(
        "the value as JSON, keys in their order, indented by `indent` spaces",
        "{{JSONstringify data.labels}}",
        "{\"alertname\":\"DiskFull\",\"instance\":\"db-1:9100\"}",
    ),
    spec("merge", 1, 1, |c| {
        let start = match c.arg(0) {
            Value::Object(m) => m.clone(),
            Value::Null => return Err("cannot convert undefined or null to object".into()),
            _ => Map::new(),
        };
        Ok(extend(
            &Call {
                args: c.args[1..].to_vec(),
                ..clone_call(c)
            },
            start,
        ))
    })
    .variadic()
    .missing_ok()
    .doc(
        "the first object with the keys of the others",
        "{{JSONstringify (merge data.labels (JSONparse \"{\\\"team\\\":\\\"ops\\\"}\"))}}",
        "{\"alertname\":\"DiskFull\",\"instance\":\"db-1:9100\",\"team\":\"ops\"}",
    ),
    spec("parseJSON", 1, 1, parse).missing_ok().doc(
        "`JSONparse` by another name",
        "{{length (parseJSON \"[1,2,3]\")}}",
        "3",
    ),
    spec("pick", 2, 2, |c| Ok(pick(c)))
        .on_block(|c, b| {
            let picked = pick(c);
            if picked.as_object().is_some_and(|m| !m.is_empty()) {
                b.render(Some(picked), &[])
            } else {
                b.inverse()
            }
        })
        .missing_ok()
        .scoped()
        .doc(
            "an object with only the given keys (a key or an array of keys)",
            "{{JSONstringify (pick \"host\" data)}}",
            "{\"host\":\"db-1\"}",
        ),
    spec("stringify", 1, 2, stringify).missing_ok().doc(
        "`JSONstringify` by another name",
        "{{stringify data.tags}}",
        "[\"disk\",\"prod\"]",
    ),
    // Siren's own.
    spec("json", 1, 1, |c| {
        serde_json::to_string(c.arg(0))
            .map(Value::from)
            .map_err(|e| e.to_string())
    })
    .doc(
        "Siren: the value as compact JSON (keys in their order)",
        "{{json data.labels}}",
        "{\"alertname\":\"DiskFull\",\"instance\":\"db-1:9100\"}",
    ),
    spec("jsonPretty", 1, 1, |c| {
        serde_json::to_string_pretty(c.arg(0))
            .map(Value::from)
            .map_err(|e| e.to_string())
    })
    .doc(
        "Siren: the value as indented JSON",
        "{{jsonPretty data.tags}}",
        "[\n  \"disk\",\n  \"prod\"\n]",
    ),
];

fn clone_call<'a>(c: &Call<'a>) -> Call<'a> {
    Call {
        args: c.args.clone(),
        missing: c.missing.clone(),
        hash: c.hash.clone(),
        this: c.this,
        regexes: c.regexes,
        is_block: c.is_block,
    }
}

fn pick(c: &Call<'_>) -> Value {
    let keys = match c.arg(0) {
        Value::Array(a) => a.clone(),
        v if js::truthy(v) => vec![v.clone()],
        _ => vec![],
    };
    let mut out = Map::new();
    for k in &keys {
        if let Value::Object(m) = get_object(c.arg(1), k) {
            out.extend(m);
        }
    }
    Value::Object(out)
}

/// `forIn`/`forOwn`: the block over each value, `@key` its key.
fn for_keys(c: &Call<'_>, b: &mut Block<'_, '_, '_, '_>) -> Result<(), RenderError> {
    if !c.is_block {
        return Err(RenderErrorReason::Other("obj.inverse is not a function".into()).into());
    }
    let entries: Vec<(String, Value)> = match c.arg(0) {
        Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v.clone()))
            .collect(),
        Value::String(s) => s
            .encode_utf16()
            .enumerate()
            .map(|(i, u)| (i.to_string(), String::from_utf16_lossy(&[u]).into()))
            .collect(),
        _ => vec![],
    };
    let hash: Vec<(&str, Value)> = c.hash.iter().map(|(k, v)| (*k, (*v).clone())).collect();
    for (k, v) in entries {
        let mut locals = hash.clone();
        locals.push(("key", Value::from(k)));
        b.render(Some(v), &locals)?;
    }
    Ok(())
}
