//! Number helpers of handlebars-helpers: byte sizes, abbreviations, thousands separators and
//! JavaScript's `toFixed`, `toPrecision`, `toExponential`, `parseFloat` and `parseInt`.

use serde_json::Value;

use super::js;
use super::math::js_round;
use crate::template::registry::{Call, Spec, spec};

/// The first `k` significant digits of `a` (> 0), rounded half up on its exact value, and the
/// decimal exponent of the first: `a ≈ d.ddd × 10^e`.
fn round_sig(a: f64, k: usize) -> (String, i32) {
    let sci = format!("{:.1100e}", a);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let mut e: i32 = exp.parse().unwrap_or(0);
    let all: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    let mut digits: Vec<u8> = all[..k.min(all.len())].to_vec();
    if all.get(k).is_some_and(|d| *d >= b'5') {
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, b'1');
                digits.pop();
                e += 1;
                break;
            }
            i -= 1;
            if digits[i] == b'9' {
                digits[i] = b'0';
            } else {
                digits[i] += 1;
                break;
            }
        }
    }
    (String::from_utf8(digits).unwrap_or_default(), e)
}

fn sign(x: f64) -> &'static str {
    if x < 0.0 { "-" } else { "" }
}

fn exponent(e: i32) -> String {
    if e >= 0 {
        format!("e+{e}")
    } else {
        format!("e{e}")
    }
}

/// `x.toFixed(f)`.
pub(super) fn to_fixed(x: f64, f: usize) -> String {
    if !x.is_finite() || x.abs() >= 1e21 {
        return js::number_string(x);
    }
    let a = x.abs();
    let int_digits = if a == 0.0 { 0 } else { round_sig(a, 1).1 + 1 };
    let k = int_digits + f as i32;
    let n = if a == 0.0 || k < 0 {
        "0".to_string()
    } else if k == 0 {
        // Only the rounding digit is left: from 5 up it makes one unit of the last place.
        let first = format!("{a:e}").bytes().next().unwrap_or(b'0');
        if first >= b'5' {
            "1".into()
        } else {
            "0".into()
        }
    } else {
        let (d, e) = round_sig(a, k as usize);
        let extra = (e + 1 + f as i32) - d.len() as i32;
        format!("{d}{}", "0".repeat(extra.max(0) as usize))
    };
    let n = format!("{:0>width$}", n, width = f + 1);
    let (int, frac) = n.split_at(n.len() - f);
    let body = if f == 0 {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    };
    format!("{}{body}", sign(x))
}

/// `x.toPrecision(p)`.
fn to_precision(x: f64, p: usize) -> String {
    if !x.is_finite() {
        return js::number_string(x);
    }
    if x == 0.0 {
        return if p > 1 {
            format!("0.{}", "0".repeat(p - 1))
        } else {
            "0".into()
        };
    }
    let (d, e) = round_sig(x.abs(), p);
    let body = if e < -6 || e >= p as i32 {
        let rest = if p > 1 {
            format!(".{}", &d[1..])
        } else {
            String::new()
        };
        format!("{}{rest}{}", &d[..1], exponent(e))
    } else if e >= 0 {
        let cut = e as usize + 1;
        if p > cut {
            format!("{}.{}", &d[..cut], &d[cut..])
        } else {
            d
        }
    } else {
        format!("0.{}{d}", "0".repeat((-e - 1) as usize))
    };
    format!("{}{body}", sign(x))
}

/// `x.toExponential(f)`.
fn to_exponential(x: f64, f: usize) -> String {
    if !x.is_finite() {
        return js::number_string(x);
    }
    let (d, e) = if x == 0.0 {
        ("0".repeat(f + 1), 0)
    } else {
        round_sig(x.abs(), f + 1)
    };
    let rest = if f > 0 {
        format!(".{}", &d[1..])
    } else {
        String::new()
    };
    format!("{}{}{rest}{}", sign(x), &d[..1], exponent(e))
}

fn digits_arg(c: &Call<'_>, i: usize, default: f64, max: f64) -> Result<usize, String> {
    let v = c.arg(i);
    let d = if js::is_number(v) {
        js::number(v).trunc()
    } else {
        default
    };
    if !(0.0..=max).contains(&d) {
        return Err(format!("digits argument must be between 0 and {max}"));
    }
    Ok(d as usize)
}

fn number_or_zero(v: &Value) -> f64 {
    if js::is_number(v) { js::number(v) } else { 0.0 }
}

/// A JavaScript number followed by a unit, as `number += ' kB'` makes it.
fn with_unit(n: f64, unit: &str) -> Value {
    format!("{}{unit}", js::number_string(n)).into()
}

pub(in crate::template) const HELPERS: &[Spec] = &[
    spec("bytes", 1, 2, bytes).missing_ok().doc(
        "a byte count in B, kB, MB… (or the length of text)",
        "{{bytes 1234567}}",
        "1.23 MB",
    ),
    spec("addCommas", 1, 1, |c| {
        if c.arg(0).is_null() {
            return Err("cannot read properties of undefined (reading 'toString')".into());
        }
        Ok(add_commas(&js::string(c.arg(0))).into())
    })
    .missing_ok()
    .doc(
        "thousands separated by commas",
        "{{addCommas 1234567}}",
        "1,234,567",
    ),
    spec("phoneNumber", 1, 1, |c| {
        let units: Vec<u16> = js::string(c.arg(0)).encode_utf16().collect();
        let part = |a: usize, n: usize| {
            String::from_utf16_lossy(&units[a.min(units.len())..(a + n).min(units.len())])
        };
        Ok(format!("({}) {}-{}", part(0, 3), part(3, 3), part(6, 4)).into())
    })
    .missing_ok()
    .doc(
        "ten digits as a US phone number",
        "{{phoneNumber 8005551212}}",
        "(800) 555-1212",
    ),
    spec("toAbbr", 1, 2, to_abbr).missing_ok().doc(
        "a number abbreviated with k, m, b, t, q",
        "{{toAbbr 1234567}}",
        "1.23m",
    ),
    spec("toExponential", 1, 2, |c| {
        let d = if c.arg(1).is_null() {
            0
        } else {
            digits_arg(c, 1, 0.0, 100.0)?
        };
        Ok(to_exponential(number_or_zero(c.arg(0)), d).into())
    })
    .missing_ok()
    .doc(
        "`n.toExponential(digits)`",
        "{{toExponential 12345 2}}",
        "1.23e+4",
    ),
    spec("toFixed", 1, 2, |c| {
        let d = digits_arg(c, 1, 0.0, 100.0)?;
        Ok(to_fixed(number_or_zero(c.arg(0)), d).into())
    })
    .missing_ok()
    .doc("`n.toFixed(digits)`", "{{toFixed data.load 1}}", "7.3"),
    spec("toFloat", 1, 1, |c| Ok(js::num(js::parse_float(c.arg(0)))))
        .missing_ok()
        .doc("`parseFloat(text)`", "{{toFloat \"7.25 load\"}}", "7.25"),
    spec("toInt", 1, 1, |c| Ok(js::num(js::parse_int(c.arg(0)))))
        .missing_ok()
        .doc("`parseInt(text, 10)`", "{{toInt data.count}}", "12"),
    spec("toPrecision", 1, 2, |c| {
        let p = digits_arg(c, 1, 1.0, 100.0)?;
        if p == 0 {
            return Err("toPrecision() argument must be between 1 and 100".into());
        }
        Ok(to_precision(number_or_zero(c.arg(0)), p).into())
    })
    .missing_ok()
    .doc(
        "`n.toPrecision(digits)`",
        "{{toPrecision data.load 2}}",
        "7.3",
    ),
];

fn bytes(c: &Call<'_>) -> Result<Value, String> {
    let v = c.arg(0);
    if v.is_null() {
        return Ok("0 B".into());
    }
    let mut n = if js::is_number(v) {
        js::number(v)
    } else {
        let l = match v {
            Value::String(s) => js::len16(s),
            Value::Array(a) => a.len(),
            _ => 0,
        };
        if l == 0 {
            return Ok("0 B".into());
        }
        l as f64
    };
    let precision = if js::is_number(c.arg(1)) {
        js::number(c.arg(1))
    } else {
        2.0
    };
    let precision = 10f64.powf(precision);
    const ABBR: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    for len in (0..8).rev() {
        let size = 10f64.powi(len * 3);
        if size <= n + 1.0 {
            n = js_round(n * precision / size) / precision;
            return Ok(with_unit(n, &format!(" {}", ABBR[len as usize])));
        }
    }
    if 0.001 <= n + 1.0 {
        n = js_round(n * precision / 0.001) / precision;
        return Ok(with_unit(n, " undefined"));
    }
    Ok(js::num(n))
}

fn to_abbr(c: &Call<'_>) -> Result<Value, String> {
    let n = number_or_zero(c.arg(0));
    let p = if c.arg(1).is_null() {
        2.0
    } else {
        js::number(c.arg(1))
    };
    let precision = 10f64.powf(p);
    for (len, unit) in ["k", "m", "b", "t", "q"].iter().enumerate().rev() {
        let size = 10f64.powi((len as i32 + 1) * 3);
        if size <= n + 1.0 {
            return Ok(with_unit(js_round(n * precision / size) / precision, unit));
        }
    }
    Ok(js::num(n))
}

/// `/(\d)(?=(\d\d\d)+(?!\d))/g` → `$1,`: a comma after each digit followed by a multiple of
/// three digits and then a non-digit (decimals included, as the library does).
fn add_commas(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    for (i, ch) in chars.iter().enumerate() {
        out.push(*ch);
        if ch.is_ascii_digit() {
            let run = chars[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if run > 0 && run % 3 == 0 {
                out.push(',');
            }
        }
    }
    out
}
