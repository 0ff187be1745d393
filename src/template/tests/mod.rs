//! Tests of rendering, fallback, bounds and the static checker, over full `Templates` built
//! from parsed configuration; the helper library's tests are in `helpers.rs`.

use super::regex_cache::{REGEX_CACHE_MAX, REGEX_PATTERN_MAX};
use super::*;
use serde_json::json;

mod helpers;
mod js;

/// Integrations from `[[integrations]]` tables, filled in as the configuration fills them (the
/// name from the id, the type's default templates). Built here rather than through `config`,
/// which builds `Templates`: so `template` never names `config` and imports point one way.
pub(super) fn integrations(toml: &str) -> Vec<Integration> {
    #[derive(serde::Deserialize)]
    struct File {
        integrations: Vec<Table>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Table {
        id: String,
        name: Option<String>,
        #[serde(rename = "type")]
        kind: IntegrationType,
        #[serde(default)]
        addresses: Vec<String>,
        urgency: Option<Urgency>,
        title: Option<String>,
        description: Option<String>,
        token: Option<String>,
    }
    let file: File = toml::from_str(toml).expect("test integrations must parse");
    file.integrations
        .into_iter()
        .map(|t| {
            let (title, description) = default_templates(t.kind);
            Integration {
                name: t.name.unwrap_or_else(|| t.id.clone()),
                addresses: t.addresses,
                urgency: t.urgency.unwrap_or(Urgency::Medium),
                title: t.title.unwrap_or_else(|| title.into()),
                description: t.description.unwrap_or_else(|| description.into()),
                token: t.token.map(crate::domain::Secret::new),
                ..Integration::new(&t.id, t.kind)
            }
        })
        .collect()
}

pub(super) fn webhook(title: &str) -> Vec<Integration> {
    let mut list =
        integrations("[[integrations]]\nid = \"custom\"\ntype = \"webhook\"\ntoken = \"t\"\n");
    list[0].title = title.to_string();
    list
}

/// Renders `source` as a title over `data` through a full `Templates`, failing on fallback.
pub(super) fn render(source: &str, data: &Value) -> Result<String, String> {
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
fn text_and_field_templates_render_as_handlebars_does() {
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
    // Text and several fields: the same as a full render, strings or not, present or not; text
    // that handlebars could read otherwise renders in full.
    assert_eq!(
        simple_parts("Disk {{data.s}} is {{ data.deep.er.est }}!"),
        Some(vec![
            Part::Text("Disk ".into()),
            Part::Field(vec!["s".into()]),
            Part::Text(" is ".into()),
            Part::Field(vec!["deep".into(), "er".into(), "est".into()]),
            Part::Text("!".into()),
        ])
    );
    for not_simple in [
        "no fields",
        "a }} b {{data.s}}",
        "\\{{data.s}}",
        "x {{data.s}",
        "{{data.s}} {{upper data.s}}",
        "{{data.s}} {{{data.s}}}",
        "{{data.s}}} x",
    ] {
        assert_eq!(simple_parts(not_simple), None, "{not_simple}");
    }
    for fast in [
        "Custom Data - {{data.s}}",
        "{{data.s}}{{data.deep.er.est}}",
        " {{data.s}} and {{data.deep.er.est}}. ",
        "{ {{data.s}} }",
        "{{data.s}} is {{data.n}}",
        "{{data.s}} is {{data.missing}}",
        "{{data.s}} is {{data.o}}",
    ] {
        assert!(simple_parts(fast).is_some(), "{fast}");
        let full = format!("{fast}{{{{#if false}}}}{{{{/if}}}}");
        let outcome = |source: &str| {
            let mut list = webhook(source);
            list[0].description = source.to_string();
            let out = Templates::new(&list).unwrap().render(&list[0], &data);
            (out.title, out.description, out.errors.len())
        };
        assert_eq!(outcome(fast), outcome(&full), "{fast}");
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
    let want = [("S", "M"), ("T", "D"), ("t", "d")].map(|(a, b)| (a.to_string(), b.to_string()));
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
        ("title", "{{first}}", "takes 1 or 2 arguments, got 0 (to show a field called \"first\", write {{this.first}})"),
        ("title", "{{upper x=1 data.y}}", "takes no name=value arguments"),
        ("title", "{{subject}}", "\"subject\" is not in the template context"),
        ("title", "{{upper subject}}", "\"subject\" is not in the template context"),
        ("title", "{{this.subject}}", "(write data.subject)"),
        ("title", "{{#if data.a}}{{subject}}{{/if}}", "line 1, column 15: \"subject\""),
        ("title", "{{matchRegex data.x \"(\"}}", "matchRegex: invalid regular expression \"(\": unclosed group"),
        ("title", "{{formatDate data.x \"%J\"}}", "formatDate: cannot format a date with \"%J\""),
        ("title", "{{now \"%\"}}", "now: cannot format a date"),
        ("title", "{{> header}}", "partials and decorators"),
        ("title", "{{#if data.x}}", "line 1, column"),
        ("title", "{{#if data.x}}{{/each}}", "helper \"if\" was opened, but \"each\" is closing"),
        ("description", "ok\n{{data.x", "line 2, column"),
        ("title", "{{matchRegex data.x \"\\d+\"}}", "a regex \\d is written \\\\d"),
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
                if e.integration == "custom" && e.field == *field && e.message.contains(want) =>
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
