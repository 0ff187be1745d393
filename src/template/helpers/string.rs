//! String helpers of handlebars-helpers (case changes, trimming, truncating, replacing,
//! splitting), and Siren's `upper`, `lower`, `startsWithText` and `endsWith`.

use handlebars::RenderError;
use serde_json::Value;

use super::transform::{
    capitalize, capitalize_all, changecase, chop, escape_mustaches, js_trim, sentence, titleize,
    truncate_to, upper_first,
};
use super::{js, text};
use crate::template::registry::{Block, Call, Spec, block, spec};

/// handlebars-utils' `isString`: text that is not empty.
fn nonempty(v: &Value) -> Option<&str> {
    v.as_str().filter(|s| !s.is_empty())
}

/// A helper over one string argument; anything else gives `""`.
macro_rules! on_text {
    ($f:expr) => {
        |c: &Call<'_>| Ok(nonempty(c.arg(0)).map_or(Value::from(""), |s| Value::from($f(s))))
    };
}

pub(in crate::template) const HELPERS: &[Spec] = &[
    spec("append", 2, 2, |c| {
        Ok(match (c.arg(0), c.arg(1)) {
            (Value::String(a), Value::String(b)) => format!("{a}{b}").into(),
            (a, _) => a.clone(),
        })
    })
    .missing_ok()
    .doc(
        "`text` followed by `suffix`",
        "{{append data.host \".example\"}}",
        "db-1.example",
    ),
    spec("camelcase", 1, 1, on_text!(|s| changecase(s, upper_first)))
        .missing_ok()
        .doc(
            "`text` in camelCase",
            "{{camelcase \"disk full-alert\"}}",
            "diskFullAlert",
        ),
    spec("capitalize", 1, 1, on_text!(capitalize))
        .missing_ok()
        .doc(
            "the first character in upper case",
            "{{capitalize data.severity}}",
            "Critical",
        ),
    spec("capitalizeAll", 1, 1, on_text!(capitalize_all))
        .missing_ok()
        .doc(
            "every word capitalized",
            "{{capitalizeAll \"disk full on db-1\"}}",
            "Disk Full On Db-1",
        ),
    spec("center", 2, 2, |c| {
        let Some(s) = nonempty(c.arg(0)) else {
            return Ok("".into());
        };
        let n = js::number(c.arg(1));
        let pad = "&nbsp;".repeat(if n > 0.0 {
            n.ceil().min(1000.0) as usize
        } else {
            0
        });
        Ok(format!("{pad}{s}{pad}").into())
    })
    .missing_ok()
    .doc(
        "`text` between `n` `&nbsp;` on each side",
        "{{center \"x\" 1}}",
        "&nbsp;x&nbsp;",
    ),
    spec("chop", 1, 1, on_text!(chop)).missing_ok().doc(
        "`text` without leading and trailing non-word characters",
        "{{chop \"--db-1__\"}}",
        "db-1",
    ),
    spec(
        "dashcase",
        1,
        1,
        on_text!(|s| changecase(s, |c| format!("-{c}"))),
    )
    .missing_ok()
    .doc(
        "`text` in dash-case",
        "{{dashcase \"Disk Full\"}}",
        "disk-full",
    ),
    spec(
        "dotcase",
        1,
        1,
        on_text!(|s| changecase(s, |c| format!(".{c}"))),
    )
    .missing_ok()
    .doc(
        "`text` in dot.case",
        "{{dotcase \"Disk Full\"}}",
        "disk.full",
    ),
    spec("downcase", 0, 1, |c| Ok(case(c.arg(0), false)))
        .on_block(|c, b| case_block(c, b, false))
        .missing_ok()
        .doc(
            "`lowercase` by another name",
            "{{downcase data.severity}}",
            "critical",
        ),
    spec("ellipsis", 2, 2, |c| {
        let Some(s) = nonempty(c.arg(0)) else {
            return Ok(Value::Null);
        };
        let limit = js::number(c.arg(1));
        if (js::len16(s) as f64) <= limit {
            return Ok(s.into());
        }
        Ok(format!("{}…", truncate_to(s, limit, "")).into())
    })
    .missing_ok()
    .doc(
        "`text` cut to `length` characters and `…`",
        "{{ellipsis data.subject 7}}",
        "PROBLEM…",
    ),
    spec("hyphenate", 1, 1, on_text!(|s: &str| s.replace(' ', "-")))
        .missing_ok()
        .doc(
            "spaces as hyphens",
            "{{hyphenate \"disk full\"}}",
            "disk-full",
        ),
    spec("isString", 1, 1, |c| Ok(c.arg(0).is_string().into()))
        .missing_ok()
        .doc("`true` for text", "{{isString data.host}}", "true"),
    spec("lowercase", 0, 1, |c| Ok(case(c.arg(0), false)))
        .on_block(|c, b| case_block(c, b, false))
        .missing_ok()
        .doc(
            "`text` in lower case (or the block's output)",
            "{{lowercase data.labels.alertname}}",
            "diskfull",
        ),
    spec("occurrences", 2, 2, |c| {
        let Some(s) = nonempty(c.arg(0)) else {
            return Ok("".into());
        };
        let sub = js::string(c.arg(1));
        if sub.is_empty() {
            return Err("an empty substring occurs forever".into());
        }
        Ok(s.matches(sub.as_str()).count().into())
    })
    .missing_ok()
    .doc(
        "how often `substring` occurs",
        "{{occurrences data.subject \"s\"}}",
        "1",
    ),
    spec(
        "pascalcase",
        1,
        1,
        on_text!(|s| capitalize(&changecase(s, upper_first))),
    )
    .missing_ok()
    .doc(
        "`text` in PascalCase",
        "{{pascalcase \"disk full\"}}",
        "DiskFull",
    ),
    spec(
        "pathcase",
        1,
        1,
        on_text!(|s| changecase(s, |c| format!("/{c}"))),
    )
    .missing_ok()
    .doc(
        "`text` in path/case",
        "{{pathcase \"disk full\"}}",
        "disk/full",
    ),
    spec("plusify", 1, 2, |c| {
        let Some(s) = nonempty(c.arg(0)) else {
            return Ok("".into());
        };
        let sep = nonempty(c.arg(1)).unwrap_or(" ");
        Ok(s.replace(sep, "+").into())
    })
    .missing_ok()
    .doc(
        "spaces (or `separator`) as `+`",
        "{{plusify \"disk full\"}}",
        "disk+full",
    ),
    spec("prepend", 2, 2, |c| {
        Ok(match (c.arg(0), c.arg(1)) {
            (Value::String(a), Value::String(b)) => format!("{b}{a}").into(),
            (a, _) => a.clone(),
        })
    })
    .missing_ok()
    .doc(
        "`prefix` followed by `text`",
        "{{prepend data.host \"host \"}}",
        "host db-1",
    ),
    block("raw", 0, 0, |_, b| {
        // `options.fn()`: the block over no context at all.
        let body = b.render_string(Some(Value::Null))?;
        b.write(&escape_mustaches(&body))
    })
    .same_scope()
    .doc(
        "the block's output with `{{` escaped as `\\{{`",
        "{{#raw}}x{{/raw}}",
        "x",
    ),
    spec("remove", 2, 2, |c| {
        let Some(s) = nonempty(c.arg(0)) else {
            return Ok("".into());
        };
        Ok(match nonempty(c.arg(1)) {
            Some(p) => s.replace(p, "").into(),
            None => s.into(),
        })
    })
    .missing_ok()
    .doc(
        "`text` without any `substring`",
        "{{remove data.subject \"PROBLEM: \"}}",
        "Disk full on db-1",
    ),
    spec("removeFirst", 2, 2, |c| {
        let Some(s) = nonempty(c.arg(0)) else {
            return Ok("".into());
        };
        Ok(match nonempty(c.arg(1)) {
            Some(p) => s.replacen(p, "", 1).into(),
            None => s.into(),
        })
    })
    .missing_ok()
    .doc(
        "`text` without the first `substring`",
        "{{removeFirst \"a-b-c\" \"-\"}}",
        "ab-c",
    ),
    spec("replace", 2, 3, |c| replace(c, usize::MAX))
        .missing_ok()
        .doc(
            "`text` with every `from` replaced by `to`",
            "{{replace data.host \"-\" \"_\"}}",
            "db_1",
        ),
    spec("replaceFirst", 2, 3, |c| replace(c, 1))
        .missing_ok()
        .doc(
            "`text` with the first `from` replaced by `to`",
            "{{replaceFirst \"a-b-c\" \"-\" \"+\"}}",
            "a+b-c",
        ),
    spec(
        "reverse",
        1,
        1,
        on_text!(|s: &str| {
            let mut units: Vec<u16> = s.encode_utf16().collect();
            units.reverse();
            String::from_utf16_lossy(&units)
        }),
    )
    .missing_ok()
    .doc(
        "the characters of `text` reversed (an array gives `\"\"`)",
        "{{reverse data.host}}",
        "1-bd",
    ),
    spec("sentence", 1, 1, on_text!(sentence)).missing_ok().doc(
        "each sentence capitalized, the rest lower case",
        "{{sentence \"disk FULL. check it\"}}",
        "Disk full. Check it",
    ),
    spec(
        "snakecase",
        1,
        1,
        on_text!(|s| changecase(s, |c| format!("_{c}"))),
    )
    .missing_ok()
    .doc(
        "`text` in snake_case",
        "{{snakecase \"Disk Full\"}}",
        "disk_full",
    ),
    spec("split", 1, 2, |c| {
        let Some(s) = nonempty(c.arg(0)) else {
            return Ok("".into());
        };
        let sep = c.arg(1).as_str().filter(|s| !s.is_empty());
        let parts: Vec<Value> = match sep {
            Some(sep) => s.split(sep).map(Value::from).collect(),
            None => s.split(',').map(Value::from).collect(),
        };
        Ok(Value::Array(parts))
    })
    .missing_ok()
    .doc(
        "`text` cut at every `separator` (default `,`), as an array",
        "{{first (split data.labels.instance \":\")}}",
        "db-1",
    ),
    block("startsWith", 2, 2, |c, b| {
        let yes = c
            .arg(1)
            .as_str()
            .is_some_and(|s| s.starts_with(&js::string(c.arg(0))));
        if yes {
            b.render(None, &[])
        } else {
            b.inverse()
        }
    })
    .same_scope()
    .doc(
        "the block when `text` starts with `prefix` (prefix first)",
        "{{#startsWith \"PROBLEM\" data.subject}}down{{else}}up{{/startsWith}}",
        "down",
    ),
    spec("titleize", 1, 1, on_text!(titleize)).missing_ok().doc(
        "every word capitalized, `-` and `_` as spaces",
        "{{titleize \"disk_full-alert\"}}",
        "Disk Full Alert",
    ),
    spec("trim", 1, 1, |c| {
        Ok(c.arg(0).as_str().map_or("", js_trim).into())
    })
    .missing_ok()
    .doc(
        "`text` without leading and trailing whitespace",
        "{{trim \"  db-1  \"}}",
        "db-1",
    ),
    spec("trimLeft", 1, 1, |c| {
        Ok(nonempty(c.arg(0)).map_or(Value::Null, |s| s.trim_start().into()))
    })
    .missing_ok()
    .doc(
        "`text` without leading whitespace",
        "[{{trimLeft \"  db-1 \"}}]",
        "[db-1 ]",
    ),
    spec("trimRight", 1, 1, |c| {
        Ok(nonempty(c.arg(0)).map_or(Value::Null, |s| s.trim_end().into()))
    })
    .missing_ok()
    .doc(
        "`text` without trailing whitespace",
        "[{{trimRight \" db-1  \"}}]",
        "[ db-1]",
    ),
    spec("truncate", 2, 3, |c| {
        let Some(s) = nonempty(c.arg(0)) else {
            return Ok(Value::Null);
        };
        let suffix = c.arg(2).as_str().unwrap_or("");
        let limit = js::number(c.arg(1));
        if (js::len16(s) as f64) > limit {
            return Ok(truncate_to(s, limit, suffix).into());
        }
        Ok(s.into())
    })
    .missing_ok()
    .doc(
        "at most `length` characters, ending with `suffix` when cut",
        "{{truncate data.subject 12 \"…\"}}",
        "PROBLEM: Di…",
    ),
    spec("truncateWords", 2, 3, |c| {
        let Some(s) = nonempty(c.arg(0)) else {
            return Ok(Value::Null);
        };
        if !js::is_number(c.arg(1)) {
            return Ok(Value::Null);
        }
        let suffix = c.arg(2).as_str().unwrap_or("…");
        let n = js::number(c.arg(1)).max(0.0) as usize;
        let words: Vec<&str> = s.split([' ', '\t']).collect();
        if n >= words.len() {
            return Ok(s.trim().into());
        }
        Ok(format!("{}{suffix}", words[..n].join(" ").trim()).into())
    })
    .missing_ok()
    .doc(
        "the first `count` words, then `suffix` (default `…`) when cut",
        "{{truncateWords data.subject 2}}",
        "PROBLEM: Disk…",
    ),
    spec("upcase", 0, 1, |c| Ok(case(c.arg(0), true)))
        .on_block(|c, b| case_block(c, b, true))
        .missing_ok()
        .doc(
            "`uppercase` by another name",
            "{{upcase data.host}}",
            "DB-1",
        ),
    spec("uppercase", 0, 1, |c| Ok(case(c.arg(0), true)))
        .on_block(|c, b| case_block(c, b, true))
        .missing_ok()
        .doc(
            "`text` in upper case (or the block's output)",
            "{{uppercase data.host}}",
            "DB-1",
        ),
    // Siren's own.
    spec("upper", 1, 1, |c| Ok(text(c.arg(0))?.to_uppercase().into())).doc(
        "Siren: `text` (or a number) in upper case",
        "{{upper data.host}}",
        "DB-1",
    ),
    spec("lower", 1, 1, |c| Ok(text(c.arg(0))?.to_lowercase().into())).doc(
        "Siren: `text` (or a number) in lower case",
        "{{lower data.labels.alertname}}",
        "diskfull",
    ),
    spec("startsWithText", 2, 2, |c| {
        Ok(text(c.arg(0))?.starts_with(text(c.arg(1))?.as_ref()).into())
    })
    .doc(
        "Siren (was `startsWith` before 0.2): `true` if `text` starts with `prefix`",
        "{{startsWithText data.subject \"PROBLEM\"}}",
        "true",
    ),
    spec("endsWith", 2, 2, |c| {
        Ok(text(c.arg(0))?.ends_with(text(c.arg(1))?.as_ref()).into())
    })
    .doc(
        "Siren: `true` if `text` ends with `suffix`",
        "{{endsWith data.host \"-1\"}}",
        "true",
    ),
];

fn replace(c: &Call<'_>, times: usize) -> Result<Value, String> {
    let Some(s) = nonempty(c.arg(0)) else {
        return Ok("".into());
    };
    let Some(from) = nonempty(c.arg(1)) else {
        return Ok(s.into());
    };
    let to = nonempty(c.arg(2)).unwrap_or("");
    Ok(s.replacen(from, to, times).into())
}

fn case(v: &Value, up: bool) -> Value {
    let s = nonempty(v).unwrap_or("");
    (if up {
        s.to_uppercase()
    } else {
        s.to_lowercase()
    })
    .into()
}

/// `uppercase`/`lowercase`: of the argument, or of the block's output.
fn case_block(c: &Call<'_>, b: &mut Block<'_, '_, '_, '_>, up: bool) -> Result<(), RenderError> {
    let s = if c.is_block && c.args.is_empty() {
        b.render_string(None)?
    } else {
        nonempty(c.arg(0)).unwrap_or("").to_string()
    };
    b.write(&if up {
        s.to_uppercase()
    } else {
        s.to_lowercase()
    })
}
