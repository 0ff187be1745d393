//! The markdown category of handlebars-helpers: Markdown to HTML as remarkable renders it
//! with `html` and `breaks` on (line breaks become `<br>`). pulldown-cmark parses; its
//! XHTML-style void tags are written the HTML way remarkable writes them.

use handlebars::RenderError;
use pulldown_cmark::{Event, Options, Parser};
use serde_json::Value;

use crate::template::registry::{Block, Call, Spec, spec};

pub(super) fn render(source: &str) -> String {
    let mut opts = Options::empty();
    opts.insert(Options::ENABLE_TABLES);
    opts.insert(Options::ENABLE_STRIKETHROUGH);
    let events = Parser::new_ext(source, opts).map(|e| match e {
        Event::SoftBreak | Event::HardBreak => Event::InlineHtml("<br>\n".into()),
        Event::Rule => Event::Html("<hr>\n".into()),
        other => other,
    });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

fn inline(c: &Call<'_>) -> Result<Value, String> {
    match c.arg(0) {
        Value::String(s) => Ok(render(s).into()),
        // helper-markdown renders `true` then, and remarkable fails on it.
        _ => Err("str.replace is not a function: markdown takes text".into()),
    }
}

fn block_form(c: &Call<'_>, b: &mut Block<'_, '_, '_, '_>) -> Result<(), RenderError> {
    let source = match c.args.first() {
        Some(Value::String(s)) => s.clone(),
        _ => b.render_string(None)?,
    };
    b.write(&render(&source))
}

pub(in crate::template) const HELPERS: &[Spec] = &[
    spec("markdown", 0, 1, inline)
        .on_block(block_form)
        .missing_ok()
        .doc(
            "Markdown as HTML (text, or the block's output)",
            "{{#markdown}}**{{data.host}}** is *down*{{/markdown}}",
            "<p><strong>db-1</strong> is <em>down</em></p>\n",
        ),
    spec("md", 0, 1, |c| {
        Ok(render(c.arg(0).as_str().unwrap_or("")).into())
    })
    .on_block(block_form)
    .missing_ok()
    .doc(
        "Markdown text as HTML (the library reads a file by that name instead)",
        "{{md \"# Disk full\"}}",
        "<h1>Disk full</h1>\n",
    ),
];
