//! The one registry of Siren's template helpers: every helper's name, category, argument count,
//! a one-line summary and an example with its expected output (over [`EXAMPLE_DATA`]). The
//! handlebars registries, the static checker, the generated helper reference and the tests all
//! read this list; the helpers themselves live in `helpers/`, one file per category.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, JsonRender, JsonTruthy, Output,
    RenderContext, RenderError, RenderErrorReason, Renderable, ScopedJson,
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
  "empty": ""
}"#;

/// The groups of the reference, named as handlebars-helpers names its categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    Array,
    Comparison,
    Date,
    Math,
    Object,
    Regex,
    String,
}

impl Category {
    pub fn name(self) -> &'static str {
        match self {
            Category::Array => "array",
            Category::Comparison => "comparison",
            Category::Date => "date",
            Category::Math => "math",
            Category::Object => "object",
            Category::Regex => "regex",
            Category::String => "string",
        }
    }
}

/// Every category's helpers, in the reference's order.
const CATEGORIES: &[(Category, &[Spec])] = &[
    (Category::String, library::string::HELPERS),
    (Category::Regex, library::regex::HELPERS),
    (Category::Comparison, library::comparison::HELPERS),
    (Category::Array, library::array::HELPERS),
    (Category::Math, library::math::HELPERS),
    (Category::Date, library::date::HELPERS),
    (Category::Object, library::object::HELPERS),
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
    pub(super) f: fn(&Call<'_>) -> Result<Value, String>,
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
        f,
    }
}

impl Spec {
    pub(super) const fn doc(
        mut self,
        summary: &'static str,
        example: &'static str,
        expected: &'static str,
    ) -> Spec {
        self.summary = summary;
        self.example = example;
        self.expected = expected;
        self
    }

    /// No upper bound on the argument count.
    pub(super) const fn variadic(mut self) -> Spec {
        self.max = None;
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

/// What a helper function gets: the argument values, and the registry's regex cache.
pub(super) struct Call<'a> {
    pub(super) args: Vec<&'a Value>,
    pub(super) regexes: &'a RegexCache,
}

impl Call<'_> {
    pub(super) fn arg(&self, i: usize) -> &Value {
        self.args.get(i).copied().unwrap_or(&Value::Null)
    }
}

/// A handlebars registry with every helper; `strict` makes a missing field an error.
pub(super) fn registry(strict: bool, regexes: &Arc<RegexCache>) -> Handlebars<'static> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(strict);
    // Titles are plain text and descriptions are sanitized after rendering; escaping here would
    // show `&amp;` to the reader.
    hb.register_escape_fn(handlebars::no_escape);
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
