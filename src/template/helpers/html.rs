//! HTML helpers of handlebars-helpers: attributes, stylesheet and script tags, tag stripping,
//! lists and figures. Descriptions are sanitized after rendering all the same.

use handlebars::RenderError;
use serde_json::Value;

use super::js;
use crate::template::registry::{Block, Call, Spec, block, spec};

/// `key="value"` pairs, quotes at either end of a value dropped.
fn attributes(pairs: &[(String, Value)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let v = js::string(v);
            let v = v.strip_prefix(['\'', '"']).unwrap_or(&v);
            let v = v.strip_suffix(['\'', '"']).unwrap_or(v);
            format!("{k}=\"{v}\"")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn hash_pairs(c: &Call<'_>) -> Vec<(String, Value)> {
    c.hash
        .iter()
        .map(|(k, v)| (k.to_string(), (*v).clone()))
        .collect()
}

/// striptags: every `<…>` tag and comment removed; a `<` followed by a space is text.
pub(super) fn strip_tags(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    let mut quote = None;
    let mut in_tag = false;
    while let Some(c) = chars.next() {
        if in_tag {
            match (c, quote) {
                ('"' | '\'', None) => quote = Some(c),
                (q, Some(open)) if q == open => quote = None,
                ('>', None) => in_tag = false,
                _ => {}
            }
            continue;
        }
        if c == '<' && !chars.peek().is_some_and(|n| n.is_whitespace()) {
            in_tag = true;
            quote = None;
        } else {
            out.push(c);
        }
    }
    out
}

fn arrayify(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        Value::Null => vec![],
        other => vec![other.clone()],
    }
}

fn extension(path: &str) -> &str {
    let name = path.rsplit('/').next().unwrap_or(path);
    match name.rfind('.') {
        Some(i) if i > 0 => &name[i..],
        _ => "",
    }
}

/// `path.posix.join("", p)`: `.` and `..` segments resolved, repeated slashes folded.
fn normalize(p: &str) -> String {
    let absolute = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." if out.last().is_some_and(|s| *s != "..") => {
                out.pop();
            }
            ".." if absolute => {}
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    let trailing = if p.ends_with('/') && !joined.is_empty() {
        "/"
    } else {
        ""
    };
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}{trailing}"),
        (false, true) => ".".into(),
        (false, false) => format!("{joined}{trailing}"),
    }
}

fn css(c: &Call<'_>) -> Result<Value, String> {
    let mut list = if c.args.is_empty() {
        vec![]
    } else {
        arrayify(c.arg(0))
    };
    if js::truthy(c.hash("href")) {
        list = arrayify(c.hash("href"));
    }
    let tags: Vec<String> = list
        .iter()
        .map(|item| {
            let item = js::string(item);
            let fp = if item.starts_with("//") || item.contains("://") {
                item.clone()
            } else {
                normalize(&item)
            };
            let rel = if extension(&item) == ".less" {
                "stylesheet/less"
            } else {
                "stylesheet"
            };
            format!("<link type=\"text/css\" rel=\"{rel}\" href=\"{fp}\">")
        })
        .collect();
    Ok(tags.join("\n").into())
}

fn script(c: &Call<'_>) -> Result<Value, String> {
    match c.args.first() {
        None => {
            let attr = attributes(&hash_pairs(c));
            Ok(format!(
                "<script{}></script>",
                if attr.is_empty() {
                    String::new()
                } else {
                    format!(" {attr}")
                }
            )
            .into())
        }
        Some(Value::String(s)) => Ok(format!("<script src=\"{s}\"></script>").into()),
        Some(Value::Object(_)) => Ok("<script></script>".into()),
        Some(v) => {
            let tags: Vec<String> = arrayify(v)
                .iter()
                .map(|fp| {
                    let fp = js::string(fp);
                    if extension(&fp) == ".coffee" {
                        format!("<script type=\"text/coffeescript\" src=\"{fp}\"></script>")
                    } else {
                        format!("<script src=\"{fp}\"></script>")
                    }
                })
                .collect();
            Ok(tags.join("\n").into())
        }
    }
}

fn list(c: &Call<'_>, b: &mut Block<'_, '_, '_, '_>, tag: &str) -> Result<(), RenderError> {
    let Value::Array(items) = c.arg(0) else {
        return Err(RenderError::from(handlebars::RenderErrorReason::Other(
            format!("{tag}: context.map is not a function"),
        )));
    };
    let mut parts = Vec::new();
    for item in items {
        let text = match item {
            Value::String(s) => s.clone(),
            other => b.render_string(Some(other.clone()))?,
        };
        parts.push(format!("<li>{text}</li>"));
    }
    let attr = attributes(&hash_pairs(c));
    b.write(&format!("<{tag} {attr}>{}</{tag}>", parts.join("\n")))
}

fn thumbnail(c: &Call<'_>) -> Result<Value, String> {
    let ctx = c.arg(0);
    let get = |k: &str| ctx.get(k).cloned().unwrap_or(Value::Null);
    let size = ctx
        .get("size")
        .filter(|s| !s.is_null())
        .ok_or("cannot read properties of undefined (reading 'width')")?;
    let link = get("full");
    let link = if js::truthy(&link) {
        link
    } else {
        Value::Bool(false)
    };
    let mut image = vec![
        ("alt".to_string(), get("alt")),
        ("src".to_string(), get("thumbnail")),
        (
            "width".to_string(),
            size.get("width").cloned().unwrap_or(Value::Null),
        ),
        (
            "height".to_string(),
            size.get("height").cloned().unwrap_or(Value::Null),
        ),
    ];
    let mut figure = vec![(
        "id".to_string(),
        Value::from(format!("image-{}", js::string(&get("id")))),
    )];
    let mut anchor = vec![
        ("href".to_string(), link.clone()),
        ("rel".to_string(), Value::from("thumbnail")),
    ];
    if let Some(classes) = ctx.get("classes").filter(|v| js::truthy(v)) {
        let join = |k: &str| {
            classes
                .get(k)
                .and_then(Value::as_array)
                .map(|a| a.iter().map(js::string).collect::<Vec<_>>().join(" "))
        };
        if let Some(v) = join("image") {
            image.push(("class".into(), v.into()));
        }
        if let Some(v) = join("figure") {
            figure.push(("class".into(), v.into()));
        }
        if let Some(v) = join("link") {
            anchor.push(("class".into(), v.into()));
        }
    }
    let img = format!("<img {}>\n", attributes(&image));
    let mut out = format!("<figure {}>\n", attributes(&figure));
    if js::truthy(&link) {
        out.push_str(&format!("<a {}>\n{img}</a>\n", attributes(&anchor)));
    } else {
        out.push_str(&img);
    }
    if js::truthy(&get("caption")) {
        out.push_str(&format!(
            "<figcaption>{}</figcaption>\n",
            js::string(&get("caption"))
        ));
    }
    out.push_str("</figure>");
    Ok(out.into())
}

pub(in crate::template) const HELPERS: &[Spec] = &[
    spec("attr", 0, 0, |c| {
        let val = attributes(&hash_pairs(c));
        Ok(if val.trim().is_empty() { "".into() } else { format!(" {val}").into() })
    })
    .doc("the name=value arguments as HTML attributes", "<td{{attr class=\"sev\"}}>", "<td class=\"sev\">"),
    spec("css", 0, 1, css).missing_ok().doc(
        "`<link>` tags for stylesheets",
        "{{css \"style.css\"}}",
        "<link type=\"text/css\" rel=\"stylesheet\" href=\"style.css\">",
    ),
    spec("js", 0, 1, script).missing_ok().doc(
        "`<script>` tags for scripts",
        "{{js \"app.js\"}}",
        "<script src=\"app.js\"></script>",
    ),
    spec("sanitize", 1, 1, |c| {
        Ok(c.arg(0).as_str().filter(|s| !s.is_empty()).map_or("".into(), |s| strip_tags(s).trim().to_string()).into())
    })
    .missing_ok()
    .doc("text with the HTML tags stripped", "{{sanitize \"<b>Disk</b> full\"}}", "Disk full"),
    block("ul", 1, 1, |c, b| list(c, b, "ul")).doc(
        "an unordered list of the items (the block renders non-text items)",
        "{{#ul data.tags class=\"tags\"}}{{/ul}}",
        "<ul class=\"tags\"><li>disk</li>\n<li>prod</li></ul>",
    ),
    block("ol", 1, 1, |c, b| list(c, b, "ol")).doc(
        "an ordered list of the items (the block renders non-text items)",
        "{{#ol data.alerts}}{{name}}{{/ol}}",
        "<ol ><li>DiskFull</li>\n<li>HighLoad</li></ol>",
    ),
    spec("thumbnailImage", 1, 1, thumbnail).doc(
        "a `<figure>` with an image, an optional link and caption",
        "{{thumbnailImage (JSONparse \"{\\\"id\\\":1,\\\"alt\\\":\\\"graph\\\",\\\"thumbnail\\\":\\\"t.png\\\",\\\"size\\\":{\\\"width\\\":80,\\\"height\\\":60}}\")}}",
        "<figure id=\"image-1\">\n<img alt=\"graph\" src=\"t.png\" width=\"80\" height=\"60\">\n</figure>",
    ),
];
