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
use std::sync::Arc;

use handlebars::{Context, Handlebars};
use serde::Serialize;
use serde_json::Value;

use crate::domain::{Integration, IntegrationType, Urgency};

mod check;
mod helpers;
mod regex_cache;
mod registry;
mod render;
#[cfg(test)]
mod tests;

pub use check::{check, compile_error_message};
pub(crate) use regex_cache::build_regex;
pub use registry::{Category, EXAMPLE_DATA, Spec, find, helpers, reference};

use check::compile;
use regex_cache::RegexCache;
use registry::registry;
use render::{bound_html, clean_title, render_capped};

/// Longest title, in characters, after whitespace is collapsed.
pub const TITLE_MAX: usize = 1024;
/// Longest description, in bytes, after sanitizing.
pub const DESCRIPTION_MAX: usize = 1 << 20;
/// Rendering a title stops after this many bytes: enough to survive whitespace collapsing, small
/// enough that a title over a huge body costs little.
const TITLE_RENDER_MAX: usize = 64 * 1024;

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
    /// Templates that are text and plain data fields, `{{data.subject}}` or `Disk {{data.host}}
    /// is {{data.state}}`, by template name.
    simple: HashMap<String, Vec<Part>>,
}

/// A piece of a template that is only text and plain fields ([`simple_parts`]).
#[derive(Debug, PartialEq)]
enum Part {
    Text(String),
    /// A field's path below `data`.
    Field(Vec<String>),
}

/// A template that is text and plain field references only (`Disk {{data.host}} is full`),
/// as its parts; `None` for anything else, or for text that handlebars could read otherwise
/// (`}}`, a backslash before a tag).
fn simple_parts(source: &str) -> Option<Vec<Part>> {
    let mut parts = Vec::new();
    let mut rest = source;
    while !rest.is_empty() {
        let (text, tag) = match rest.find("{{") {
            Some(at) => (&rest[..at], Some(&rest[at..])),
            None => (rest, None),
        };
        if text.contains("}}") || text.starts_with('}') || text.ends_with('\\') {
            return None;
        }
        if !text.is_empty() {
            parts.push(Part::Text(text.to_string()));
        }
        let Some(tag) = tag else { break };
        let end = tag.find("}}")? + 2;
        parts.push(Part::Field(simple_path(&tag[..end])?));
        rest = &tag[end..];
    }
    parts
        .iter()
        .any(|p| matches!(p, Part::Field(_)))
        .then_some(parts)
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
            .field("helpers", &registry::helpers().count())
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy)]
enum Field {
    Title,
    Description,
    /// `aggregate_key`: what the title window compares instead of the title.
    Key,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Title => "title",
            Field::Description => "description",
            Field::Key => "aggregate_key",
        }
    }

    /// How much of a render is kept before the rest is cut off.
    fn render_limit(self) -> usize {
        match self {
            Field::Title | Field::Key => TITLE_RENDER_MAX,
            Field::Description => DESCRIPTION_MAX,
        }
    }
}

/// The templates an integration of `kind` uses when it sets none: `(title, description)`.
pub fn default_templates(kind: IntegrationType) -> (&'static str, &'static str) {
    match kind {
        IntegrationType::Email => ("{{data.subject}}", "{{data.message}}"),
        IntegrationType::Webhook => ("{{data.Title}}", "{{data.Description}}"),
        IntegrationType::Alertmanager | IntegrationType::Grafana => {
            ("{{data.title}}", "{{data.description}}")
        }
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

impl<'a> Root<'a> {
    fn new(integration: &'a Integration, data: &'a Value) -> Root<'a> {
        Root {
            integration: IntegrationView {
                id: &integration.id,
                name: &integration.name,
                kind: integration.kind.as_str(),
                urgency: integration.urgency,
            },
            data,
        }
    }
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
        for kind in IntegrationType::ALL {
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
                (Field::Title, Some(&i.title)),
                (Field::Description, Some(&i.description)),
                (Field::Key, i.aggregate_key.as_ref()),
            ] {
                let Some(source) = source else { continue };
                let name = template_name(&i.id, field);
                let template = compile(source, &name).map_err(|message| TemplateError {
                    integration: i.id.clone(),
                    field: field.name(),
                    message,
                })?;
                strict.register_template(&name, template);
                if let Some(parts) = simple_parts(source) {
                    simple.insert(name, parts);
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

    /// The integration's `aggregate_key` rendered over `data` as a title is (one line, bounded),
    /// or why it failed (the title is compared instead).
    pub fn render_key(&self, integration: &Integration, data: &Value) -> Result<String, String> {
        let name = template_name(&integration.id, Field::Key);
        let ctx = Context::wraps(Root::new(integration, data)).map_err(|e| e.to_string())?;
        render_capped(&self.strict, &name, &ctx, TITLE_RENDER_MAX).map(|t| clean_title(&t))
    }

    /// Renders over `{ "integration": {"id","name","type","urgency"}, "data": data }`. A
    /// template that fails is replaced by the type's default, rendered leniently, and the
    /// reason is added to `errors`.
    pub fn render(&self, integration: &Integration, data: &Value) -> Rendered {
        let root = Root::new(integration, data);
        let mut errors = Vec::new();
        // Built only when a template is more than text and plain fields: it copies all of `data`.
        let mut ctx = None;
        let mut render = |field: Field| -> (String, bool) {
            if let Some((text, sanitized)) = self.lookup(integration, field, data) {
                return (text.into_owned(), sanitized);
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

    /// The text of a template of text and plain fields whose fields all hold strings, without
    /// rendering, and whether it is already sanitized HTML (an e-mail's `message` alone).
    /// `None` when the template is more than that, a field is missing or not a string, or the
    /// text is longer than a render may make: those render in full, so errors and the
    /// formatting of other values stay exactly as handlebars makes them.
    fn lookup<'d>(
        &self,
        integration: &Integration,
        field: Field,
        data: &'d Value,
    ) -> Option<(Cow<'d, str>, bool)> {
        let parts = self.simple.get(&template_name(&integration.id, field))?;
        let text = |path: &[String]| {
            path.iter()
                .try_fold(data, |v, seg| v.as_object()?.get(seg))?
                .as_str()
        };
        if let [Part::Field(path)] = &parts[..] {
            let sanitized = integration.kind == IntegrationType::Email
                && path.len() == 1
                && path[0] == "message";
            return Some((Cow::Borrowed(text(path)?), sanitized));
        }
        let mut out = String::new();
        for part in parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(path) => out.push_str(text(path)?),
            }
        }
        (out.len() <= field.render_limit()).then_some((Cow::Owned(out), false))
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
                Field::Key => false,
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

/// Renders one template source as Siren's engine does, without fallback or clean-up: compiled
/// and checked as integration templates are, then rendered over `{"integration", "data"}` by
/// the strict registry or the lenient one. For the helper reference's examples and the
/// differential test against handlebars-helpers.
pub struct Scratch {
    registry: Handlebars<'static>,
}

impl Scratch {
    pub fn new(strict: bool) -> Scratch {
        Scratch {
            registry: registry(strict, &Arc::new(RegexCache::default())),
        }
    }

    /// The output, or the one-line compile or render error.
    pub fn render(
        &mut self,
        source: &str,
        integration: &Integration,
        data: &Value,
    ) -> Result<String, String> {
        let template = compile(source, "scratch")?;
        self.registry.register_template("scratch", template);
        let ctx = Context::wraps(Root::new(integration, data)).map_err(|e| e.to_string())?;
        render_capped(&self.registry, "scratch", &ctx, DESCRIPTION_MAX)
    }
}
