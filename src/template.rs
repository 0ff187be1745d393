//! Stage 5: titles and descriptions from handlebars templates. One registry with Siren's helper
//! library is built when the configuration loads, and every template is compiled and checked
//! then (syntax, unknown helpers, argument counts, literal regexes and date formats), so a bad
//! template stops start-up instead of failing on the first alert. Pure: no I/O.
//!
//! Rendering is strict: a template that reads a field the data does not have fails, and the
//! integration type's default template is rendered leniently instead, with the reason kept in
//! [`Rendered::errors`] for the integration log. Rendering never panics.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use handlebars::template::{Parameter, Subexpression, Template, TemplateElement};
use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, JsonRender, JsonTruthy, Output,
    RenderContext, RenderError, RenderErrorReason, Renderable, ScopedJson, TemplateErrorReason,
};
use serde::Serialize;
use serde_json::Value;

use crate::domain::{Integration, IntegrationType, Urgency};

/// Longest title, in characters, after whitespace is collapsed.
pub const TITLE_MAX: usize = 1024;
/// Longest description, in bytes, after sanitizing.
pub const DESCRIPTION_MAX: usize = 1 << 20;
/// Rendering a title stops after this many bytes: enough to survive whitespace collapsing, small
/// enough that a title over a huge body costs little.
const TITLE_RENDER_MAX: usize = 64 * 1024;
/// Regexes kept compiled; the cache is emptied when full (patterns are usually template
/// literals, so it rarely is).
const REGEX_CACHE_MAX: usize = 128;
/// Longest regex pattern accepted, in bytes.
const REGEX_PATTERN_MAX: usize = 4096;
/// Compiled size bound per regex (the `regex` crate's own limit is 10 MiB).
const REGEX_SIZE_MAX: usize = 1 << 20;
/// `formatDate` without a format, and `now` without one.
const DEFAULT_DATE_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// A template that cannot be used; stops the configuration from loading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("integrations[{integration}].{field}: {message}")]
pub struct TemplateError {
    pub integration: String,
    /// `title` or `description`.
    pub field: &'static str,
    pub message: String,
}

/// The title and description of one alert.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub title: String,
    pub description: String,
    /// One entry per template that failed and fell back to the integration type's default.
    pub errors: Vec<String>,
}

/// Every integration's compiled title and description, and the registries that render them.
pub struct Templates {
    /// Integration templates, strict: a missing field is an error.
    strict: Handlebars<'static>,
    /// The per-type default templates, lenient: a missing field renders as nothing.
    fallback: Handlebars<'static>,
    integrations: Vec<String>,
    /// Templates that are one plain data field, `{{data.subject}}`, by template name: the
    /// field's path below `data`.
    simple: HashMap<String, Vec<String>>,
}

/// The path below `data` of a template that is exactly one plain field reference
/// (`{{data.subject}}`, `{{ data.alarm.region }}`), or `None` for anything else.
fn simple_path(source: &str) -> Option<Vec<String>> {
    let inner = source.strip_prefix("{{")?.strip_suffix("}}")?.trim();
    let mut segments = inner.split('.');
    if segments.next()? != "data" {
        return None;
    }
    let path: Vec<String> = segments.map(str::to_string).collect();
    let plain = |seg: &String| {
        let mut chars = seg.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && seg != "this"
    };
    (!path.is_empty() && path.iter().all(plain)).then_some(path)
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("integrations", &self.integrations)
            .field("helpers", &HELPERS.len())
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy)]
enum Field {
    Title,
    Description,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Title => "title",
            Field::Description => "description",
        }
    }

    /// How much of a render is kept before the rest is cut off.
    fn render_limit(self) -> usize {
        match self {
            Field::Title => TITLE_RENDER_MAX,
            Field::Description => DESCRIPTION_MAX,
        }
    }
}

/// The templates an integration of `kind` uses when it sets none: `(title, description)`.
pub fn default_templates(kind: IntegrationType) -> (&'static str, &'static str) {
    match kind {
        IntegrationType::Email => ("{{data.subject}}", "{{data.message}}"),
        IntegrationType::Webhook => ("{{data.Title}}", "{{data.Description}}"),
        IntegrationType::Alertmanager => ("{{data.title}}", "{{data.description}}"),
    }
}

fn template_name(integration: &str, field: Field) -> String {
    format!("{integration}/{}", field.name())
}

fn default_name(kind: IntegrationType, field: Field) -> String {
    format!("{}/{}", kind.as_str(), field.name())
}

/// What templates see: `{{integration.id}}`, `{{data.…}}`.
#[derive(Serialize)]
struct Root<'a> {
    integration: IntegrationView<'a>,
    data: &'a Value,
}

#[derive(Serialize)]
struct IntegrationView<'a> {
    id: &'a str,
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    urgency: Urgency,
}

impl Templates {
    /// Compiles every integration's `title` and `description` (already defaulted in Config), in
    /// strict mode, and checks them: syntax, helper names and argument counts, literal regex
    /// patterns and date formats.
    pub fn new(integrations: &[Integration]) -> Result<Templates, TemplateError> {
        let regexes = Arc::new(RegexCache::default());
        let mut strict = registry(true, &regexes);
        let mut fallback = registry(false, &regexes);
        for kind in [
            IntegrationType::Email,
            IntegrationType::Webhook,
            IntegrationType::Alertmanager,
        ] {
            let (title, description) = default_templates(kind);
            for (field, source) in [(Field::Title, title), (Field::Description, description)] {
                let name = default_name(kind, field);
                let template = compile(source, &name).map_err(|message| TemplateError {
                    integration: format!("(default for {})", kind.as_str()),
                    field: field.name(),
                    message,
                })?;
                fallback.register_template(&name, template);
            }
        }
        let mut ids = Vec::with_capacity(integrations.len());
        let mut simple = HashMap::new();
        for i in integrations {
            for (field, source) in [
                (Field::Title, &i.title),
                (Field::Description, &i.description),
            ] {
                let name = template_name(&i.id, field);
                let template = compile(source, &name).map_err(|message| TemplateError {
                    integration: i.id.clone(),
                    field: field.name(),
                    message,
                })?;
                strict.register_template(&name, template);
                if let Some(path) = simple_path(source) {
                    simple.insert(name, path);
                }
            }
            ids.push(i.id.clone());
        }
        Ok(Templates {
            strict,
            fallback,
            integrations: ids,
            simple,
        })
    }

    /// Renders over `{ "integration": {"id","name","type","urgency"}, "data": data }`. A
    /// template that fails is replaced by the type's default, rendered leniently, and the
    /// reason is added to `errors`.
    pub fn render(&self, integration: &Integration, data: &Value) -> Rendered {
        let root = Root {
            integration: IntegrationView {
                id: &integration.id,
                name: &integration.name,
                kind: integration.kind.as_str(),
                urgency: integration.urgency,
            },
            data,
        };
        let mut errors = Vec::new();
        // Built only when a template is more than one plain field: it copies all of `data`.
        let mut ctx = None;
        let mut render = |field: Field| -> (String, bool) {
            if let Some((text, sanitized)) = self.lookup(integration, field, data) {
                return (text.to_string(), sanitized);
            }
            let ctx = ctx.get_or_insert_with(|| Context::wraps(&root));
            match ctx {
                Ok(ctx) => (
                    self.render_field(integration, field, ctx, &mut errors),
                    false,
                ),
                // Serializing a serde_json::Value does not fail; say so if it ever does.
                Err(e) => {
                    errors.push(format!("cannot build the template context: {e}"));
                    (String::new(), false)
                }
            }
        };
        let (title, _) = render(Field::Title);
        let (description, sanitized) = render(Field::Description);
        let description = if sanitized {
            // What a second pass would change: HTML parsing turns CRLF and CR into LF.
            if description.contains('\r') {
                description.replace("\r\n", "\n").replace('\r', "\n")
            } else {
                description
            }
        } else {
            crate::email::sanitize_html(&description)
        };
        Rendered {
            title: clean_title(&title),
            description: bound_html(description, DESCRIPTION_MAX),
            errors,
        }
    }

    /// The text of a one-field template whose field holds a string, without rendering, and
    /// whether it is already sanitized HTML (an e-mail's `message`). `None` when the template is
    /// more than that or the field is missing or not a string: those render in full, so errors
    /// and the formatting of other values stay exactly as handlebars makes them.
    fn lookup<'d>(
        &self,
        integration: &Integration,
        field: Field,
        data: &'d Value,
    ) -> Option<(&'d str, bool)> {
        let path = self.simple.get(&template_name(&integration.id, field))?;
        let text = path
            .iter()
            .try_fold(data, |v, seg| v.as_object()?.get(seg))?
            .as_str()?;
        let sanitized =
            integration.kind == IntegrationType::Email && path.len() == 1 && path[0] == "message";
        Some((text, sanitized))
    }

    fn render_field(
        &self,
        integration: &Integration,
        field: Field,
        ctx: &Context,
        errors: &mut Vec<String>,
    ) -> String {
        let name = template_name(&integration.id, field);
        let compiled = self.strict.has_template(&name);
        let reason = if compiled {
            match render_capped(&self.strict, &name, ctx, field.render_limit()) {
                Ok(text) => return text,
                Err(reason) => reason,
            }
        } else {
            format!(
                "integration \"{}\" has no compiled template",
                integration.id
            )
        };
        let kind = integration.kind.as_str();
        let default = default_name(integration.kind, field);
        // The type's own default failing strictly means an optional field is absent (a webhook
        // without `Description`): rendering it leniently is the intended result, not an error.
        let (default_title, default_description) = default_templates(integration.kind);
        let is_default = compiled
            && match field {
                Field::Title => integration.title == default_title,
                Field::Description => integration.description == default_description,
            };
        match render_capped(&self.fallback, &default, ctx, field.render_limit()) {
            Ok(text) => {
                if !is_default {
                    errors.push(format!(
                        "{}: {reason}; used the {kind} default instead",
                        field.name()
                    ));
                }
                text
            }
            Err(again) => {
                errors.push(format!(
                    "{}: {reason}; the {kind} default failed too: {again}",
                    field.name()
                ));
                String::new()
            }
        }
    }
}

/// Renders `name`, keeping at most `limit` bytes: output past the limit is cut off (and
/// rendering stops there), which is not an error.
fn render_capped(
    registry: &Handlebars<'static>,
    name: &str,
    ctx: &Context,
    limit: usize,
) -> Result<String, String> {
    let mut out = Capped {
        buf: Vec::new(),
        limit,
        full: false,
    };
    match registry.render_with_context_to_write(name, ctx, &mut out) {
        Ok(()) => {}
        Err(_) if out.full => {}
        Err(e) => return Err(describe_render_error(&e)),
    }
    Ok(out.into_string())
}

/// An `io::Write` that keeps the first `limit` bytes and then refuses more, which stops the
/// render: memory and time stay bounded however large the data or the loop.
struct Capped {
    buf: Vec<u8>,
    limit: usize,
    full: bool,
}

impl io::Write for Capped {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let room = self.limit - self.buf.len();
        if bytes.len() <= room {
            self.buf.extend_from_slice(bytes);
            return Ok(bytes.len());
        }
        self.buf.extend_from_slice(&bytes[..room]);
        self.full = true;
        Err(io::Error::other("template output limit reached"))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Capped {
    fn into_string(self) -> String {
        // Only the cut can split a character; drop its partial bytes.
        match String::from_utf8(self.buf) {
            Ok(s) => s,
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                let mut bytes = e.into_bytes();
                bytes.truncate(valid);
                String::from_utf8(bytes).unwrap_or_default()
            }
        }
    }
}

/// A one-line reason for a failed render, for the integration log.
fn describe_render_error(e: &RenderError) -> String {
    let reason = match e.reason() {
        RenderErrorReason::MissingVariable(Some(path)) => format!("missing field \"{path}\""),
        RenderErrorReason::MissingVariable(None) => "missing field".to_string(),
        RenderErrorReason::HelperNotFound(name) => format!("unknown helper \"{name}\""),
        RenderErrorReason::Other(message) => message.clone(),
        other => other.to_string(),
    };
    match (e.line_no, e.column_no) {
        (Some(line), Some(column)) => format!("{reason} (line {line}, column {column})"),
        _ => reason,
    }
}

/// Titles are one line of plain text: control characters and runs of whitespace become one
/// space, and at most [`TITLE_MAX`] characters are kept.
fn clean_title(raw: &str) -> String {
    let spaced: String = raw
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut title = spaced.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some((cut, _)) = title.char_indices().nth(TITLE_MAX) {
        title.truncate(cut);
        title.truncate(title.trim_end().len());
    }
    title
}

/// Cuts sanitized HTML to at most `max` bytes without leaving half a tag or half an entity
/// behind (ammonia's output escapes every literal `<` and `&`, so any left is markup).
fn bound_html(mut html: String, max: usize) -> String {
    if html.len() <= max {
        return html;
    }
    let mut cut = max;
    while !html.is_char_boundary(cut) {
        cut -= 1;
    }
    let head = &html[..cut];
    if let Some(lt) = head.rfind('<')
        && !head[lt..].contains('>')
    {
        cut = lt;
    }
    let head = &html[..cut];
    if let Some(amp) = head.rfind('&')
        && !head[amp..].contains(';')
    {
        cut = amp;
    }
    html.truncate(cut);
    html
}

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

fn compile(source: &str, name: &str) -> Result<Template, String> {
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
    Ok(template)
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
    HELPERS
        .iter()
        .find(|h| h.name == name)
        .map(|h| (h.min, h.max))
        .or_else(|| BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a))
}

fn known_names() -> impl Iterator<Item = &'static str> {
    HELPERS
        .iter()
        .map(|h| h.name)
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
                    let same_context = ht.name.as_name().is_some_and(|n| {
                        SAME_CONTEXT_BLOCKS.contains(&n) || HELPERS.iter().any(|h| h.name == n)
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
                    if !hash.is_empty() && HELPERS.iter().any(|h| h.name == helper) {
                        return Err(format!("helper \"{helper}\" takes no name=value arguments"));
                    }
                    self.literals(helper, params)?;
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
            "match" | "extract" => {
                if let Some(pattern) = literal(1) {
                    build_regex(pattern).map_err(|e| format!("{helper}: {e}"))?;
                }
            }
            "formatDate" => {
                if let Some(format) = literal(1) {
                    format_date(jiff::Timestamp::UNIX_EPOCH, format)
                        .map_err(|e| format!("{helper}: {e}"))?;
                }
            }
            "now" => {
                if let Some(format) = literal(0) {
                    format_date(jiff::Timestamp::UNIX_EPOCH, format)
                        .map_err(|e| format!("{helper}: {e}"))?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn describe_arity(min: usize, max: Option<usize>) -> String {
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
// Registry and helper library.

fn registry(strict: bool, regexes: &Arc<RegexCache>) -> Handlebars<'static> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(strict);
    // Titles are plain text and descriptions are sanitized after rendering; escaping here would
    // show `&amp;` to the reader.
    hb.register_escape_fn(handlebars::no_escape);
    for spec in HELPERS {
        hb.register_helper(
            spec.name,
            Box::new(SirenHelper {
                spec,
                regexes: Arc::clone(regexes),
            }),
        );
    }
    hb
}

/// One helper of the library: a plain function over the argument values.
struct Spec {
    name: &'static str,
    min: usize,
    max: Option<usize>,
    /// Accepts missing fields even in strict mode (`default` exists for them).
    missing_ok: bool,
    f: fn(&Call<'_>) -> Result<Value, String>,
}

struct Call<'a> {
    args: Vec<&'a Value>,
    regexes: &'a RegexCache,
}

impl Call<'_> {
    fn arg(&self, i: usize) -> &Value {
        self.args.get(i).copied().unwrap_or(&Value::Null)
    }
}

const fn spec(
    name: &'static str,
    min: usize,
    max: usize,
    f: fn(&Call<'_>) -> Result<Value, String>,
) -> Spec {
    Spec {
        name,
        min,
        max: Some(max),
        missing_ok: false,
        f,
    }
}

/// The helper library. Comparison and logic (`eq ne gt gte lt lte and or not`) are handlebars'
/// own and are not repeated here.
const HELPERS: &[Spec] = &[
    // text
    spec("upper", 1, 1, |c| Ok(text(c.arg(0))?.to_uppercase().into())),
    spec("lower", 1, 1, |c| Ok(text(c.arg(0))?.to_lowercase().into())),
    spec("trim", 1, 1, |c| Ok(text(c.arg(0))?.trim().into())),
    spec("truncate", 2, 3, truncate),
    spec("replace", 3, 3, replace),
    spec("split", 2, 2, split),
    spec("join", 1, 2, join),
    Spec {
        name: "default",
        min: 2,
        max: None,
        missing_ok: true,
        f: default,
    },
    spec("contains", 2, 2, |c| {
        Ok(contains(c.arg(0), c.arg(1))?.into())
    }),
    spec("startsWith", 2, 2, |c| {
        Ok(text(c.arg(0))?.starts_with(text(c.arg(1))?.as_ref()).into())
    }),
    spec("endsWith", 2, 2, |c| {
        Ok(text(c.arg(0))?.ends_with(text(c.arg(1))?.as_ref()).into())
    }),
    // regular expressions
    spec("match", 2, 2, |c| {
        let re = c.regexes.get(&text(c.arg(1))?)?;
        Ok(re.is_match(&text(c.arg(0))?).into())
    }),
    spec("extract", 2, 3, extract),
    // arrays
    spec("first", 1, 1, |c| ends(c.arg(0), true)),
    spec("last", 1, 1, |c| ends(c.arg(0), false)),
    spec("length", 1, 1, length),
    spec("includes", 2, 2, |c| {
        Ok(contains(c.arg(0), c.arg(1))?.into())
    }),
    // math
    spec("add", 2, 2, |c| {
        arithmetic(c, i64::checked_add, |a, b| a + b)
    }),
    spec("subtract", 2, 2, |c| {
        arithmetic(c, i64::checked_sub, |a, b| a - b)
    }),
    spec("multiply", 2, 2, |c| {
        arithmetic(c, i64::checked_mul, |a, b| a * b)
    }),
    spec("divide", 2, 2, divide),
    spec("round", 1, 2, round),
    // dates
    spec("formatDate", 1, 2, |c| {
        let format = optional_text(c, 1, DEFAULT_DATE_FORMAT)?;
        Ok(format_date(timestamp(c.arg(0))?, &format)?.into())
    }),
    spec("now", 0, 1, |c| {
        let format = optional_text(c, 0, DEFAULT_DATE_FORMAT)?;
        Ok(format_date(jiff::Timestamp::now(), &format)?.into())
    }),
    // JSON
    spec("json", 1, 1, |c| {
        serde_json::to_string(c.arg(0))
            .map(Value::from)
            .map_err(|e| e.to_string())
    }),
    spec("jsonPretty", 1, 1, |c| {
        serde_json::to_string_pretty(c.arg(0))
            .map(Value::from)
            .map_err(|e| e.to_string())
    }),
];

struct SirenHelper {
    spec: &'static Spec,
    regexes: Arc<RegexCache>,
}

impl HelperDef for SirenHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let spec = self.spec;
        let params = h.params();
        if params.len() < spec.min || spec.max.is_some_and(|max| params.len() > max) {
            return Err(RenderErrorReason::Other(format!(
                "helper \"{}\" takes {}, got {}",
                spec.name,
                describe_arity(spec.min, spec.max),
                params.len()
            ))
            .into());
        }
        if r.strict_mode()
            && !spec.missing_ok
            && let Some(missing) = params.iter().find(|p| p.is_value_missing())
        {
            return Err(RenderError::strict_error(missing.relative_path()));
        }
        let call = Call {
            args: params.iter().map(|p| p.value()).collect(),
            regexes: &self.regexes,
        };
        (spec.f)(&call)
            .map(ScopedJson::Derived)
            .map_err(|message| RenderErrorReason::Other(format!("{}: {message}", spec.name)).into())
    }

    /// Inline, writes the value; as a block (`{{#contains a "x"}}…{{else}}…{{/contains}}`),
    /// renders the block when the value is truthy and the `else` part otherwise.
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let value = self.call_inner(h, r, ctx, rc)?;
        if h.is_block() {
            let branch = if value.as_json().is_truthy(false) {
                h.template()
            } else {
                h.inverse()
            };
            return match branch {
                Some(t) => t.render(r, ctx, rc, out),
                None => Ok(()),
            };
        }
        out.write(&value.as_json().render())?;
        Ok(())
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Text, numbers and booleans as text; nothing as empty text.
fn text(v: &Value) -> Result<Cow<'_, str>, String> {
    match v {
        Value::String(s) => Ok(Cow::Borrowed(s)),
        Value::Number(n) => Ok(Cow::Owned(n.to_string())),
        Value::Bool(b) => Ok(Cow::Owned(b.to_string())),
        Value::Null => Ok(Cow::Borrowed("")),
        other => Err(format!("expects text, got {}", type_name(other))),
    }
}

fn optional_text<'a>(c: &'a Call<'_>, i: usize, default: &'a str) -> Result<Cow<'a, str>, String> {
    match c.args.get(i) {
        Some(v) => text(v),
        None => Ok(Cow::Borrowed(default)),
    }
}

fn count(v: &Value, what: &str) -> Result<usize, String> {
    match number(v)? {
        Num::Int(n) if n >= 0 => usize::try_from(n).map_err(|e| e.to_string()),
        _ => Err(format!(
            "{what} must be a whole number of 0 or more, got {v}"
        )),
    }
}

fn truncate(c: &Call<'_>) -> Result<Value, String> {
    let s = text(c.arg(0))?;
    let limit = count(c.arg(1), "the length")?;
    let suffix = optional_text(c, 2, "")?;
    if s.chars().count() <= limit {
        return Ok(s.into());
    }
    let keep = limit.saturating_sub(suffix.chars().count());
    let out: String = s
        .chars()
        .take(keep)
        .chain(suffix.chars())
        .take(limit)
        .collect();
    Ok(out.into())
}

fn replace(c: &Call<'_>) -> Result<Value, String> {
    let s = text(c.arg(0))?;
    let from = text(c.arg(1))?;
    if from.is_empty() {
        return Ok(s.into());
    }
    Ok(s.replace(from.as_ref(), &text(c.arg(2))?).into())
}

fn split(c: &Call<'_>) -> Result<Value, String> {
    let s = text(c.arg(0))?;
    let sep = text(c.arg(1))?;
    let parts: Vec<Value> = if s.is_empty() {
        Vec::new()
    } else if sep.is_empty() {
        s.chars().map(|ch| Value::from(ch.to_string())).collect()
    } else {
        s.split(sep.as_ref()).map(Value::from).collect()
    };
    Ok(Value::Array(parts))
}

fn join(c: &Call<'_>) -> Result<Value, String> {
    let sep = optional_text(c, 1, ", ")?;
    match c.arg(0) {
        Value::Array(items) => {
            let parts = items
                .iter()
                .map(|v| match v {
                    Value::Array(_) | Value::Object(_) => Ok(Cow::Owned(v.to_string())),
                    other => text(other),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(parts.join(&sep).into())
        }
        other => Ok(text(other)?.into()),
    }
}

/// The first value that is present, not null and not empty text; else the last one.
fn default(c: &Call<'_>) -> Result<Value, String> {
    let empty = |v: &Value| v.is_null() || v.as_str().is_some_and(str::is_empty);
    let chosen = c
        .args
        .iter()
        .find(|v| !empty(v))
        .or(c.args.last())
        .copied()
        .unwrap_or(&Value::Null);
    Ok(chosen.clone())
}

/// Equality that lets `"5"` match `5` (alert data carries numbers as text often enough).
fn same(a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    let scalar = |v: &Value| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_));
    scalar(a) && scalar(b) && text(a).ok() == text(b).ok()
}

/// Text contains text; an array contains an element; an object contains a key.
fn contains(haystack: &Value, needle: &Value) -> Result<bool, String> {
    Ok(match haystack {
        Value::Array(items) => items.iter().any(|v| same(v, needle)),
        Value::Object(map) => map.contains_key(text(needle)?.as_ref()),
        Value::Null => false,
        other => text(other)?.contains(text(needle)?.as_ref()),
    })
}

fn extract(c: &Call<'_>) -> Result<Value, String> {
    let s = text(c.arg(0))?;
    let re = c.regexes.get(&text(c.arg(1))?)?;
    let Some(caps) = re.captures(&s) else {
        return Ok("".into());
    };
    let group = match c.args.get(2) {
        // No group asked for: the first group, or the whole match when there is none.
        None => caps.get(1).or_else(|| caps.get(0)),
        Some(Value::String(name)) if name.parse::<usize>().is_err() => {
            if !re.capture_names().flatten().any(|n| n == name) {
                return Err(format!("the pattern has no group named \"{name}\""));
            }
            caps.name(name)
        }
        Some(v) => {
            let index = count(v, "the group")?;
            if index >= re.captures_len() {
                return Err(format!("the pattern has no group {index}"));
            }
            caps.get(index)
        }
    };
    Ok(group.map_or("", |m| m.as_str()).into())
}

fn ends(v: &Value, first: bool) -> Result<Value, String> {
    match v {
        Value::Array(items) => {
            let item = if first { items.first() } else { items.last() };
            Ok(item.cloned().unwrap_or(Value::Null))
        }
        Value::String(s) => {
            let ch = if first {
                s.chars().next()
            } else {
                s.chars().next_back()
            };
            Ok(ch.map(String::from).unwrap_or_default().into())
        }
        Value::Null => Ok(Value::Null),
        other => Err(format!(
            "expects an array or text, got {}",
            type_name(other)
        )),
    }
}

fn length(c: &Call<'_>) -> Result<Value, String> {
    match c.arg(0) {
        Value::Array(items) => Ok(items.len().into()),
        Value::Object(map) => Ok(map.len().into()),
        Value::String(s) => Ok(s.chars().count().into()),
        Value::Null => Ok(0.into()),
        other => Err(format!(
            "expects an array, text or an object, got {}",
            type_name(other)
        )),
    }
}

#[derive(Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn float(self) -> f64 {
        match self {
            Num::Int(n) => n as f64,
            Num::Float(f) => f,
        }
    }
}

/// Numbers, and text that reads as one (`"42"`, `" 1.5 "`).
fn number(v: &Value) -> Result<Num, String> {
    let from_text = |s: &str| {
        let s = s.trim();
        s.parse::<i64>().map(Num::Int).ok().or_else(|| {
            s.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite() && !s.contains(char::is_alphabetic))
                .map(Num::Float)
        })
    };
    let n = match v {
        Value::Number(n) => n
            .as_i64()
            .map(Num::Int)
            .or_else(|| n.as_f64().map(Num::Float)),
        Value::String(s) => from_text(s),
        _ => None,
    };
    n.ok_or_else(|| match v {
        Value::String(s) => format!("expects a number, got \"{s}\""),
        other => format!("expects a number, got {}", type_name(other)),
    })
}

/// Whole results are shown as integers (`divide 10 2` is `5`, not `5.0`).
fn number_value(n: Num) -> Result<Value, String> {
    match n {
        Num::Int(i) => Ok(i.into()),
        Num::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok((f as i64).into()),
        Num::Float(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| "the result is not a finite number".to_string()),
    }
}

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

/// RFC 3339 text (`2024-07-15T16:24:59Z`), RFC 2822 text (an e-mail `Date:`), or unix time as a
/// number or numeric text: seconds, or milliseconds when larger than 10^11 (year 5138 in
/// seconds).
fn timestamp(v: &Value) -> Result<jiff::Timestamp, String> {
    const MS_FROM: f64 = 1e11;
    let unix = |x: f64| {
        let ms = if x.abs() >= MS_FROM { x } else { x * 1000.0 };
        if !ms.is_finite() || ms.abs() > 1e15 {
            return Err(format!("{x} is out of range for a date"));
        }
        jiff::Timestamp::from_millisecond(ms.round() as i64).map_err(|e| e.to_string())
    };
    match v {
        Value::Number(_) => unix(number(v)?.float()),
        Value::String(s) => {
            let s = s.trim();
            let numeric = !s.is_empty()
                && s.trim_start_matches('-')
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.');
            if numeric && let Ok(n) = number(v) {
                return unix(n.float());
            }
            s.parse::<jiff::Timestamp>()
                .or_else(|_| jiff::fmt::rfc2822::DateTimeParser::new().parse_timestamp(s))
                .map_err(|_| {
                    format!(
                        "cannot read \"{s}\" as a date; use RFC 3339 text or unix seconds or milliseconds"
                    )
                })
        }
        other => Err(format!("expects a date, got {}", type_name(other))),
    }
}

/// strftime-style, in UTC.
fn format_date(ts: jiff::Timestamp, format: &str) -> Result<String, String> {
    let utc = ts.to_zoned_datetime(jiff::tz::TimeZone::UTC);
    jiff::fmt::strtime::format(format, &utc)
        .map_err(|e| format!("cannot format a date with \"{format}\": {e}"))
}

/// Compiled regexes by pattern, shared by a registry's helpers.
#[derive(Default)]
struct RegexCache {
    map: Mutex<HashMap<String, Arc<regex::Regex>>>,
}

impl RegexCache {
    fn get(&self, pattern: &str) -> Result<Arc<regex::Regex>, String> {
        // A panic elsewhere while holding the lock leaves a usable map.
        let lock = || self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(re) = lock().get(pattern) {
            return Ok(Arc::clone(re));
        }
        let re = Arc::new(build_regex(pattern)?);
        let mut map = lock();
        if map.len() >= REGEX_CACHE_MAX {
            map.clear();
        }
        map.insert(pattern.to_string(), Arc::clone(&re));
        Ok(re)
    }
}

/// The `regex` crate runs in linear time (no backtracking), so a pattern from a template or
/// from alert data cannot hang a render; its size is bounded too.
pub(crate) fn build_regex(pattern: &str) -> Result<regex::Regex, String> {
    if pattern.len() > REGEX_PATTERN_MAX {
        return Err(format!(
            "the pattern is longer than {REGEX_PATTERN_MAX} bytes"
        ));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_MAX)
        .dfa_size_limit(REGEX_SIZE_MAX)
        .build()
        .map_err(|e| match e {
            // Its Display is several lines with a caret diagram; keep the reason.
            regex::Error::Syntax(s) => {
                let reason = s
                    .lines()
                    .find_map(|l| l.strip_prefix("error: "))
                    .unwrap_or("invalid syntax");
                format!("invalid regular expression \"{pattern}\": {reason}")
            }
            other => format!("invalid regular expression \"{pattern}\": {other}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    fn integrations(toml: &str) -> Vec<Integration> {
        crate::config::Config::parse(toml, Path::new("t.toml"))
            .expect("test configuration must parse")
            .integrations
    }

    fn webhook(title: &str) -> Vec<Integration> {
        let mut list =
            integrations("[[integrations]]\nid = \"custom\"\ntype = \"webhook\"\ntoken = \"t\"\n");
        list[0].title = title.to_string();
        list
    }

    /// Renders `source` as a title over `data` through a full `Templates`, failing on fallback.
    fn render(source: &str, data: &Value) -> Result<String, String> {
        let mut list = webhook(source);
        list[0].description = String::new();
        let templates = Templates::new(&list).map_err(|e| e.message)?;
        let out = templates.render(&list[0], data);
        match out.errors.first() {
            Some(e) => Err(e.clone()),
            None => Ok(out.title),
        }
    }

    #[test]
    fn helpers_render() {
        let data = json!({
            "s": "Disk Full on DB-1",
            "pad": "  x  ",
            "n": 7, "f": 2.5, "ns": "12", "zero": 0, "neg": -3,
            "list": ["a", "b", "c"], "nums": [3, 1, 2], "empty": [], "nil": null, "blank": "",
            "obj": {"k": 1, "j": 2},
            "ts": "2024-07-15T16:24:59Z", "unix": 1721060699, "unix_ms": 1721060699123_i64,
            "rfc2822": "Mon, 15 Jul 2024 18:24:59 +0200",
            "html": "<b>x</b>",
        });
        #[rustfmt::skip]
        let table: &[(&str, &str)] = &[
            // text
            ("{{upper data.s}}", "DISK FULL ON DB-1"),
            ("{{upper data.n}}", "7"),
            ("{{lower data.s}}", "disk full on db-1"),
            ("[{{lower data.nil}}]", "[]"),
            ("[{{trim data.pad}}]", "[x]"),
            ("[{{trim data.blank}}]", "[]"),
            ("{{truncate data.s 9}}", "Disk Full"),
            ("{{truncate data.s 9 \"…\"}}", "Disk Ful…"),
            ("{{truncate data.s 100 \"…\"}}", "Disk Full on DB-1"),
            ("{{truncate data.s 2 \"...\"}}", ".."),
            ("{{truncate \"héllo wörld\" 4}}", "héll"),
            ("{{replace data.s \" \" \"_\"}}", "Disk_Full_on_DB-1"),
            ("{{replace data.s \"\" \"_\"}}", "Disk Full on DB-1"),
            ("{{split \"a,b,c\" \",\"}}", "[a, b, c]"),
            ("{{length (split data.blank \",\")}}", "0"),
            ("{{join data.list \"+\"}}", "a+b+c"),
            ("{{join data.empty \"+\"}}", ""),
            ("{{join (split \"a b\" \" \") \"-\"}}", "a-b"),
            ("{{join data.nums}}", "3, 1, 2"),
            ("{{default data.missing \"none\"}}", "none"),
            ("{{default data.nil \"none\"}}", "none"),
            ("{{default data.blank \"none\"}}", "none"),
            ("{{default data.zero \"none\"}}", "0"),
            ("{{default data.s \"none\"}}", "Disk Full on DB-1"),
            ("{{default data.a data.b \"third\"}}", "third"),
            ("{{contains data.s \"Full\"}}", "true"),
            ("{{contains data.s \"full\"}}", "false"),
            ("{{contains data.list \"b\"}}", "true"),
            ("{{contains data.obj \"k\"}}", "true"),
            ("{{contains data.nil \"k\"}}", "false"),
            ("{{#if (contains data.s \"Disk\")}}disk{{else}}other{{/if}}", "disk"),
            ("{{#contains data.s \"CPU\"}}cpu{{else}}other{{/contains}}", "other"),
            ("{{startsWith data.s \"Disk\"}}", "true"),
            ("{{startsWith data.s \"\"}}", "true"),
            ("{{endsWith data.s \"DB-1\"}}", "true"),
            ("{{endsWith data.nil \"x\"}}", "false"),
            // regular expressions
            ("{{match data.s \"DB-\\\\d+\"}}", "true"),
            ("{{match data.s \"^db\"}}", "false"),
            ("{{match data.s \"(?i)^disk\"}}", "true"),
            ("{{extract data.s \"on (\\\\S+)\"}}", "DB-1"),
            ("{{extract data.s \"DB-\\\\d\"}}", "DB-1"),
            ("{{extract data.s \"(\\\\w+) (\\\\w+)\" 2}}", "Full"),
            ("{{extract data.s \"on (?P<host>\\\\S+)\" \"host\"}}", "DB-1"),
            ("[{{extract data.s \"nothing (here)\"}}]", "[]"),
            ("{{#if (match data.s \"Full\")}}full{{/if}}", "full"),
            // comparison and logic (handlebars' own)
            ("{{eq data.n 7}}", "true"),
            ("{{eq data.ns \"12\"}}", "true"),
            ("{{eq data.ns 12}}", "false"),
            ("{{ne data.s \"x\"}}", "true"),
            ("{{gt data.n 5}}", "true"),
            ("{{gt data.ns 5}}", "true"),
            ("{{gt \"b\" \"a\"}}", "true"),
            ("{{gte data.n 7}}", "true"),
            ("{{lt data.f 3}}", "true"),
            ("{{lt data.neg 0}}", "true"),
            ("{{lte data.n 6}}", "false"),
            ("{{and true data.n}}", "true"),
            ("{{and true data.zero}}", "false"),
            ("{{or data.nil data.s}}", "true"),
            ("{{not data.blank}}", "true"),
            ("{{#if (and (gt data.n 5) (contains data.s \"Disk\"))}}both{{/if}}", "both"),
            ("{{#if (eq integration.urgency \"medium\")}}m{{/if}}", "m"),
            // arrays
            ("{{first data.list}}", "a"),
            ("[{{first data.empty}}]", "[]"),
            ("{{last data.list}}", "c"),
            ("{{last data.s}}", "1"),
            ("{{length data.list}}", "3"),
            ("{{length \"héllo\"}}", "5"),
            ("{{length data.obj}}", "2"),
            ("{{length data.nil}}", "0"),
            ("{{includes data.nums 2}}", "true"),
            ("{{includes data.nums \"2\"}}", "true"),
            ("{{includes data.empty 2}}", "false"),
            // math
            ("{{add data.n 3}}", "10"),
            ("{{add data.f data.ns}}", "14.5"),
            ("{{add 9223372036854775807 1}}", "9.223372036854776e+18"),
            ("{{subtract data.n 10}}", "-3"),
            ("{{multiply data.f 4}}", "10"),
            ("{{multiply \"1.5\" 3}}", "4.5"),
            ("{{divide 10 4}}", "2.5"),
            ("{{divide 10 2}}", "5"),
            ("{{round 2.5}}", "3"),
            ("{{round 3.14159 2}}", "3.14"),
            ("{{round data.n 2}}", "7"),
            ("{{round (divide 2 3) 3}}", "0.667"),
            // dates
            ("{{formatDate data.ts \"%Y-%m-%d %H:%M\"}}", "2024-07-15 16:24"),
            ("{{formatDate data.unix \"%d/%m/%Y %H:%M:%S %Z\"}}", "15/07/2024 16:24:59 UTC"),
            ("{{formatDate data.unix_ms \"%H:%M:%S%.3f\"}}", "16:24:59.123"),
            ("{{formatDate \"1721060699\"}}", "2024-07-15T16:24:59Z"),
            ("{{formatDate data.rfc2822 \"%H:%M %z\"}}", "16:24 +0000"),
            ("{{formatDate \"2024-07-15T18:24:59+02:00\" \"%A %e %B\"}}", "Monday 15 July"),
            ("{{length (now \"%Y\")}}", "4"),
            // JSON
            ("{{json data.obj}}", "{\"j\":2,\"k\":1}"),
            ("{{json data.html}}", "\"<b>x</b>\""),
            ("{{json data.nil}}", "null"),
            ("{{jsonPretty data.list}}", "[ \"a\", \"b\", \"c\" ]"),
            // context
            ("{{integration.id}}/{{integration.name}}/{{integration.type}}", "custom/custom/webhook"),
            ("{{{data.html}}} {{data.html}}", "<b>x</b> <b>x</b>"),
        ];
        let mut failures = Vec::new();
        for (source, want) in table {
            match render(source, &data) {
                Ok(got) if got == *want => {}
                other => failures.push(format!("{source}: want {want:?}, got {other:?}")),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// The examples of the helper table (docs/helpers.md), over its sample data (docs/templates.md).
    #[test]
    fn readme_examples() {
        let mut list = integrations(
            "[[integrations]]\nid = \"ops\"\nname = \"Ops e-mail\"\ntype = \"email\"\n\
             addresses = [\"ops@alerts.localhost\"]\nurgency = \"high\"\n",
        );
        list[0].description = String::new();
        let data = json!({
            "subject": "PROBLEM: Disk full on db-1",
            "host": "db-1",
            "severity": "critical",
            "load": 7.25,
            "count": "12",
            "tags": ["disk", "prod"],
            "started": "2024-07-15T16:24:59Z",
            "epoch": 1721060699,
            "labels": {"alertname": "DiskFull", "instance": "db-1:9100"},
            "empty": ""
        });
        #[rustfmt::skip]
        let table: &[(&str, &str)] = &[
            ("{{data.labels.alertname}} on {{data.host}}", "DiskFull on db-1"),
            ("{{integration.name}} ({{integration.id}}, {{integration.type}}, {{integration.urgency}})", "Ops e-mail (ops, email, high)"),
            ("{{upper data.host}}", "DB-1"),
            ("{{lower data.labels.alertname}}", "diskfull"),
            ("{{trim \"  db-1  \"}}", "db-1"),
            ("{{truncate data.subject 12 \"…\"}}", "PROBLEM: Di…"),
            ("{{replace data.host \"-\" \"_\"}}", "db_1"),
            ("{{first (split data.labels.instance \":\")}}", "db-1"),
            ("{{join data.tags \" + \"}}", "disk + prod"),
            ("{{default data.empty \"n/a\"}}", "n/a"),
            ("{{default data.runbook \"none\"}}", "none"),
            ("{{#if (contains data.subject \"PROBLEM\")}}down{{else}}up{{/if}}", "down"),
            ("{{startsWith data.subject \"PROBLEM\"}}", "true"),
            ("{{endsWith data.host \"-1\"}}", "true"),
            ("{{match data.subject \"^(PROBLEM|RECOVERY)\"}}", "true"),
            ("{{extract data.subject \"on (\\\\S+)\"}}", "db-1"),
            ("{{extract data.labels.instance \"(?P<port>[0-9]+)$\" \"port\"}}", "9100"),
            ("{{#if (eq data.severity \"critical\")}}page{{/if}}", "page"),
            ("{{ne data.host \"db-2\"}}", "true"),
            ("{{gt data.count 10}}", "true"),
            ("{{gte data.load 7.25}}", "true"),
            ("{{lt data.load 5}}", "false"),
            ("{{lte 3 3}}", "true"),
            ("{{and (eq data.severity \"critical\") (includes data.tags \"prod\")}}", "true"),
            ("{{or data.empty data.host}}", "true"),
            ("{{not data.empty}}", "true"),
            ("{{first data.tags}}", "disk"),
            ("{{last data.tags}}", "prod"),
            ("{{length data.tags}}", "2"),
            ("{{length data.host}}", "4"),
            ("{{includes data.tags \"prod\"}}", "true"),
            ("{{add data.count 1}}", "13"),
            ("{{subtract data.count 2}}", "10"),
            ("{{multiply data.load 2}}", "14.5"),
            ("{{divide data.count 8}}", "1.5"),
            ("{{round data.load}}", "7"),
            ("{{round data.load 1}}", "7.3"),
            ("{{formatDate data.started \"%d %b %Y %H:%M %Z\"}}", "15 Jul 2024 16:24 UTC"),
            ("{{formatDate data.epoch}}", "2024-07-15T16:24:59Z"),
            ("{{json data.labels}}", "{\"alertname\":\"DiskFull\",\"instance\":\"db-1:9100\"}"),
            ("{{jsonPretty data.tags}}", "[ \"disk\", \"prod\" ]"),
            ("{{len data.tags}}", "2"),
            ("{{lookup data.labels \"alertname\"}}", "DiskFull"),
            ("{{#if data.runbook}}…{{else}}no runbook{{/if}}", "no runbook"),
            ("{{#each data.tags}}#{{this}} {{/each}}", "#disk #prod"),
            ("{{log data.host}}", ""),
            ("{{#with data.labels}}{{alertname}}{{/with}}", "DiskFull"),
            ("{{#unless data.empty}}no note{{/unless}}", "no note"),
            ("{{#contains data.tags \"prod\"}}PROD {{/contains}}{{data.host}}", "PROD db-1"),
        ];
        let mut failures = Vec::new();
        for (source, want) in table {
            list[0].title = source.to_string();
            let out = Templates::new(&list).map(|t| t.render(&list[0], &data));
            match out {
                Ok(r) if r.errors.is_empty() && r.title == *want => {}
                other => failures.push(format!("{source}: want {want:?}, got {other:?}")),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn helper_errors_fall_back_with_a_reason() {
        let data = json!({"s": "x", "n": 1, "list": [1], "obj": {}});
        let table: &[(&str, &str)] = &[
            ("{{divide data.n 0}}", "divide: division by zero"),
            ("{{add data.s 1}}", "add: expects a number, got \"x\""),
            ("{{upper data.list}}", "upper: expects text, got an array"),
            ("{{match data.s data.s2}}", "missing field \"data.s2\""),
            ("{{match data.s (lower \"(\")}}", "unclosed group"),
            ("{{formatDate data.s}}", "cannot read \"x\" as a date"),
            (
                "{{formatDate data.n (trim \"%J\")}}",
                "cannot format a date",
            ),
            ("{{extract data.s \"(x)\" 3}}", "no group 3"),
            ("{{length data.n}}", "length: expects an array"),
            ("{{round 1.5 99}}", "decimals must be"),
            ("{{truncate data.s -1}}", "whole number"),
            ("{{upper data.missing}}", "missing field \"data.missing\""),
            ("{{first data.obj}}", "first: expects an array or text"),
        ];
        let mut failures = Vec::new();
        for (source, want) in table {
            match render(source, &data) {
                Err(e) if e.contains(want) => {}
                other => {
                    failures.push(format!("{source}: want error with {want:?}, got {other:?}"))
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn spec_example_custom_webhook_title() {
        let list = integrations(
            "[[integrations]]\nid = \"custom\"\ntype = \"webhook\"\ntoken = \"change-me\"\n\
             title = \"Custom Data - {{data.extra}}\"\n",
        );
        let templates = Templates::new(&list).unwrap();
        let data = json!({
            "event_type": "create",
            "Id": "example-id-123",
            "Title": "Example Incident Title",
            "Description": "Example Incident Description",
            "extra": "I want to use this data"
        });
        let out = templates.render(&list[0], &data);
        assert_eq!(out.title, "Custom Data - I want to use this data");
        assert_eq!(out.description, "Example Incident Description");
        assert!(out.errors.is_empty(), "{:?}", out.errors);
    }

    #[test]
    fn one_field_templates_render_as_handlebars_does() {
        assert_eq!(
            simple_path("{{data.subject}}"),
            Some(vec!["subject".to_string()])
        );
        assert_eq!(
            simple_path("{{ data.alarm.region }}"),
            Some(vec!["alarm".into(), "region".into()])
        );
        for not_simple in [
            "{{{data.x}}}",
            "{{data}}",
            "{{data.x}} ",
            "{{upper data.x}}",
            "{{data.[x y]}}",
            "{{data.0}}",
            "{{data.this}}",
            "{{integration.id}}",
            "{{data.x}}{{data.y}}",
            "{{~data.x}}",
        ] {
            assert_eq!(simple_path(not_simple), None, "{not_simple}");
        }
        // The same field through the one-field path and through a full render (a no-op block
        // keeps it from being one field): the same result, including for values that are not
        // strings and fields that are missing.
        let data = json!({
            "s": "a <b>x</b> &amp; y",
            "n": 42,
            "f": 1.5,
            "b": true,
            "null": null,
            "o": {"k": "v"},
            "a": [1, 2],
            "deep": {"er": {"est": "  spaced\tout\n"}}
        });
        for field in [
            "s",
            "n",
            "f",
            "b",
            "null",
            "o",
            "a",
            "deep.er.est",
            "missing",
            "deep.missing",
        ] {
            let fast = format!("{{{{data.{field}}}}}");
            let full = format!("{{{{data.{field}}}}}{{{{#if false}}}}{{{{/if}}}}");
            assert!(simple_path(&fast).is_some());
            let outcome = |source: &str| {
                let mut list = webhook(source);
                list[0].description = source.to_string();
                let out = Templates::new(&list).unwrap().render(&list[0], &data);
                (out.title, out.description, out.errors.len())
            };
            assert_eq!(outcome(&fast), outcome(&full), "data.{field}");
        }
    }

    #[test]
    fn missing_field_falls_back_to_the_type_default_with_an_error() {
        let list = webhook("Custom Data - {{data.extra}}");
        let templates = Templates::new(&list).unwrap();
        let data = json!({"Title": "Example Incident Title", "Description": "d"});
        let out = templates.render(&list[0], &data);
        assert_eq!(out.title, "Example Incident Title");
        assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
        assert!(
            out.errors[0].starts_with("title: missing field \"data.extra\""),
            "{}",
            out.errors[0]
        );
        assert!(
            out.errors[0].contains("webhook default"),
            "{}",
            out.errors[0]
        );

        // The configured title fails and so does its fallback: an error. The description is the
        // type's default, and a webhook's Description is optional: empty, without an error.
        let out = templates.render(&list[0], &json!({}));
        assert_eq!(out.title, "");
        assert_eq!(out.description, "");
        assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
        assert!(out.errors[0].starts_with("title: missing field \"data.extra\""));
    }

    #[test]
    fn each_type_has_its_default() {
        let list = integrations(
            "[[integrations]]\nid = \"mail\"\ntype = \"email\"\naddresses = [\"ops@x.test\"]\n\
             [[integrations]]\nid = \"hook\"\ntype = \"webhook\"\n\
             [[integrations]]\nid = \"am\"\ntype = \"alertmanager\"\n",
        );
        let templates = Templates::new(&list).unwrap();
        let data = json!({
            "subject": "S", "message": "M", "Title": "T", "Description": "D",
            "title": "t", "description": "d"
        });
        let got: Vec<(String, String)> = list
            .iter()
            .map(|i| {
                let r = templates.render(i, &data);
                assert!(r.errors.is_empty(), "{:?}", r.errors);
                (r.title, r.description)
            })
            .collect();
        let want =
            [("S", "M"), ("T", "D"), ("t", "d")].map(|(a, b)| (a.to_string(), b.to_string()));
        assert_eq!(got, want);
    }

    #[test]
    fn title_is_one_line_and_bounded() {
        let list = webhook("{{data.Title}}");
        let templates = Templates::new(&list).unwrap();
        let data = json!({"Title": "  Disk\nfull\r\n\ton\u{0}  db-1 \n", "Description": ""});
        assert_eq!(templates.render(&list[0], &data).title, "Disk full on db-1");

        let long = "é".repeat(5000);
        let out = templates.render(&list[0], &json!({"Title": long, "Description": ""}));
        assert_eq!(out.title.chars().count(), TITLE_MAX);
        assert!(out.errors.is_empty());
    }

    #[test]
    fn description_is_sanitized() {
        let mut list = webhook("{{data.Title}}");
        list[0].description = "<p>{{data.Description}}</p><script>alert(1)</script>".into();
        let templates = Templates::new(&list).unwrap();
        let data = json!({
            "Title": "t",
            "Description": "<b onclick=\"x()\">bold</b><script>steal()</script><a href=\"javascript:x\">l</a>"
        });
        let out = templates.render(&list[0], &data);
        assert!(!out.description.contains("script"), "{}", out.description);
        assert!(!out.description.contains("onclick"), "{}", out.description);
        assert!(
            !out.description.contains("javascript"),
            "{}",
            out.description
        );
        assert!(
            out.description.contains("<b>bold</b>"),
            "{}",
            out.description
        );
    }

    #[test]
    fn description_is_bounded_without_half_a_tag() {
        let html = format!("{}<b>bold</b>", "x".repeat(DESCRIPTION_MAX - 2));
        let cut = bound_html(html, DESCRIPTION_MAX);
        assert_eq!(cut.len(), DESCRIPTION_MAX - 2);
        let cut = bound_html(
            format!("{}&amp;", "x".repeat(DESCRIPTION_MAX - 2)),
            DESCRIPTION_MAX,
        );
        assert!(cut.ends_with('x'));

        let mut list = webhook("{{data.Title}}");
        list[0].description = "{{#each data.rows}}{{this}}{{/each}}".into();
        let templates = Templates::new(&list).unwrap();
        let rows: Vec<String> = (0..3000).map(|_| "y".repeat(1000)).collect();
        let out = templates.render(&list[0], &json!({"Title": "t", "rows": rows}));
        assert_eq!(out.description.len(), DESCRIPTION_MAX);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
    }

    #[test]
    fn compile_time_errors_name_the_integration_field_and_place() {
        #[rustfmt::skip]
        let table: &[(&str, &str, &str)] = &[
            ("title", "{{uper data.subject}}", "unknown helper \"uper\" (did you mean \"upper\"?)"),
            ("title", "{{#if (frobnicate data.x)}}y{{/if}}", "unknown helper \"frobnicate\""),
            ("description", "{{#each data.x}}{{nope this}}{{/each}}", "unknown helper \"nope\""),
            ("description", "a\n{{#if data.x}}\n{{else}}{{bad 1}}{{/if}}", "line 3, column 9: unknown helper \"bad\""),
            ("title", "{{upper (lower (uper data.x))}}", "unknown helper \"uper\""),
            ("title", "{{truncate data.x}}", "helper \"truncate\" takes 2 or 3 arguments, got 1"),
            ("title", "{{first}}", "takes 1 argument, got 0 (to show a field called \"first\", write {{this.first}})"),
            ("title", "{{upper x=1 data.y}}", "takes no name=value arguments"),
            ("title", "{{subject}}", "\"subject\" is not in the template context"),
            ("title", "{{upper subject}}", "\"subject\" is not in the template context"),
            ("title", "{{this.subject}}", "(write data.subject)"),
            ("title", "{{#if data.a}}{{subject}}{{/if}}", "line 1, column 15: \"subject\""),
            ("title", "{{match data.x \"(\"}}", "match: invalid regular expression \"(\": unclosed group"),
            ("title", "{{formatDate data.x \"%J\"}}", "formatDate: cannot format a date with \"%J\""),
            ("title", "{{now \"%\"}}", "now: cannot format a date"),
            ("title", "{{> header}}", "partials and decorators"),
            ("title", "{{#if data.x}}", "line 1, column"),
            ("title", "{{#if data.x}}{{/each}}", "helper \"if\" was opened, but \"each\" is closing"),
            ("description", "ok\n{{data.x", "line 2, column"),
            ("title", "{{match data.x \"\\d+\"}}", "a regex \\d is written \\\\d"),
        ];
        let mut failures = Vec::new();
        for (field, source, want) in table {
            let mut list = webhook("{{data.Title}}");
            match *field {
                "title" => list[0].title = source.to_string(),
                _ => list[0].description = source.to_string(),
            }
            match Templates::new(&list) {
                Err(e)
                    if e.integration == "custom"
                        && e.field == *field
                        && e.message.contains(want) =>
                {
                    assert!(!e.to_string().contains('\n'), "{e}");
                    assert!(
                        e.to_string().starts_with(&format!(
                            "integrations[custom].{field}: template does not compile"
                        )),
                        "{e}"
                    );
                }
                other => failures.push(format!("{source}: want {want:?}, got {other:?}")),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn unknown_helper_error_has_position() {
        let list = webhook("Alert: {{uper data.Title}}");
        let e = Templates::new(&list).unwrap_err();
        assert_eq!(
            e.to_string(),
            "integrations[custom].title: template does not compile at line 1, column 8: \
             unknown helper \"uper\" (did you mean \"upper\"?)"
        );
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let list = webhook("first line\n  {{#if data.x}}open");
        let e = Templates::new(&list).unwrap_err();
        assert_eq!(e.field, "title");
        assert!(
            e.message
                .starts_with("template does not compile at line 2, column"),
            "{e}"
        );
        assert!(!e.message.contains('\n'), "{e}");
    }

    #[test]
    fn valid_templates_pass_the_checker() {
        let ok = [
            "{{data.subject}}",
            "{{{data.message}}}",
            "{{#each data.alerts}}{{labels.alertname}} {{@index}} {{../integration.id}}{{/each}}",
            "{{#each data.alerts as |a|}}{{upper a.status}}{{/each}}",
            "{{#with data.alarm}}{{region}}{{/with}}",
            "{{#unless data.x}}none{{/unless}}",
            "{{#if data.a}}a{{else if data.b}}b{{else}}c{{/if}}",
            "{{lookup data \"key\"}}",
            "{{now}}",
            "{{!-- a comment --}}{{@root.data.x}}",
            "{{data.[weird key]}}",
        ];
        for source in ok {
            assert_eq!(check(source), Ok(()), "{source}");
        }
    }

    #[test]
    fn lenient_fallback_never_panics_on_odd_data() {
        let list = webhook("Alert: {{data.Title}}");
        let templates = Templates::new(&list).unwrap();
        for data in [
            json!(null),
            json!([1, 2]),
            json!("text"),
            json!({"Title": {"a": 1}}),
        ] {
            let out = templates.render(&list[0], &data);
            assert!(
                !out.title.is_empty() || !out.errors.is_empty(),
                "{data}: {out:?}"
            );
        }
    }

    #[test]
    fn unknown_integration_renders_the_default_with_an_error() {
        let templates = Templates::new(&[]).unwrap();
        let list = webhook("{{data.extra}}");
        let out = templates.render(&list[0], &json!({"Title": "T", "Description": "D"}));
        assert_eq!(out.title, "T");
        assert_eq!(out.errors.len(), 2);
    }

    #[test]
    fn templates_can_be_shared_across_tasks() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Templates>();
    }

    #[test]
    fn regex_cache_is_bounded() {
        let cache = RegexCache::default();
        for i in 0..(REGEX_CACHE_MAX * 2 + 5) {
            cache.get(&format!("x{i}")).unwrap();
        }
        assert!(cache.map.lock().unwrap().len() <= REGEX_CACHE_MAX);
        assert!(cache.get("(").is_err());
        assert!(cache.get(&"a".repeat(REGEX_PATTERN_MAX + 1)).is_err());
    }
}
