//! Miscellaneous helpers of handlebars-helpers: data frames, options, no-ops, kinds of values
//! and name=value arguments as a context.

use serde_json::{Map, Value};

use super::array::get_path;
use super::js;
use crate::template::registry::{Spec, block, spec};

pub(in crate::template) const HELPERS: &[Spec] = &[
    block("frame", 0, 1, |c, b| {
        let locals: Vec<(&str, Value)> = c.hash.iter().map(|(k, v)| (*k, (*v).clone())).collect();
        b.render(None, &locals)
    })
    .same_scope()
    .doc(
        "the block with the name=value arguments as `@` variables",
        "{{#frame team=\"ops\"}}{{@team}}{{/frame}}",
        "ops",
    ),
    spec("option", 1, 1, |c| {
        let mut opts = match c.this.get("options") {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        for (k, v) in &c.hash {
            opts.insert(k.to_string(), (*v).clone());
        }
        Ok(get_path(&Value::Object(opts), c.arg(0))
            .cloned()
            .unwrap_or(Value::Null))
    })
    .missing_ok()
    .doc(
        "the value at a path of `options` in the context",
        "[{{option \"a\"}}]",
        "[]",
    ),
    block("noop", 0, 0, |_, b| b.render(None, &[]))
        .same_scope()
        .doc(
            "the block, unchanged",
            "{{#noop}}{{data.host}}{{/noop}}",
            "db-1",
        ),
    spec("typeOf", 1, 1, |c| {
        Ok(match c.arg(0) {
            Value::Null if c.is_missing(0) => "undefined",
            Value::Null => "null",
            v => js::kind_of(v),
        }
        .into())
    })
    .missing_ok()
    .doc(
        "the kind of value: `string`, `number`, `array`, `object`…",
        "{{typeOf data.tags}}",
        "array",
    ),
    block("withHash", 0, 0, |c, b| {
        if c.hash.is_empty() {
            return b.inverse();
        }
        let hash: Map<String, Value> = c
            .hash
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).clone()))
            .collect();
        b.render(Some(Value::Object(hash)), &[])
    })
    .doc(
        "the block over the name=value arguments as its context",
        "{{#withHash name=data.host}}{{name}}{{/withHash}}",
        "db-1",
    ),
];
