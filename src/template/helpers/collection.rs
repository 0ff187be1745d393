//! Collection helpers of handlebars-helpers: emptiness of arrays and objects, and iterating
//! either.

use handlebars::RenderError;
use serde_json::Value;

use crate::template::registry::{Block, Call, Spec, block, spec};

fn is_empty(c: &Call<'_>) -> Result<Value, String> {
    if c.args.is_empty() {
        return Ok(true.into());
    }
    match c.arg(0) {
        Value::Null => Err("cannot convert undefined or null to object".into()),
        Value::Array(a) => Ok(a.is_empty().into()),
        Value::Object(m) => Ok(m.is_empty().into()),
        _ => Ok(false.into()),
    }
}

fn iterate(c: &Call<'_>, b: &mut Block<'_, '_, '_, '_>) -> Result<(), RenderError> {
    match c.arg(0) {
        Value::Array(_) => super::array::for_each(c, b),
        Value::Object(m) => {
            let hash: Vec<(&str, Value)> = c.hash.iter().map(|(k, v)| (*k, (*v).clone())).collect();
            for (k, v) in m {
                let mut locals = hash.clone();
                locals.push(("key", Value::from(k.clone())));
                b.render(Some(v.clone()), &locals)?;
            }
            Ok(())
        }
        _ => b.inverse(),
    }
}

pub(in crate::template) const HELPERS: &[Spec] = &[
    spec("isEmpty", 0, 1, is_empty)
        .on_block(|c, b| {
            let empty = is_empty(c).map_err(|e| {
                RenderError::from(handlebars::RenderErrorReason::Other(format!(
                    "isEmpty: {e}"
                )))
            })?;
            b.branch(empty == Value::Bool(true))
        })
        .missing_ok()
        .doc(
            "`true` for an empty array or object",
            "{{#isEmpty data.tags}}no tags{{else}}tagged{{/isEmpty}}",
            "tagged",
        ),
    block("iterate", 1, 1, iterate).doc(
        "the block for each item of an array (as `forEach`) or value of an object (`@key`)",
        "{{#iterate data.labels}}{{@key}} {{/iterate}}",
        "alertname instance ",
    ),
];
