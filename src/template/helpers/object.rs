//! Object helpers: values as JSON.

use serde_json::Value;

use crate::template::registry::{Spec, spec};

pub(in crate::template) const HELPERS: &[Spec] = &[
    spec("json", 1, 1, |c| {
        serde_json::to_string(c.arg(0))
            .map(Value::from)
            .map_err(|e| e.to_string())
    })
    .doc(
        "the value as compact JSON",
        "{{json data.labels}}",
        "{\"alertname\":\"DiskFull\",\"instance\":\"db-1:9100\"}",
    ),
    spec("jsonPretty", 1, 1, |c| {
        serde_json::to_string_pretty(c.arg(0))
            .map(Value::from)
            .map_err(|e| e.to_string())
    })
    .doc(
        "the value as indented JSON",
        "{{jsonPretty data.tags}}",
        "[\n  \"disk\",\n  \"prod\"\n]",
    ),
];
