//! Array helpers of handlebars-helpers (slicing, picking, sorting, iterating blocks), and
//! Siren's `includes`.

use std::cmp::Ordering;

use handlebars::RenderError;
use serde_json::Value;

use super::{contains, js};
use crate::template::registry::{Block, Call, Spec, block, spec};

/// `after`, `before`, `first n`…: JavaScript's `slice` on an array or text.
fn slice(v: &Value, start: f64, end: Option<f64>) -> Value {
    match v {
        Value::Array(items) => {
            let (a, b) = js::slice_bounds(items.len(), start, end);
            Value::Array(items[a..b].to_vec())
        }
        Value::String(s) => js::slice16(s, start, end).into(),
        _ => Value::Null,
    }
}

/// `value[i]` for arrays and text.
fn index(v: &Value, i: f64) -> Value {
    if i < 0.0 || i.fract() != 0.0 {
        return Value::Null;
    }
    match v {
        Value::Array(items) => items.get(i as usize).cloned().unwrap_or(Value::Null),
        Value::String(s) => {
            let units: Vec<u16> = s.encode_utf16().collect();
            units
                .get(i as usize)
                .map_or(Value::Null, |u| String::from_utf16_lossy(&[*u]).into())
        }
        _ => Value::Null,
    }
}

fn len(v: &Value) -> Option<usize> {
    match v {
        Value::Array(items) => Some(items.len()),
        Value::String(s) => Some(js::len16(s)),
        _ => None,
    }
}

fn need_len(v: &Value) -> Result<usize, String> {
    len(v).ok_or_else(|| format!("cannot read the length of {}", js::kind_of(v)))
}

/// get-value: a dotted path into objects and arrays.
pub(super) fn get_path<'a>(v: &'a Value, path: &Value) -> Option<&'a Value> {
    let path = match path {
        Value::Number(_) => js::string(path),
        Value::String(s) => s.clone(),
        _ => return None,
    };
    path.split('.').try_fold(v, |v, seg| match v {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// `Array.prototype.sort()` without a comparator: by `String(v)`, UTF-16 order, nulls last.
fn default_sort(items: &mut [Value]) {
    items.sort_by(|a, b| match (a.is_null(), b.is_null()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => js::string(a)
            .encode_utf16()
            .cmp(js::string(b).encode_utf16()),
    });
}

fn sort_by_prop(items: &mut [Value], prop: &Value) {
    let null = Value::Null;
    items.sort_by(|a, b| {
        let (x, y) = (
            get_path(a, prop).unwrap_or(&null),
            get_path(b, prop).unwrap_or(&null),
        );
        if js::gt(x, y) {
            Ordering::Greater
        } else if js::lt(x, y) {
            Ordering::Less
        } else {
            Ordering::Equal
        }
    });
}

pub(in crate::template) const HELPERS: &[Spec] = &[
    spec("after", 1, 2, |c| {
        Ok(match c.arg(0) {
            Value::Null => "".into(),
            v => slice(v, opt_num(c, 1).unwrap_or(0.0), None),
        })
    })
    .missing_ok()
    .doc("the items after the first `n`", "{{after data.tags 1}}", "prod"),
    spec("arrayify", 1, 1, |c| {
        Ok(match c.arg(0) {
            v if !js::truthy(v) => Value::Array(vec![]),
            Value::Array(a) => Value::Array(a.clone()),
            v => Value::Array(vec![v.clone()]),
        })
    })
    .missing_ok()
    .doc(
        "the value as an array (an array stays one)",
        "{{length (arrayify data.host)}}",
        "1",
    ),
    spec("before", 1, 2, |c| {
        Ok(match c.arg(0) {
            Value::Null => "".into(),
            v => slice(v, 0.0, Some(-opt_num(c, 1).unwrap_or(f64::NAN))),
        })
    })
    .missing_ok()
    .doc(
        "the items before the last `n`",
        "{{before data.tags 1}}",
        "disk",
    ),
    block("eachIndex", 1, 1, each_index).doc(
        "the block for each item, with `item` and `index`",
        "{{#eachIndex data.tags}}{{index}}={{item}} {{/eachIndex}}",
        "0=disk 1=prod ",
    ),
    block("filter", 2, 2, filter).doc(
        "the block for each item equal to the value (or whose `property=` is)",
        "{{#filter data.tags \"prod\"}}{{this}}{{else}}none{{/filter}}",
        "prod",
    ),
    spec("first", 1, 2, |c| {
        Ok(match (c.arg(0), c.args.get(1)) {
            (Value::Null, _) => "".into(),
            (v, Some(n)) if js::is_number(n) => slice(v, 0.0, Some(js::number(n))),
            (v, _) => index(v, 0.0),
        })
    })
    .missing_ok()
    .doc("the first item, or the first `n`", "{{first data.tags}}", "disk"),
    block("forEach", 1, 1, for_each).doc(
        "the block for each object, with `index` (from 1), `total`, `isFirst`, `isLast`",
        "{{#forEach data.alerts}}{{index}}/{{total}} {{name}} {{/forEach}}",
        "1/2 DiskFull 2/2 HighLoad ",
    ),
    spec("inArray", 2, 2, |c| {
        let found = match c.arg(0) {
            Value::Array(items) => items.iter().any(|v| js::strict_eq(v, c.arg(1))),
            Value::String(_) => super::comparison::index_of(c.arg(0), c.arg(1), 0.0).is_some(),
            v => return Err(format!("cannot search {}", js::kind_of(v))),
        };
        Ok(found.into())
    })
    .missing_ok().branches()
    .doc(
        "`true` when the array holds the value",
        "{{#inArray data.tags \"disk\"}}disk alert{{/inArray}}",
        "disk alert",
    ),
    spec("isArray", 1, 1, |c| Ok(c.arg(0).is_array().into()))
        .missing_ok()
        .doc("`true` for an array", "{{isArray data.tags}}", "true"),
    spec("itemAt", 1, 2, |c| {
        let Value::Array(items) = c.arg(0) else {
            return Ok(Value::Null);
        };
        let i = c.args.get(1).filter(|v| js::is_number(v)).map_or(0.0, |v| js::number(v));
        let i = if i < 0.0 { items.len() as f64 + i } else { i };
        Ok(index(c.arg(0), i))
    })
    .missing_ok()
    .doc("the item at `index` (negative from the end)", "{{itemAt data.tags -1}}", "prod"),
    spec("join", 1, 2, |c| {
        Ok(match c.arg(0) {
            Value::String(s) => s.clone().into(),
            Value::Array(items) => {
                let sep = c.arg(1).as_str().filter(|s| !s.is_empty()).unwrap_or(", ");
                items.iter().map(js::string).collect::<Vec<_>>().join(sep).into()
            }
            _ => "".into(),
        })
    })
    .missing_ok()
    .doc(
        "the items joined with `separator` (default `, `)",
        "{{join data.tags \" + \"}}",
        "disk + prod",
    ),
    spec("equalsLength", 1, 2, equals_length).missing_ok().branches().doc(
        "`true` when the array or text has `length` items",
        "{{equalsLength data.tags 2}}",
        "true",
    ),
    spec("last", 1, 2, |c| {
        let v = c.arg(0);
        let Some(n) = len(v) else {
            return Ok("".into());
        };
        Ok(match c.args.get(1) {
            Some(k) if js::is_number(k) => slice(v, -js::number(k).abs(), None),
            _ => index(v, n as f64 - 1.0),
        })
    })
    .missing_ok()
    .doc("the last item, or the last `n`", "{{last data.tags}}", "prod"),
    spec("length", 1, 1, |c| {
        Ok(match c.arg(0) {
            Value::Object(m) => m.len().into(),
            v => len(v).unwrap_or(0).into(),
        })
    })
    .missing_ok()
    .doc(
        "the number of items, characters (UTF-16) or keys",
        "{{length data.tags}}",
        "2",
    ),
    spec("lengthEqual", 1, 2, equals_length).missing_ok().branches().doc(
        "`equalsLength` by another name",
        "{{lengthEqual data.host 4}}",
        "true",
    ),
    spec("map", 1, 2, |c| {
        Ok(match c.arg(0) {
            Value::Array(a) => Value::Array(a.clone()),
            _ => "".into(),
        })
    })
    .missing_ok()
    .doc(
        "the array unchanged (templates cannot pass a function to map with)",
        "{{map data.tags}}",
        "disk,prod",
    ),
    spec("pluck", 2, 2, |c| {
        let Value::Array(items) = c.arg(0) else {
            return Ok(if c.arg(0).is_null() { "".into() } else { Value::Array(vec![]) });
        };
        let picked = items.iter().filter_map(|v| get_path(v, c.arg(1)).cloned());
        Ok(Value::Array(picked.collect()))
    })
    .missing_ok()
    .doc(
        "the `property` of every item",
        "{{pluck data.alerts \"name\"}}",
        "DiskFull,HighLoad",
    ),
    block("some", 2, 2, |c, b| {
        if let Value::Array(items) = c.arg(0)
            && !items.is_empty()
        {
            return Err(RenderError::from(handlebars::RenderErrorReason::Other(
                "some: iter is not a function".into(),
            )));
        }
        b.inverse()
    })
    .same_scope()
    .doc(
        "the block when a function says so: templates have none, so the `else` part",
        "{{#some data.empty \"x\"}}yes{{else}}no{{/some}}",
        "no",
    ),
    spec("sort", 1, 1, |c| {
        let Value::Array(items) = c.arg(0) else {
            return Ok("".into());
        };
        let mut items = items.clone();
        default_sort(&mut items);
        if js::truthy(c.hash("reverse")) {
            items.reverse();
        }
        Ok(Value::Array(items))
    })
    .missing_ok()
    .doc(
        "the items sorted as text (`reverse=true` for descending)",
        "{{sort data.tags reverse=true}}",
        "prod,disk",
    ),
    spec("sortBy", 1, 2, |c| {
        let Value::Array(items) = c.arg(0) else {
            return Ok("".into());
        };
        let mut items = items.clone();
        match c.args.get(1) {
            Some(p @ Value::String(s)) if !s.is_empty() => sort_by_prop(&mut items, p),
            _ => default_sort(&mut items),
        }
        Ok(Value::Array(items))
    })
    .missing_ok()
    .doc(
        "the items sorted by `property`",
        "{{pluck (sortBy data.alerts \"value\") \"name\"}}",
        "HighLoad,DiskFull",
    ),
    block("withAfter", 2, 2, |c, b| {
        let v = slice(c.arg(0), js::number(c.arg(1)), None);
        each_item(c, b, v)
    })
    .doc(
        "the block for each item after the first `n`",
        "{{#withAfter data.tags 1}}{{this}}{{/withAfter}}",
        "prod",
    ),
    block("withBefore", 2, 2, |c, b| {
        let v = slice(c.arg(0), 0.0, Some(-js::number(c.arg(1))));
        each_item(c, b, v)
    })
    .doc(
        "the block for each item before the last `n`",
        "{{#withBefore data.tags 1}}{{this}}{{/withBefore}}",
        "disk",
    ),
    block("withFirst", 1, 2, |c, b| with_end(c, b, true)).doc(
        "the block over the first item, or each of the first `n`",
        "{{#withFirst data.tags}}{{this}}{{/withFirst}}",
        "disk",
    ),
    block("withGroup", 2, 2, with_group).doc(
        "the block for each group of `size` items",
        "{{#withGroup data.tags 1}}[{{this}}]{{/withGroup}}",
        "[disk][prod]",
    ),
    block("withLast", 1, 2, |c, b| with_end(c, b, false)).doc(
        "the block over the last item, or each of the last `n`",
        "{{#withLast data.tags}}{{this}}{{/withLast}}",
        "prod",
    ),
    block("withSort", 1, 2, with_sort).doc(
        "the block for each item, sorted (by `property`; `reverse=true`)",
        "{{#withSort data.tags reverse=true}}{{this}} {{/withSort}}",
        "prod disk ",
    ),
    spec("unique", 1, 1, |c| {
        let Value::Array(items) = c.arg(0) else {
            return Ok(if c.arg(0).is_null() { "".into() } else { c.arg(0).clone() });
        };
        let mut out: Vec<Value> = Vec::new();
        for v in items {
            if !out.iter().any(|o| js::strict_eq(o, v)) {
                out.push(v.clone());
            }
        }
        Ok(Value::Array(out))
    })
    .missing_ok()
    .doc(
        "the items without repeats",
        "{{unique (split \"a,b,a\" \",\")}}",
        "a,b",
    ),
    // Siren's own.
    spec("includes", 2, 2, |c| {
        Ok(contains(c.arg(0), c.arg(1))?.into())
    })
    .doc(
        "Siren: `true` if the array has the element (`\"2\"` matches `2`), text the text, or an object the key",
        "{{includes data.tags \"prod\"}}",
        "true",
    ),
];

fn opt_num(c: &Call<'_>, i: usize) -> Option<f64> {
    c.args.get(i).map(|v| js::number(v))
}

fn equals_length(c: &Call<'_>) -> Result<Value, String> {
    let n = len(c.arg(0)).unwrap_or(0) as f64;
    let want = match c.args.get(1) {
        None => Value::from(0),
        Some(v) => (*v).clone(),
    };
    Ok((want.is_number() && js::number(&want) == n).into())
}

fn each_index(c: &Call<'_>, b: &mut Block<'_, '_, '_, '_>) -> Result<(), RenderError> {
    let v = c.arg(0);
    let n = need_len(v).map_err(other)?;
    for i in 0..n {
        let item = serde_json::json!({"item": index(v, i as f64), "index": i});
        b.render(Some(item), &[])?;
    }
    Ok(())
}

fn other(message: String) -> RenderError {
    RenderError::from(handlebars::RenderErrorReason::Other(message))
}

fn filter(c: &Call<'_>, b: &mut Block<'_, '_, '_, '_>) -> Result<(), RenderError> {
    let Value::Array(items) = c.arg(0) else {
        return Err(other(format!(
            "filter: cannot filter {}",
            js::kind_of(c.arg(0))
        )));
    };
    let prop = Some(c.hash("property"))
        .filter(|v| js::truthy(v))
        .or(Some(c.hash("prop")).filter(|v| js::truthy(v)));
    let hits: Vec<&Value> = items
        .iter()
        .filter(|v| match prop {
            Some(p) => get_path(v, p).is_some_and(|x| js::strict_eq(x, c.arg(1))),
            None => js::strict_eq(v, c.arg(1)),
        })
        .collect();
    if hits.is_empty() {
        return b.inverse();
    }
    for v in hits {
        b.render(Some(v.clone()), &[])?;
    }
    Ok(())
}

pub(super) fn for_each(c: &Call<'_>, b: &mut Block<'_, '_, '_, '_>) -> Result<(), RenderError> {
    let v = c.arg(0);
    let n = need_len(v).map_err(other)?;
    for i in 0..n {
        let mut item = index(v, i as f64);
        match &mut item {
            Value::Object(m) => {
                m.insert("index".into(), (i + 1).into());
                m.insert("total".into(), n.into());
                m.insert("isFirst".into(), (i == 0).into());
                m.insert("isLast".into(), (i + 1 == n).into());
            }
            other_item => {
                return Err(other(format!(
                    "forEach: cannot create property 'index' on {}",
                    js::kind_of(other_item)
                )));
            }
        }
        let locals: Vec<(&str, Value)> = c
            .hash
            .iter()
            .map(|(k, v)| (*k, (*v).clone()))
            .chain([("index", Value::from(i))])
            .collect();
        b.render(Some(item), &locals)?;
    }
    Ok(())
}

fn each_item(c: &Call<'_>, b: &mut Block<'_, '_, '_, '_>, v: Value) -> Result<(), RenderError> {
    if !c.arg(0).is_array() {
        return Ok(());
    }
    if let Value::Array(items) = v {
        for item in items {
            b.render(Some(item), &[])?;
        }
    }
    Ok(())
}

fn with_end(c: &Call<'_>, b: &mut Block<'_, '_, '_, '_>, first: bool) -> Result<(), RenderError> {
    let v = c.arg(0);
    if v.is_null() {
        return Ok(());
    }
    let Some(n) = c.args.get(1).filter(|n| !n.is_null()) else {
        let n = len(v).unwrap_or(0) as f64;
        let item = index(v, if first { 0.0 } else { n - 1.0 });
        return b.render(Some(item), &[]);
    };
    let n = js::parse_float(n);
    let part = if first {
        slice(v, 0.0, Some(n))
    } else {
        slice(v, -n, None)
    };
    match part {
        Value::Array(items) => items.into_iter().try_for_each(|i| b.render(Some(i), &[])),
        Value::String(s) => s
            .encode_utf16()
            .try_for_each(|u| b.render(Some(String::from_utf16_lossy(&[u]).into()), &[])),
        _ => Ok(()),
    }
}

fn with_group(c: &Call<'_>, b: &mut Block<'_, '_, '_, '_>) -> Result<(), RenderError> {
    let Value::Array(items) = c.arg(0) else {
        return Ok(());
    };
    let size = js::number(c.arg(1));
    let mut group = Vec::new();
    for (i, v) in items.iter().enumerate() {
        if i > 0 && (i as f64 % size) == 0.0 {
            b.render(Some(Value::Array(std::mem::take(&mut group))), &[])?;
        }
        group.push(v.clone());
    }
    if !items.is_empty() {
        b.render(Some(Value::Array(group)), &[])?;
    }
    Ok(())
}

fn with_sort(c: &Call<'_>, b: &mut Block<'_, '_, '_, '_>) -> Result<(), RenderError> {
    let v = c.arg(0);
    if v.is_null() {
        return Ok(());
    }
    let Value::Array(items) = v else {
        return Err(other(format!("withSort: cannot sort {}", js::kind_of(v))));
    };
    let mut items = items.clone();
    match c.args.get(1).filter(|p| !p.is_null()) {
        Some(p) => sort_by_prop(&mut items, p),
        None => default_sort(&mut items),
    }
    if js::truthy(c.hash("reverse")) {
        items.reverse();
    }
    items.into_iter().try_for_each(|i| b.render(Some(i), &[]))
}
