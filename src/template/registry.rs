//! The one registry of Siren's template helpers: every helper's name, category, argument count,
//! a one-line summary and an example with its expected output (over [`EXAMPLE_DATA`]). The
//! handlebars registries, the static checker, the generated helper reference and the tests all
//! read this list; the helpers themselves live in `helpers/`, one file per category.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use handlebars::{
    BlockContext, Context, Handlebars, Helper, HelperDef, HelperResult, Output, RenderContext,
    RenderError, RenderErrorReason, Renderable, ScopedJson, StringOutput,
};
use serde_json::Value;

use super::RegexCache;
use super::check::describe_arity;
use super::helpers as library;

/// The data every registry example renders over (`{{data.…}}`), with the integration
/// `ops` / "Ops e-mail" / e-mail / high.
pub const EXAMPLE_DATA: &str = r#"{
  "subject": "PROBLEM: Disk full on db-1",
  "host": "db-1",
  "severity": "critical",
  "load": 7.25,
  "count": "12",
  "tags": ["disk", "prod"],
  "started": "2024-07-15T16:24:59Z",
  "epoch": 1721060699,
  "labels": {"alertname": "DiskFull", "instance": "db-1:9100"},
  "alerts": [{"name": "DiskFull", "value": 91}, {"name": "HighLoad", "value": 7}],
  "empty": ""
}"#;

/// The groups of the reference, handlebars-helpers' categories by their names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    Array,
    Collection,
    Comparison,
    Date,
    Html,
    Inflection,
    Markdown,
    Match,
    Math,
    Misc,
    Number,
    Object,
    Regex,
    String,
    Url,
}

impl Category {
    pub fn name(self) -> &'static str {
        match self {
            Category::Array => "array",
            Category::Collection => "collection",
            Category::Comparison => "comparison",
            Category::Date => "date",
            Category::Html => "html",
            Category::Inflection => "inflection",
            Category::Markdown => "markdown",
            Category::Match => "match",
            Category::Math => "math",
            Category::Misc => "misc",
            Category::Number => "number",
            Category::Object => "object",
            Category::Regex => "regex",
            Category::String => "string",
            Category::Url => "url",
        }
    }
}

/// Every category's helpers, in the reference's order.
const CATEGORIES: &[(Category, &[Spec])] = &[
    (Category::Array, library::array::HELPERS),
    (Category::Collection, library::collection::HELPERS),
    (Category::Comparison, library::comparison::HELPERS),
    (Category::Date, library::date::HELPERS),
    (Category::Html, library::html::HELPERS),
    (Category::Inflection, library::inflection::HELPERS),
    (Category::Markdown, library::markdown::HELPERS),
    (Category::Match, library::matching::HELPERS),
    (Category::Math, library::math::HELPERS),
    (Category::Misc, library::misc::HELPERS),
    (Category::Number, library::number::HELPERS),
    (Category::Object, library::object::HELPERS),
    (Category::Regex, library::regex::HELPERS),
    (Category::String, library::string::HELPERS),
    (Category::Url, library::url::HELPERS),
];

/// One helper: a plain function over the argument values, and its documentation.
pub struct Spec {
    pub name: &'static str,
    /// Fewest positional arguments.
    pub min: usize,
    /// Most positional arguments; `None` for no upper bound.
    pub max: Option<usize>,
    /// Accepts missing fields even in strict mode (`default` exists for them).
    pub(super) missing_ok: bool,
    /// What it does, one line, for the reference.
    pub summary: &'static str,
    /// A template using it, rendered over [`EXAMPLE_DATA`] in the tests…
    pub example: &'static str,
    /// …and exactly what that renders.
    pub expected: &'static str,
    /// Its value, inline and in subexpressions; `None` for a block-only helper.
    pub(super) value: Option<ValueFn>,
    /// What its block form does; `None`: see `branches`.
    pub(super) block: Option<BlockFn>,
    /// Without a `block`: as a block it renders the block when the value is truthy
    /// (JavaScript's truthiness) and the `else` part otherwise, as handlebars-helpers'
    /// `util.value` does; when false, the block form writes the value as the inline one does
    /// (a JavaScript helper that ignores its block). Siren's own helpers branch.
    pub(super) branches: bool,
    /// Its block (`{{#name}}…{{/name}}`) renders over a new context, not the caller's.
    pub(super) new_scope: bool,
    /// One of Siren's own helpers rather than handlebars-helpers' (its summary starts with
    /// "Siren").
    pub siren: bool,
    /// Takes name=value arguments (every library helper may; Siren's own only when they say).
    pub(super) named: bool,
}

pub(super) type ValueFn = fn(&Call<'_>) -> Result<Value, String>;

pub(super) type BlockFn = fn(&Call<'_>, &mut Block<'_, '_, '_, '_>) -> Result<(), RenderError>;

/// Siren's own helpers are documented as such: their summary starts with "Siren".
const fn is_siren_summary(summary: &str) -> bool {
    let (b, prefix) = (summary.as_bytes(), b"Siren");
    if b.len() < prefix.len() {
        return false;
    }
    let mut i = 0;
    while i < prefix.len() {
        if b[i] != prefix[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// A helper taking from `min` to `max` arguments; documented with [`Spec::doc`].
pub(super) const fn spec(
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
        summary: "",
        example: "",
        expected: "",
        value: Some(f),
        block: None,
        branches: false,
        new_scope: false,
        siren: false,
        named: true,
    }
}

/// A helper that renders its own block (an iteration, a new context).
pub(super) const fn block(name: &'static str, min: usize, max: usize, f: BlockFn) -> Spec {
    let mut s = spec(name, min, max, |_| Ok(Value::Null));
    s.value = None;
    s.block = Some(f);
    s.new_scope = true;
    s
}

impl Spec {
    pub(super) const fn doc(
        mut self,
        summary: &'static str,
        example: &'static str,
        expected: &'static str,
    ) -> Spec {
        self.summary = summary;
        self.siren = is_siren_summary(summary);
        self.named = !self.siren;
        self.example = example;
        self.expected = expected;
        self
    }

    /// No upper bound on the argument count.
    pub(super) const fn variadic(mut self) -> Spec {
        self.max = None;
        self
    }

    /// Its block form runs `f` (which sees the same arguments).
    pub(super) const fn on_block(mut self, f: BlockFn) -> Spec {
        self.block = Some(f);
        self
    }

    /// Takes name=value arguments (`tz=`).
    pub(super) const fn named(mut self) -> Spec {
        self.named = true;
        self
    }

    /// As a block, the block when the value is truthy, else the `else` part.
    pub(super) const fn branches(mut self) -> Spec {
        self.branches = true;
        self
    }

    /// Its block renders over a new context.
    pub(super) const fn scoped(mut self) -> Spec {
        self.new_scope = true;
        self
    }

    /// Its block keeps the caller's context.
    pub(super) const fn same_scope(mut self) -> Spec {
        self.new_scope = false;
        self
    }

    /// Missing fields are passed as null instead of failing a strict render.
    pub(super) const fn missing_ok(mut self) -> Spec {
        self.missing_ok = true;
        self
    }
}

/// Every helper with its category, in the reference's order.
pub fn helpers() -> impl Iterator<Item = (Category, &'static Spec)> {
    CATEGORIES
        .iter()
        .flat_map(|(category, specs)| specs.iter().map(move |s| (*category, s)))
}

/// The helper called `name`.
pub fn find(name: &str) -> Option<&'static Spec> {
    static BY_NAME: LazyLock<HashMap<&'static str, &'static Spec>> =
        LazyLock::new(|| helpers().map(|(_, s)| (s.name, s)).collect());
    BY_NAME.get(name).copied()
}

/// What a helper function gets: the argument values, the name=value arguments, the current
/// context (`this`), and the registry's regex cache.
pub(super) struct Call<'a> {
    pub(super) args: Vec<&'a Value>,
    /// Per argument: the field it names is not in the data (undefined, not null).
    pub(super) missing: Vec<bool>,
    pub(super) hash: Vec<(&'a str, &'a Value)>,
    pub(super) this: &'a Value,
    pub(super) regexes: &'a RegexCache,
    pub(super) is_block: bool,
}

impl Call<'_> {
    pub(super) fn arg(&self, i: usize) -> &Value {
        self.args.get(i).copied().unwrap_or(&Value::Null)
    }

    /// The argument is a field the data does not have.
    pub(super) fn is_missing(&self, i: usize) -> bool {
        self.missing.get(i).copied().unwrap_or(true)
    }

    /// A name=value argument, null when absent.
    pub(super) fn hash(&self, key: &str) -> &Value {
        self.hash
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(&Value::Null, |(_, v)| *v)
    }
}

/// A handlebars registry with every helper; `strict` makes a missing field an error.
pub(super) fn registry(strict: bool, regexes: &Arc<RegexCache>) -> Handlebars<'static> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(strict);
    // Titles are plain text and descriptions are sanitized after rendering; escaping here would
    // show `&amp;` to the reader.
    hb.register_escape_fn(handlebars::no_escape);
    library::builtins::register(&mut hb);
    for (_, spec) in helpers() {
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

struct SirenHelper {
    spec: &'static Spec,
    regexes: Arc<RegexCache>,
}

impl SirenHelper {
    fn check<'rc>(&self, h: &Helper<'rc>, strict: bool) -> Result<(), RenderError> {
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
        if strict
            && !spec.missing_ok
            && let Some(missing) = params.iter().find(|p| p.is_value_missing())
        {
            return Err(RenderError::strict_error(missing.relative_path()));
        }
        Ok(())
    }
}

/// The current context's value: the innermost block's, else the root's.
fn this<'a>(ctx: &'a Context, rc: &'a RenderContext<'_, '_>) -> &'a Value {
    match rc.block() {
        Some(b) => match b.base_value() {
            Some(v) => v,
            None => {
                let path = b.base_path();
                path.iter()
                    .try_fold(ctx.data(), |v, seg| match v {
                        Value::Object(m) => m.get(seg),
                        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
                        _ => None,
                    })
                    .unwrap_or(&Value::Null)
            }
        },
        None => ctx.data(),
    }
}

fn failed(spec: &Spec, message: String) -> RenderError {
    RenderErrorReason::Other(format!("{}: {message}", spec.name)).into()
}

impl HelperDef for SirenHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        self.check(h, r.strict_mode())?;
        let Some(f) = self.spec.value else {
            return Err(failed(
                self.spec,
                format!(
                    "is a block helper: {{{{#{0}}}}}…{{{{/{0}}}}}",
                    self.spec.name
                ),
            ));
        };
        let this = this(ctx, rc).clone();
        let call = Call {
            args: h.params().iter().map(|p| p.value()).collect(),
            missing: h.params().iter().map(|p| p.is_value_missing()).collect(),
            hash: h.hash().iter().map(|(k, v)| (*k, v.value())).collect(),
            this: &this,
            regexes: &self.regexes,
            is_block: h.is_block(),
        };
        f(&call)
            .map(ScopedJson::Derived)
            .map_err(|message| failed(self.spec, message))
    }

    /// Inline, writes the value as JavaScript prints it; as a block, see [`Spec::block`].
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let block_fn = match self.spec.block {
            Some(f) if h.is_block() || self.spec.value.is_none() => Some(f),
            _ => None,
        };
        if let Some(f) = block_fn {
            self.check(h, r.strict_mode())?;
            let this = this(ctx, rc).clone();
            let call = Call {
                args: h.params().iter().map(|p| p.value()).collect(),
                missing: h.params().iter().map(|p| p.is_value_missing()).collect(),
                hash: h.hash().iter().map(|(k, v)| (*k, v.value())).collect(),
                this: &this,
                regexes: &self.regexes,
                is_block: h.is_block(),
            };
            let mut block = Block { h, r, ctx, rc, out };
            return f(&call, &mut block);
        }
        let value = self.call_inner(h, r, ctx, rc)?;
        if h.is_block() && self.spec.branches {
            let branch = if library::js::truthy(value.as_json()) {
                h.template()
            } else {
                h.inverse()
            };
            return match branch {
                Some(t) => t.render(r, ctx, rc, out),
                None => Ok(()),
            };
        }
        out.write(&library::js::string(value.as_json()))?;
        Ok(())
    }
}

/// A block helper's view of its rendering: write text, render the block (`options.fn`) over a
/// value with `@` variables, or the `else` part (`options.inverse`) in the current context.
pub(super) struct Block<'a, 'reg, 'rc, 'o> {
    h: &'a Helper<'rc>,
    r: &'reg Handlebars<'reg>,
    ctx: &'rc Context,
    rc: &'a mut RenderContext<'reg, 'rc>,
    out: &'o mut dyn Output,
}

impl Block<'_, '_, '_, '_> {
    pub(super) fn write(&mut self, s: &str) -> Result<(), RenderError> {
        self.out.write(s).map_err(RenderError::from)
    }

    /// `options.fn(value, {data: locals})`; `None` renders in the current context.
    pub(super) fn render(
        &mut self,
        value: Option<Value>,
        locals: &[(&str, Value)],
    ) -> Result<(), RenderError> {
        let Some(t) = self.h.template() else {
            return Err(RenderErrorReason::Other(format!(
                "{} needs a block: {{{{#{0}}}}}…{{{{/{0}}}}}",
                self.h.name()
            ))
            .into());
        };
        let mut block = BlockContext::new();
        match value {
            Some(v) => block.set_base_value(v),
            None => {
                if let Some(current) = self.rc.block() {
                    block = current.clone();
                }
            }
        }
        for (k, v) in locals {
            block.set_local_var(k, v.clone());
        }
        self.rc.push_block(block);
        let result = t.render(self.r, self.ctx, self.rc, self.out);
        self.rc.pop_block();
        result
    }

    /// `options.fn(value)` into a string.
    pub(super) fn render_string(&mut self, value: Option<Value>) -> Result<String, RenderError> {
        let mut buf = StringOutput::new();
        let Some(t) = self.h.template() else {
            return Ok(String::new());
        };
        let mut block = BlockContext::new();
        match value {
            Some(v) => block.set_base_value(v),
            None => {
                if let Some(current) = self.rc.block() {
                    block = current.clone();
                }
            }
        }
        self.rc.push_block(block);
        let result = t.render(self.r, self.ctx, self.rc, &mut buf);
        self.rc.pop_block();
        result?;
        buf.into_string().map_err(RenderError::from)
    }

    /// `options.inverse(this)`: the `else` part, if any.
    pub(super) fn inverse(&mut self) -> Result<(), RenderError> {
        match self.h.inverse() {
            Some(t) => t.render(self.r, self.ctx, self.rc, self.out),
            None => Ok(()),
        }
    }

    /// The block when `yes`, the `else` part otherwise.
    pub(super) fn branch(&mut self, yes: bool) -> Result<(), RenderError> {
        if yes {
            self.render(None, &[])
        } else {
            self.inverse()
        }
    }
}

/// The helper reference (`docs/helpers.md` between its markers), generated from this
/// registry: one table per category, every helper with its tested example.
pub fn reference() -> String {
    let mut out = String::new();
    let mut current = None;
    for (category, spec) in helpers() {
        if current != Some(category) {
            current = Some(category);
            out.push_str(&format!(
                "\n### {}\n\n| helper | arguments | what it does | example | output |\n| --- | --- | --- | --- | --- |\n",
                category.name()
            ));
        }
        let args = match (spec.min, spec.max) {
            (min, Some(max)) if min == max => min.to_string(),
            (min, Some(max)) => format!("{min}–{max}"),
            (min, None) => format!("{min} or more"),
        };
        let kind = if spec.value.is_none() { " (block)" } else { "" };
        let cell = |s: &str| s.replace('|', "\\|").replace('\n', "\\n");
        out.push_str(&format!(
            "| `{}`{kind} | {args} | {} | `{}` | `{}` |\n",
            spec.name,
            cell(spec.summary),
            cell(spec.example),
            cell(spec.expected),
        ));
    }
    out
}
