//! handlebars.js's own `if` and `unless`, replacing handlebars-rust's, and how plain values
//! are written. In `if`, `{}` and `"0"` are
//! true there, as in handlebars.js (`isEmpty`: falsy or an empty array; `includeZero=true`
//! makes `0` true).

use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, Output, RenderContext, RenderError,
    RenderErrorReason, Renderable,
};

use super::js;

struct Conditional {
    negate: bool,
}

impl HelperDef for Conditional {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let name = if self.negate { "unless" } else { "if" };
        let param = h
            .param(0)
            .ok_or(RenderErrorReason::ParamNotFoundForIndex(name, 0))?;
        let include_zero = h
            .hash_get("includeZero")
            .is_some_and(|v| js::truthy(v.value()));
        let empty = js::hbs_empty(param.value(), include_zero);
        let branch = if empty == self.negate {
            h.template()
        } else {
            h.inverse()
        };
        match branch {
            Some(t) => t.render(r, ctx, rc, out),
            None => Ok(()),
        }
    }
}

/// The helper every plain `{{value}}` is compiled into (see `check::js_values`); no template
/// can name it.
pub(in crate::template) const VALUE_HELPER: &str = "\u{0}value";

/// Writes its one argument as handlebars.js would; in strict mode a missing field fails as it
/// would without the helper.
struct JsValue;

impl HelperDef for JsValue {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let Some(param) = h.param(0) else {
            return Ok(());
        };
        if r.strict_mode() && param.is_value_missing() {
            return Err(RenderError::strict_error(param.relative_path()));
        }
        out.write(&js::string(param.value()))?;
        Ok(())
    }
}

pub(in crate::template) fn register(hb: &mut Handlebars<'static>) {
    hb.register_helper("if", Box::new(Conditional { negate: false }));
    hb.register_helper("unless", Box::new(Conditional { negate: true }));
    hb.register_helper(VALUE_HELPER, Box::new(JsValue));
}
