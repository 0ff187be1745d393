//! The static checker: every template is compiled and walked when the configuration loads, so
//! syntax errors, unknown helpers, wrong argument counts, literal regexes and date formats that
//! cannot work, and paths outside the template context stop start-up with a one-line message.

use std::collections::HashMap;

use handlebars::TemplateErrorReason;
use handlebars::template::{Parameter, Subexpression, Template, TemplateElement};
use serde_json::Value;

use super::build_regex;
use super::helpers::builtins::VALUE_HELPER;
use super::helpers::date::{format_date, moment_format_is_literal, zone};
use super::registry::{find, helpers};

/// The one-line message for a template that handlebars cannot parse: where, and what is wrong.
/// Handlebars' own Display is a multi-line snippet naming an internal template and listing
/// grammar rule names.
pub fn compile_error_message(e: &handlebars::TemplateError) -> String {
    let reason = match e.reason() {
        TemplateErrorReason::InvalidSyntax(_) => {
            "invalid handlebars syntax; every {{#block}} needs its arguments and a closing \
             {{/block}}, and every {{ a matching }}"
                .to_string()
        }
        other => other.to_string(),
    };
    format!("template does not compile{}: {reason}", at(e.pos()))
}

fn at(pos: Option<(usize, usize)>) -> String {
    pos.map(|(line, column)| format!(" at line {line}, column {column}"))
        .unwrap_or_default()
}

/// Compiles and checks one template source the way [`Templates::new`] does; the error is the
/// one-line message (e.g. `template does not compile at line 1, column 1: unknown helper
/// "uper" (did you mean "upper"?)`).
pub fn check(source: &str) -> Result<(), String> {
    compile(source, "template").map(drop)
}

pub(super) fn compile(source: &str, name: &str) -> Result<Template, String> {
    let template = Template::compile_with_name(source, name.to_string()).map_err(|e| {
        let mut message = compile_error_message(&e);
        if matches!(e.reason(), TemplateErrorReason::InvalidSyntax(_)) && has_bad_escape(source) {
            message.push_str(
                "; inside \"…\" a backslash starts a JSON escape, so a regex \\d is written \\\\d",
            );
        }
        message
    })?;
    Checker
        .template(&template, true)
        .map_err(|(pos, reason)| format!("template does not compile{}: {reason}", at(pos)))?;
    let mut template = template;
    js_values(&mut template);
    Ok(template)
}

/// Every plain value (`{{data.x}}`, `{{{this}}}`) becomes a call of [`VALUE_HELPER`], which
/// writes it as handlebars.js does (`a,b` for an array, `1.5` and `1e+21` for numbers)
/// instead of handlebars-rust's `[a, b]`.
fn js_values(t: &mut Template) {
    for element in &mut t.elements {
        match element {
            TemplateElement::Expression(ht) | TemplateElement::HtmlExpression(ht) => {
                let plain = ht.params.is_empty() && ht.hash.is_empty() && !ht.block;
                // `{{js}}` parses as a path but calls the helper when there is one.
                let value = match &ht.name {
                    Parameter::Path(_) | Parameter::Name(_) => ht
                        .name
                        .as_name()
                        .is_some_and(|n| find(n).is_none() && arity_of(n).is_none()),
                    _ => false,
                };
                let param = match &ht.name {
                    Parameter::Name(n) => Parameter::parse(n).ok(),
                    other => Some(other.clone()),
                };
                if plain
                    && value
                    && let Some(param) = param
                {
                    ht.name = Parameter::Name(VALUE_HELPER.into());
                    ht.params.push(param);
                }
            }
            TemplateElement::HelperBlock(ht) => {
                for inner in [&mut ht.template, &mut ht.inverse].into_iter().flatten() {
                    js_values(inner);
                }
            }
            _ => {}
        }
    }
}

/// A backslash inside a `{{…}}` string literal that JSON does not allow (`"\d"`): the usual
/// cause of a syntax error in a template with a regex.
fn has_bad_escape(source: &str) -> bool {
    let mut chars = source.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('"' | '\\' | '/' | 'b' | 'f' | 'n' | 'r' | 't' | 'u' | '{' | '\'') => {}
                _ => return true,
            }
        }
    }
    false
}

/// How many positional arguments a helper takes: `(min, max)`, `None` for no upper bound.
type Arity = (usize, Option<usize>);

/// Handlebars' own helpers (registered by `Handlebars::new`).
const BUILTINS: &[(&str, Arity)] = &[
    ("if", (1, Some(1))),
    ("unless", (1, Some(1))),
    ("each", (1, Some(1))),
    ("with", (1, Some(1))),
    ("lookup", (2, Some(2))),
    ("log", (0, None)),
    ("raw", (0, None)),
    ("eq", (2, Some(2))),
    ("ne", (2, Some(2))),
    ("gt", (2, Some(2))),
    ("gte", (2, Some(2))),
    ("lt", (2, Some(2))),
    ("lte", (2, Some(2))),
    ("and", (1, None)),
    ("or", (1, None)),
    ("not", (1, Some(1))),
    ("len", (1, Some(1))),
];

/// Block helpers that render their block in the same context (so `{{data.x}}` inside them is
/// still checked against the root).
const SAME_CONTEXT_BLOCKS: &[&str] = &[
    "if", "unless", "raw", "eq", "ne", "gt", "gte", "lt", "lte", "and", "or", "not",
];

fn arity_of(name: &str) -> Option<Arity> {
    find(name)
        .map(|h| (h.min, h.max))
        .or_else(|| BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a))
}

fn known_names() -> impl Iterator<Item = &'static str> {
    helpers()
        .map(|(_, h)| h.name)
        .chain(BUILTINS.iter().map(|(n, _)| *n))
}

type Located = (Option<(usize, usize)>, String);

/// Walks a compiled template: helpers that do not exist, wrong argument counts, literal regex
/// patterns and date formats that would fail on every render, and top-level paths outside
/// `data` and `integration` (always missing, so always a fallback).
struct Checker;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Position {
    /// `{{name args}}`; without args, a plain value `{{data.x}}` unless `name` is a helper.
    Expression,
    /// `{{#name args}}…{{/name}}`.
    Block,
    /// `(name args)` inside another call.
    Subexpression,
}

impl Checker {
    /// `root`: the block renders over the template's root context.
    fn template(&self, t: &Template, root: bool) -> Result<(), Located> {
        for (i, element) in t.elements.iter().enumerate() {
            let pos = t.mapping.get(i).map(|m| (m.0, m.1));
            match element {
                TemplateElement::RawString(_) | TemplateElement::Comment(_) => {}
                TemplateElement::Expression(ht) | TemplateElement::HtmlExpression(ht) => {
                    self.call(&ht.name, &ht.params, &ht.hash, Position::Expression, root)
                        .map_err(|m| (pos, m))?;
                }
                TemplateElement::HelperBlock(ht) => {
                    self.call(&ht.name, &ht.params, &ht.hash, Position::Block, root)
                        .map_err(|m| (pos, m))?;
                    let same_context = ht.name.as_name().is_some_and(|n| match find(n) {
                        Some(spec) => !spec.new_scope,
                        None => SAME_CONTEXT_BLOCKS.contains(&n),
                    }) && ht.block_param.is_none();
                    for inner in [&ht.template, &ht.inverse].into_iter().flatten() {
                        self.template(inner, root && same_context)?;
                    }
                }
                TemplateElement::DecoratorExpression(_)
                | TemplateElement::DecoratorBlock(_)
                | TemplateElement::PartialExpression(_)
                | TemplateElement::PartialBlock(_) => {
                    return Err((
                        pos,
                        "partials and decorators ({{> name}}, {{* name}}) are not available \
                         in Siren templates"
                            .to_string(),
                    ));
                }
                // Elements a later handlebars may add: nothing to check.
                _ => {}
            }
        }
        Ok(())
    }

    fn call(
        &self,
        name: &Parameter,
        params: &[Parameter],
        hash: &HashMap<String, Parameter>,
        position: Position,
        root: bool,
    ) -> Result<(), String> {
        let helper = match name {
            Parameter::Subexpression(sub) => {
                self.subexpression(sub, root)?;
                None
            }
            other => other.as_name(),
        };
        if let Some(helper) = helper {
            match arity_of(helper) {
                Some((min, max)) => {
                    let n = params.len();
                    if n < min || max.is_some_and(|max| n > max) {
                        let mut message = format!(
                            "helper \"{helper}\" takes {}, got {n}",
                            describe_arity(min, max)
                        );
                        if position == Position::Expression && n == 0 && hash.is_empty() {
                            message.push_str(&format!(
                                " (to show a field called \"{helper}\", write {{{{this.{helper}}}}})"
                            ));
                        }
                        return Err(message);
                    }
                    if !hash.is_empty() && find(helper).is_some_and(|s| !s.named) {
                        return Err(format!("helper \"{helper}\" takes no name=value arguments"));
                    }
                    self.literals(helper, params)?;
                    if matches!(helper, "date" | "moment" | "formatDate" | "now")
                        && let Some(Parameter::Literal(Value::String(tz))) = hash.get("tz")
                    {
                        zone(tz).map_err(|e| format!("{helper}: {e}"))?;
                    }
                }
                None if position == Position::Expression
                    && params.is_empty()
                    && hash.is_empty() =>
                {
                    // A plain value: `{{data.subject}}`.
                    self.path(helper, root)?;
                }
                None => return Err(unknown_helper(helper)),
            }
        }
        for p in params.iter().chain(hash.values()) {
            match p {
                Parameter::Subexpression(sub) => self.subexpression(sub, root)?,
                Parameter::Path(_) => self.path(p.as_name().unwrap_or_default(), root)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn subexpression(&self, sub: &Subexpression, root: bool) -> Result<(), String> {
        match sub.as_element() {
            TemplateElement::Expression(ht) => self.call(
                &ht.name,
                &ht.params,
                &ht.hash,
                Position::Subexpression,
                root,
            ),
            _ => Ok(()),
        }
    }

    /// At the root the context has only `integration` and `data`; any other name is always
    /// missing, which in strict mode means every render falls back.
    fn path(&self, raw: &str, root: bool) -> Result<(), String> {
        if !root {
            return Ok(());
        }
        let rest = ["this.", "this/", "./"]
            .iter()
            .find_map(|prefix| raw.strip_prefix(prefix))
            .unwrap_or(raw);
        let first = rest
            .split(['.', '/'])
            .next()
            .unwrap_or_default()
            .trim_matches(['[', ']']);
        let fine =
            matches!(first, "data" | "integration" | "this" | "" | "..") || first.starts_with('@');
        if fine {
            Ok(())
        } else {
            Err(format!(
                "\"{raw}\" is not in the template context; alert fields are under data \
                 (write data.{rest}) and the integration under integration"
            ))
        }
    }

    /// Literal regex patterns and date formats are checked now rather than on every alert.
    fn literals(&self, helper: &str, params: &[Parameter]) -> Result<(), String> {
        let literal = |i: usize| match params.get(i) {
            Some(Parameter::Literal(Value::String(s))) => Some(s.as_str()),
            _ => None,
        };
        match helper {
            "matchRegex" | "extract" => {
                if let Some(pattern) = literal(1) {
                    build_regex(pattern).map_err(|e| format!("{helper}: {e}"))?;
                }
            }
            "formatDate" => strftime_literal(helper, literal(1))?,
            "now" => strftime_literal(helper, literal(0))?,
            "date" | "moment" => {
                let format = if params.len() == 1 {
                    literal(0)
                } else {
                    literal(1)
                };
                if let Some(format) = format
                    && format
                        .as_bytes()
                        .windows(2)
                        .any(|w| w[0] == b'%' && w[1].is_ascii_alphabetic())
                {
                    return Err(format!(
                        "{helper}: the format \"{format}\" is strftime-style, but {helper} takes \
                         moment tokens (YYYY-MM-DD HH:mm); formatDate takes strftime formats"
                    ));
                }
                if let Some(format) = format
                    && moment_format_is_literal(format)
                {
                    return Err(format!(
                        "{helper}: the format \"{format}\" has no date tokens (YYYY, MM, DD, \
                         HH, mm…), so it would print itself literally"
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// A strftime format given literally must work and must hold a `%` directive: without one it
/// would print itself on every alert (a moment-style `YYYY-MM-DD` is the usual cause).
fn strftime_literal(helper: &str, format: Option<&str>) -> Result<(), String> {
    let Some(format) = format else {
        return Ok(());
    };
    if !format.contains('%') {
        return Err(format!(
            "{helper}: the format \"{format}\" has no % directive, so it would print itself \
             literally; {helper} takes strftime formats (%Y-%m-%d %H:%M), and date takes \
             moment-style ones (YYYY-MM-DD HH:mm)"
        ));
    }
    format_date(
        jiff::Timestamp::UNIX_EPOCH,
        format,
        &jiff::tz::TimeZone::UTC,
    )
    .map(drop)
    .map_err(|e| format!("{helper}: {e}"))
}

pub(super) fn describe_arity(min: usize, max: Option<usize>) -> String {
    let args = |n: usize| if n == 1 { "argument" } else { "arguments" };
    match max {
        Some(max) if max == min => format!("{min} {}", args(min)),
        Some(max) if max == min + 1 => format!("{min} or {max} {}", args(max)),
        Some(max) => format!("{min} to {max} arguments"),
        None => format!("at least {min} {}", args(min)),
    }
}

fn unknown_helper(name: &str) -> String {
    let closest = known_names()
        .map(|known| {
            (
                edit_distance(&name.to_lowercase(), &known.to_lowercase()),
                known,
            )
        })
        .min_by_key(|(d, _)| *d)
        // Short names are all close to each other; suggest only a near miss for them.
        .filter(|(d, _)| *d <= if name.chars().count() <= 4 { 1 } else { 2 });
    match closest {
        Some((_, known)) => format!("unknown helper \"{name}\" (did you mean \"{known}\"?)"),
        None => format!("unknown helper \"{name}\""),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

// ---------------------------------------------------------------------------------------------
