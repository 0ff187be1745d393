//! `siren check-config --explain ID`: what one integration does with what it receives, as
//! loaded: its claims and windows, the templates in force and where each came from (its own,
//! its preset's, the type's default), the guard, and every rule in the order they are tried,
//! the preset's included.

use std::fmt::Write as _;

use crate::domain::{Field, IdPart, Integration, IntegrationType, Rule, RuleAction};

use super::Config;

/// The explanation of the integration `id`, or `None` when the configuration has none.
pub fn explain(config: &Config, id: &str) -> Option<String> {
    let i = config.integrations.iter().find(|i| i.id == id)?;
    let mut out = String::new();
    let kind = i.kind.as_str();
    let _ = writeln!(out, "integration {} ({kind}), \"{}\"", i.id, i.name);
    let row = |out: &mut String, key: &str, value: &str| {
        let _ = writeln!(out, "  {key:<20} {value}");
    };
    if !i.addresses.is_empty() {
        row(&mut out, "addresses", &i.addresses.join(", "));
    }
    if i.kind != IntegrationType::Email {
        row(&mut out, "url", &format!("POST /webhooks/{}", i.id));
    }
    row(
        &mut out,
        "urgency",
        &format!("{:?}", i.urgency).to_lowercase(),
    );
    let window = |d: Option<std::time::Duration>| {
        d.map_or("off".to_string(), |d| {
            humantime::format_duration(d).to_string()
        })
    };
    row(&mut out, "aggregate", &window(i.aggregate));
    if i.aggregate.is_some() {
        let key = i.aggregate_key.as_deref().unwrap_or("the title");
        let normalized = if i.normalize { ", normalized" } else { "" };
        row(&mut out, "aggregate_key", &format!("{key}{normalized}"));
    }
    let storm = i.storm.map_or("off".to_string(), |s| {
        let within = humantime::format_duration(s.within);
        format!(
            "past {} new alerts within {within}, they fold into one storm alert",
            s.alerts
        )
    });
    row(&mut out, "storm", &storm);
    row(&mut out, "auto_resolve", &window(i.auto_resolve));
    let destinations = if i.destinations.is_empty() {
        "none".to_string()
    } else {
        i.destinations.join(", ")
    };
    row(&mut out, "destinations", &destinations);
    let (title, description) = origins(i);
    row(&mut out, "title", &format!("{}    ({title})", i.title));
    row(
        &mut out,
        "description",
        &format!("{}    ({description})", i.description),
    );
    if i.kind == IntegrationType::Email {
        email(&mut out, i);
    }
    Some(out)
}

/// Where the title and description templates came from.
fn origins(i: &Integration) -> (String, String) {
    let (default_title, default_description) = crate::template::default_templates(i.kind);
    let preset = i
        .preset
        .and_then(|p| Some((p, super::presets::compiled(p).ok()?)));
    let origin =
        |value: &str, default: &str, from_preset: Option<&str>| match (&preset, from_preset) {
            (Some((p, _)), Some(t)) if t == value => format!("preset {}", p.as_str()),
            _ if value == default => format!("{} default", i.kind.as_str()),
            _ => "own".to_string(),
        };
    let compiled = preset.as_ref().map(|(_, c)| c);
    (
        origin(
            &i.title,
            default_title,
            compiled.and_then(|c| c.title.as_deref()),
        ),
        origin(
            &i.description,
            default_description,
            compiled.and_then(|c| c.description.as_deref()),
        ),
    )
}

fn email(out: &mut String, i: &Integration) {
    let preset = i
        .preset
        .map_or("none".to_string(), |p| p.as_str().to_string());
    let _ = writeln!(out, "  {:<20} {preset}", "preset");
    let guard = if i.accept_auto_replies {
        "auto-replies and delivery reports are alerts (accept_auto_replies); Siren's own mail is ignored"
    } else {
        "auto-replies, delivery reports and Siren's own mail are ignored"
    };
    let _ = writeln!(out, "  {:<20} {guard}", "guard");
    if i.rules.is_empty() {
        let _ = writeln!(
            out,
            "  rules                none: every message creates an alert (id: References, In-Reply-To, Message-ID)"
        );
        return;
    }
    let _ = writeln!(
        out,
        "  rules                tried in order; the first whose matchers all match decides; if none does: create"
    );
    for (n, rule) in i.rules.iter().enumerate() {
        let from = match i.preset {
            Some(p) if n >= i.own_rules => format!("preset {}", p.as_str()),
            _ => "own".to_string(),
        };
        let _ = writeln!(out, "    [{n}] {from}");
        describe(out, rule);
    }
}

fn describe(out: &mut String, rule: &Rule) {
    for m in &rule.matchers {
        let field = match &m.field {
            Field::To => "to".to_string(),
            Field::From => "from".to_string(),
            Field::Subject => "subject".to_string(),
            Field::Message => "message".to_string(),
            Field::Text => "text".to_string(),
            Field::Header(name) => format!("headers.{name}"),
        };
        let _ = writeln!(out, "        {field} = '{}'", m.regex.as_str());
    }
    let action = match rule.action {
        RuleAction::Create => "create",
        RuleAction::Resolve => "resolve",
        RuleAction::Acknowledge => "acknowledge",
        RuleAction::Drop => "drop",
        RuleAction::Ignore => "ignore",
    };
    if rule.action == RuleAction::Ignore {
        let _ = writeln!(out, "        => ignore (logged, no alert)");
        return;
    }
    let id = match &rule.id {
        Some(t) => {
            let groups: Vec<&str> = t
                .parts
                .iter()
                .filter_map(|p| match p {
                    IdPart::Group(g) => Some(g.as_str()),
                    IdPart::Text(_) => None,
                })
                .collect();
            format!("id = '{}' (groups {})", t.source, groups.join(", "))
        }
        None if rule.matchers.iter().any(|m| {
            m.regex
                .capture_names()
                .any(|n| n == Some(crate::domain::ID_GROUP))
        }) =>
        {
            "id = the (?P<id>…) group".to_string()
        }
        None => "id = the default (References, In-Reply-To, Message-ID)".to_string(),
    };
    let _ = writeln!(out, "        => {action}, {id}");
}
