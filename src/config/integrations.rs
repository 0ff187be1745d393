//! `[[integrations]]`: ids, address claims, windows, secrets, and the e-mail rules compiled.

use std::collections::{HashMap, HashSet};

use crate::domain::{
    Field, ID_GROUP, Integration, IntegrationType, Matcher, Rule, SpamCheck, Urgency,
};

use super::ConfigError;
use super::key::Key;
use super::raw::{RawIntegration, RawRule};

pub(super) fn integrations(
    at: &Key,
    raw: Vec<RawIntegration>,
    destinations: &[super::Destination],
) -> Result<Vec<Integration>, ConfigError> {
    let mut ids = HashSet::new();
    // Normalized address -> the integration that claims it.
    let mut claims: HashMap<String, String> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let id = at.item(i).at("id");
        id.identifier(&r.id)?;
        if !ids.insert(r.id.clone()) {
            return Err(id.err(format!("\"{}\" is used twice", r.id)));
        }
        let at = at.item(&r.id);
        let addresses = addresses(&at.at("addresses"), &r, &mut claims)?;
        for d in &r.destinations {
            if !destinations.iter().any(|x| &x.id == d) {
                return Err(at
                    .at("destinations")
                    .err(format!("no [[destinations]] has id \"{d}\"")));
            }
        }
        out.push(integration(&at, r, addresses)?);
    }
    Ok(out)
}

/// The integration's address claims, normalized; each address is claimed once in the file.
fn addresses(
    at: &Key,
    r: &RawIntegration,
    claims: &mut HashMap<String, String>,
) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    for a in &r.addresses {
        let norm = at.address(a)?;
        if let Some(other) = claims.insert(norm.clone(), r.id.clone()) {
            return Err(at.err(format!(
                "\"{a}\" is already claimed by integration \"{other}\""
            )));
        }
        out.push(norm);
    }
    match r.kind {
        IntegrationType::Email if out.is_empty() => {
            Err(at.err("an email integration needs at least one address"))
        }
        IntegrationType::Webhook | IntegrationType::Alertmanager | IntegrationType::Grafana
            if !out.is_empty() =>
        {
            Err(at.err("only email integrations claim addresses"))
        }
        _ => Ok(out),
    }
}

/// The rest of one integration: windows, templates (defaulted by type), token and rules.
fn integration(
    at: &Key,
    r: RawIntegration,
    addresses: Vec<String>,
) -> Result<Integration, ConfigError> {
    let aggregate = r
        .aggregate
        .as_deref()
        .map(|v| at.at("aggregate").window(v))
        .transpose()?;
    let auto_resolve = r
        .auto_resolve
        .as_deref()
        .map(|v| at.at("auto_resolve").window(v))
        .transpose()?;
    let (default_title, default_description) = crate::template::default_templates(r.kind);
    let token = at.at("token").secret(r.token, r.token_file, r.token_env)?;
    if r.kind != IntegrationType::Email && !r.rules.is_empty() {
        return Err(at.at("rules").err("only email integrations have rules"));
    }
    if r.kind != IntegrationType::Alertmanager && r.group_by.is_some() {
        return Err(at
            .at("group_by")
            .err("only alertmanager integrations group (\"alert\" or \"group\")"));
    }
    let spam = spam(at, r.kind, r.spam_header, r.spam_pass)?;
    let mut rules: Vec<Rule> = r
        .rules
        .into_iter()
        .enumerate()
        .map(|(i, rule)| self::rule(&at.at("rules").item(i), rule))
        .collect::<Result<_, _>>()?;
    let own_rules = rules.len();
    if r.kind != IntegrationType::Email && r.accept_auto_replies.is_some() {
        return Err(at
            .at("accept_auto_replies")
            .err("only email integrations receive auto-replies"));
    }
    let preset = super::presets::for_integration(&at.at("preset"), r.kind, r.preset)?;
    let folding = super::folding::folding(at, aggregate, r.aggregate_key, r.normalize, r.storm)?;
    let (default_title, default_description) = match &preset {
        Some(p) => (
            p.title.as_deref().unwrap_or(default_title),
            p.description.as_deref().unwrap_or(default_description),
        ),
        None => (default_title, default_description),
    };
    if let Some(p) = &preset {
        rules.extend(p.rules.iter().cloned());
    }
    Ok(Integration {
        name: r.name.unwrap_or_else(|| r.id.clone()),
        id: r.id,
        kind: r.kind,
        addresses,
        urgency: r.urgency.unwrap_or(Urgency::Medium),
        destinations: r.destinations,
        aggregate,
        auto_resolve,
        title: r.title.unwrap_or_else(|| default_title.into()),
        description: r.description.unwrap_or_else(|| default_description.into()),
        token,
        rules,
        spam,
        group_by: r.group_by.unwrap_or_default(),
        preset: r.preset,
        own_rules,
        accept_auto_replies: r.accept_auto_replies.unwrap_or(false),
        aggregate_key: folding.aggregate_key,
        normalize: folding.normalize,
        storm: folding.storm,
    })
}

/// `spam_header` and `spam_pass`, given together on an e-mail integration: the header to read
/// and the regular expression its value matches when the message is not spam.
fn spam(
    at: &Key,
    kind: IntegrationType,
    header: Option<String>,
    pass: Option<String>,
) -> Result<Option<SpamCheck>, ConfigError> {
    let (header, pass) = match (header, pass) {
        (None, None) => return Ok(None),
        _ if kind != IntegrationType::Email => {
            return Err(at
                .at("spam_header")
                .err("only email integrations check for spam"));
        }
        (Some(header), Some(pass)) => (header, pass),
        (Some(_), None) => {
            return Err(at.at("spam_pass").err(
                "is required with spam_header: a regular expression the header's value matches when the message is not spam, e.g. \"^PASS$\"",
            ));
        }
        (None, Some(_)) => {
            return Err(at.at("spam_header").err(
                "is required with spam_pass: the header that carries the verdict, e.g. \"X-SES-Spam-Verdict\"",
            ));
        }
    };
    if header.is_empty() || header.contains(|c: char| c == ':' || !c.is_ascii_graphic()) {
        return Err(at.at("spam_header").err("is not a header name"));
    }
    let pass = crate::template::build_regex(&pass).map_err(|e| at.at("spam_pass").err(e))?;
    Ok(Some(SpamCheck { header, pass }))
}

/// Compiles one e-mail rule; errors name the rule (`integrations[ops].rules[1]`) and its key.
pub(super) fn rule(at: &Key, mut r: RawRule) -> Result<Rule, ConfigError> {
    let action = r.action;
    let id = r.id.take();
    let fields = fields(at, r)?;
    if fields.is_empty() {
        return Err(at.err(
            "needs at least one matcher: to, from, subject, message, text or headers.<Name> (subject = \"\" matches every message)",
        ));
    }
    // The name of the matcher with the `id` group, if one has it.
    let mut id_name: Option<String> = None;
    let mut matchers = Vec::with_capacity(fields.len());
    for (name, field, pattern) in fields {
        let key = at.at(&name);
        let regex = crate::template::build_regex(&pattern).map_err(|e| key.err(e))?;
        // With an `id` key, groups are named freely (checked by `rule_id`).
        if id.is_none() && regex.capture_names().any(|n| n == Some(ID_GROUP)) {
            if let Some(first) = &id_name {
                return Err(key.err(format!(
                    "has a (?P<id>…) group, and so has {first}; only one matcher of a rule may set the id"
                )));
            }
            id_name = Some(name);
        }
        matchers.push(Matcher { field, regex });
    }
    let id = id
        .map(|source| super::rule_id::parse(&at.at("id"), &source, &matchers))
        .transpose()?;
    Ok(Rule {
        matchers,
        action,
        id,
    })
}

/// A rule's matchers as (key below the rule, field, pattern), in the order they are tried.
fn fields(at: &Key, r: RawRule) -> Result<Vec<(String, Field, String)>, ConfigError> {
    let mut fields: Vec<(String, Field, String)> = [
        ("to", Field::To, r.to),
        ("from", Field::From, r.from),
        ("subject", Field::Subject, r.subject),
        ("message", Field::Message, r.message),
        ("text", Field::Text, r.text),
    ]
    .into_iter()
    .filter_map(|(k, f, p)| p.map(|p| (k.to_string(), f, p)))
    .collect();
    let mut names = HashSet::new();
    for (name, pattern) in r.headers {
        let key = format!("headers.{name}");
        if name.is_empty() || name.contains(|c: char| c == ':' || !c.is_ascii_graphic()) {
            return Err(at.at(&key).err("is not a header name"));
        }
        if !names.insert(name.to_ascii_lowercase()) {
            return Err(at.at(&key).err("is given twice (header names ignore case)"));
        }
        fields.push((key, Field::Header(name), pattern));
    }
    Ok(fields)
}
