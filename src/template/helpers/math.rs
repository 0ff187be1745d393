//! Math helpers of handlebars-helpers: JavaScript numbers (`0.1 + 0.2` is
//! `0.30000000000000004`), numeric text accepted, anything else an error.

use serde_json::Value;

use super::js;
use crate::template::registry::{Call, Spec, spec};

fn num(c: &Call<'_>, i: usize, what: &str) -> Result<f64, String> {
    let v = c.arg(i);
    if js::is_number(v) {
        Ok(js::number(v))
    } else {
        Err(format!("expected {what} to be a number"))
    }
}

fn binary(c: &Call<'_>, f: fn(f64, f64) -> f64) -> Result<Value, String> {
    let a = num(c, 0, "the first argument")?;
    let b = num(c, 1, "the second argument")?;
    Ok(js::num(f(a, b)))
}

/// `Math.round`: halves go up (`-2.5` is `-2`).
pub(super) fn js_round(x: f64) -> f64 {
    let f = x.floor();
    if x - f >= 0.5 { f + 1.0 } else { f }
}

/// `[].concat.apply([], arguments)`: arrays are spread one level.
fn flat(c: &Call<'_>) -> Vec<Value> {
    c.args
        .iter()
        .flat_map(|v| match v {
            Value::Array(a) => a.clone(),
            other => vec![(*other).clone()],
        })
        .collect()
}

fn sum(items: &[Value]) -> f64 {
    items
        .iter()
        .filter(|v| js::is_number(v))
        .map(js::number)
        .sum()
}

pub(in crate::template) const HELPERS: &[Spec] = &[
    spec("abs", 1, 1, |c| Ok(js::num(num(c, 0, "a number")?.abs())))
        .missing_ok()
        .doc("`|n|`", "{{abs -3}}", "3"),
    spec("add", 2, 2, |c| {
        let (a, b) = (c.arg(0), c.arg(1));
        Ok(if js::is_number(a) && js::is_number(b) {
            js::num(js::number(a) + js::number(b))
        } else if let (Value::String(x), Value::String(y)) = (a, b) {
            format!("{x}{y}").into()
        } else {
            "".into()
        })
    })
    .missing_ok()
    .doc(
        "`a + b` (two texts are joined)",
        "{{add data.count 1}}",
        "13",
    ),
    spec("avg", 1, 1, |c| {
        let items = flat(c);
        Ok(js::num(sum(&items) / items.len() as f64))
    })
    .variadic()
    .missing_ok()
    .doc(
        "the average of the numbers (arrays are spread)",
        "{{avg 1 2 3 4}}",
        "2.5",
    ),
    spec("ceil", 1, 1, |c| Ok(js::num(num(c, 0, "a number")?.ceil())))
        .missing_ok()
        .doc("`n` rounded up", "{{ceil data.load}}", "8"),
    spec("divide", 2, 2, |c| binary(c, |a, b| a / b))
        .missing_ok()
        .doc("`a ÷ b`", "{{divide data.count 8}}", "1.5"),
    spec("floor", 1, 1, |c| {
        Ok(js::num(num(c, 0, "a number")?.floor()))
    })
    .missing_ok()
    .doc("`n` rounded down", "{{floor data.load}}", "7"),
    spec("minus", 2, 2, |c| binary(c, |a, b| a - b))
        .missing_ok()
        .doc("`a - b`", "{{minus data.count 2}}", "10"),
    spec("modulo", 2, 2, |c| binary(c, |a, b| a % b))
        .missing_ok()
        .doc("the remainder of `a ÷ b`", "{{modulo data.count 5}}", "2"),
    spec("multiply", 2, 2, |c| binary(c, |a, b| a * b))
        .missing_ok()
        .doc("`a × b`", "{{multiply data.load 2}}", "14.5"),
    spec("plus", 2, 2, |c| binary(c, |a, b| a + b))
        .missing_ok()
        .doc("`a + b`", "{{plus data.count 1}}", "13"),
    spec("random", 2, 2, |c| {
        let (min, max) = (num(c, 0, "minimum")?, num(c, 1, "maximum")?);
        let span = (max - min + 1.0).max(0.0);
        Ok(js::num(min + (fastrand::f64() * span).floor()))
    })
    .missing_ok()
    .doc(
        "a whole number from `min` to `max`",
        "{{lte (random 1 6) 6}}",
        "true",
    ),
    spec("remainder", 2, 2, |c| {
        Ok(js::num(js::number(c.arg(0)) % js::number(c.arg(1))))
    })
    .missing_ok()
    .doc("`a % b`", "{{remainder 7 5}}", "2"),
    spec("round", 1, 2, round).missing_ok().doc(
        "`n` rounded, halves up; Siren takes a number of decimals as well",
        "{{round data.load}}",
        "7",
    ),
    spec("subtract", 2, 2, |c| binary(c, |a, b| a - b))
        .missing_ok()
        .doc("`a - b`", "{{subtract data.count 2}}", "10"),
    spec("sum", 1, 1, |c| Ok(js::num(sum(&flat(c)))))
        .variadic()
        .missing_ok()
        .doc(
            "the sum of the numbers (arrays are spread)",
            "{{sum 1 2 data.count}}",
            "15",
        ),
    spec("times", 2, 2, |c| binary(c, |a, b| a * b))
        .missing_ok()
        .doc("`multiply` by another name", "{{times 3 4}}", "12"),
];

fn round(c: &Call<'_>) -> Result<Value, String> {
    let n = num(c, 0, "a number")?;
    let Some(d) = c.args.get(1) else {
        return Ok(js::num(js_round(n)));
    };
    let d = js::number(d);
    if !(0.0..=15.0).contains(&d) || d.fract() != 0.0 {
        return Err(format!(
            "decimals must be a whole number from 0 to 15, got {}",
            js::string(c.arg(1))
        ));
    }
    let scale = 10f64.powi(d as i32);
    Ok(js::num(js_round(n * scale) / scale))
}
