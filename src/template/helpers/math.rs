//! Math helpers over numbers and numeric text; whole results print as integers.

use serde_json::Value;

use super::{Num, number, number_value};
use crate::template::registry::{Call, Spec, spec};

pub(in crate::template) const HELPERS: &[Spec] = &[
    spec("add", 2, 2, |c| {
        arithmetic(c, i64::checked_add, |a, b| a + b)
    })
    .doc("`a + b`", "{{add data.count 1}}", "13"),
    spec("subtract", 2, 2, |c| {
        arithmetic(c, i64::checked_sub, |a, b| a - b)
    })
    .doc("`a - b`", "{{subtract data.count 2}}", "10"),
    spec("multiply", 2, 2, |c| {
        arithmetic(c, i64::checked_mul, |a, b| a * b)
    })
    .doc("`a × b`", "{{multiply data.load 2}}", "14.5"),
    spec("divide", 2, 2, divide).doc("`a ÷ b`", "{{divide data.count 8}}", "1.5"),
    spec("round", 1, 2, round).doc(
        "`n` rounded to `decimals` places (default 0)",
        "{{round data.load 1}}",
        "7.3",
    ),
];

fn arithmetic(
    c: &Call<'_>,
    int: fn(i64, i64) -> Option<i64>,
    float: fn(f64, f64) -> f64,
) -> Result<Value, String> {
    let (a, b) = (number(c.arg(0))?, number(c.arg(1))?);
    let result = match (a, b) {
        (Num::Int(x), Num::Int(y)) => int(x, y)
            .map(Num::Int)
            .unwrap_or_else(|| Num::Float(float(x as f64, y as f64))),
        _ => Num::Float(float(a.float(), b.float())),
    };
    number_value(result)
}

fn divide(c: &Call<'_>) -> Result<Value, String> {
    let (a, b) = (number(c.arg(0))?, number(c.arg(1))?);
    if b.float() == 0.0 {
        return Err("division by zero".to_string());
    }
    number_value(Num::Float(a.float() / b.float()))
}

fn round(c: &Call<'_>) -> Result<Value, String> {
    let n = number(c.arg(0))?;
    let decimals = match c.args.get(1) {
        Some(v) => match number(v)? {
            Num::Int(d) if (0..=15).contains(&d) => d as i32,
            _ => {
                return Err(format!(
                    "decimals must be a whole number from 0 to 15, got {v}"
                ));
            }
        },
        None => 0,
    };
    if let Num::Int(i) = n {
        return Ok(i.into());
    }
    let scale = 10f64.powi(decimals);
    number_value(Num::Float((n.float() * scale).round() / scale))
}
