//! Inflection helpers of handlebars-helpers: singular or plural by count, and ordinals.

use serde_json::Value;

use super::js;
use super::math::js_round;
use crate::template::registry::{Spec, spec};

pub(in crate::template) const HELPERS: &[Spec] = &[
    spec("inflect", 3, 4, |c| {
        let count = c.arg(0);
        let plural = js::gt(count, &Value::from(1)) || count.as_f64() == Some(0.0);
        let word = if plural { c.arg(2) } else { c.arg(1) };
        Ok(if *c.arg(3) == Value::Bool(true) {
            format!("{} {}", js::string(count), js::string(word)).into()
        } else {
            word.clone()
        })
    })
    .missing_ok()
    .doc(
        "`singular` or `plural` by `count` (`true` to include the count)",
        "{{inflect (length data.tags) \"tag\" \"tags\" true}}",
        "2 tags",
    ),
    spec("ordinalize", 1, 1, |c| {
        let v = c.arg(0);
        let n = js_round(js::number(v)).abs();
        let s = js::string(v);
        let suffix = match (n % 100.0, n % 10.0) {
            (r, _) if (11.0..=13.0).contains(&r) => "th",
            (_, 1.0) => "st",
            (_, 2.0) => "nd",
            (_, 3.0) => "rd",
            _ => "th",
        };
        Ok(format!("{s}{suffix}").into())
    })
    .missing_ok()
    .doc("`1st`, `2nd`, `3rd`, `4th`…", "{{ordinalize 22}}", "22nd"),
];
