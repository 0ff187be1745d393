//! The `email` integration type. Without rules every message is a `create`. Its third-party id
//! is the Message-ID, except that a reply takes the id of its thread's first message
//! (References, then In-Reply-To), so a thread aggregates into the alert of the original message.
//!
//! An integration's rules (spec step 4), tried in order, can change that: the first rule whose
//! matchers all match sets the action, and the named group `(?P<id>…)` of one of its matchers,
//! when it matched something, becomes the third-party id. So a RECOVERY mail can resolve its
//! PROBLEM alert. Rules are compiled once, when the configuration loads.
//!
//! As PagerTree's `email/v3`: a reply aggregates on the Message-ID of any message of its
//! thread (every `References` entry, `In-Reply-To`, its own Message-ID are extra ids that
//! aggregate, when the id is the thread's default), and with `spam_header`/`spam_pass` a
//! message the verdict calls spam changes nothing (outcome `ignored`, the reason logged).

use super::{Event, dedup_keys, random_id};
use crate::domain::{Action, Field, ID_GROUP, IdPart, IdTemplate, Integration, Rule, SpamCheck};
use crate::email::EmailData;

/// `None` when some matcher of `rule` does not match; else the third-party id the rule makes,
/// when it makes a non-empty one: its `id` key expanded over the matchers' named groups, or
/// the match of the `id` group.
fn apply(rule: &Rule, data: &EmailData) -> Option<Option<String>> {
    let mut id = None;
    // With an `id` key: every named group's match, by name.
    let mut groups: Vec<(String, String)> = Vec::new();
    for m in &rule.matchers {
        let value = field(data, &m.field)?;
        let captures = match &rule.id {
            Some(_) => m.regex.captures_len() > 1,
            None => m.regex.capture_names().any(|n| n == Some(ID_GROUP)),
        };
        if !captures {
            if !m.regex.is_match(&value) {
                return None;
            }
            continue;
        }
        let caps = m.regex.captures(&value)?;
        if rule.id.is_some() {
            for name in m.regex.capture_names().flatten() {
                let text = caps.name(name).map_or("", |g| g.as_str().trim());
                groups.push((name.to_string(), text.to_string()));
            }
        } else {
            id = caps
                .name(ID_GROUP)
                .map(|g| g.as_str().trim())
                .filter(|s| !s.is_empty())
                .map(str::to_string);
        }
    }
    if let Some(template) = &rule.id {
        let expanded = expand(template, &groups);
        id = Some(expanded.trim().to_string()).filter(|s| !s.is_empty());
    }
    Some(id)
}

/// A rule's `id` key with each group replaced by its match (empty when it took no part).
fn expand(template: &IdTemplate, groups: &[(String, String)]) -> String {
    template
        .parts
        .iter()
        .map(|part| match part {
            IdPart::Text(text) => text.as_str(),
            IdPart::Group(name) => groups
                .iter()
                .find(|(n, _)| n == name)
                .map_or("", |(_, v)| v.as_str()),
        })
        .collect()
}

fn field<'a>(data: &'a EmailData, f: &Field) -> Option<std::borrow::Cow<'a, str>> {
    use std::borrow::Cow;
    Some(match f {
        Field::To => Cow::Borrowed(data.to.as_str()),
        Field::From => Cow::Borrowed(data.from.as_str()),
        Field::Subject => Cow::Borrowed(data.subject.as_str()),
        Field::Message => Cow::Borrowed(data.message.as_str()),
        Field::Text => Cow::Borrowed(data.text.as_str()),
        Field::Header(name) => {
            // Header names are kept as written; two spellings of one name are one header.
            let mut values = data
                .headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str());
            let first = values.next()?;
            match values.next() {
                None => Cow::Borrowed(first),
                Some(second) => {
                    let mut all = vec![first, second];
                    all.extend(values);
                    Cow::Owned(all.join("\n"))
                }
            }
        }
    })
}

/// The message's event for `integration`: spam changes nothing; else the first matching
/// rule's action and id, else `create` with the default id. The index of the rule that
/// matched is [`Event::rule`] and `data.rule`.
pub fn adapt(mut data: EmailData, integration: &Integration) -> Event {
    if let Some(reason) = integration.spam.as_ref().and_then(|s| spam(s, &data)) {
        let id = default_id(&data);
        let data = serde_json::to_value(&data).unwrap_or_default();
        return Event {
            reason: Some(reason),
            ..Event::new(Action::Other, id, data)
        };
    }
    let matched = integration
        .rules
        .iter()
        .enumerate()
        .find_map(|(i, r)| apply(r, &data).map(|id| (i, r.action, id)));
    let (action, rule_id) = match &matched {
        Some((_, action, id)) => (Action::from(*action), id.clone()),
        None => (Action::Create, None),
    };
    // A rule's id names the problem, not the thread: only the thread's id takes its keys.
    let keys = rule_id.is_none();
    let thirdparty_id = rule_id.unwrap_or_else(|| default_id(&data));
    data.rule = matched.map(|(i, _, _)| i);
    Event {
        rule: data.rule,
        dedup_keys: if keys {
            thread_ids(&data, &thirdparty_id)
        } else {
            Vec::new()
        },
        ..Event::new(
            action,
            thirdparty_id,
            serde_json::to_value(&data).unwrap_or_default(),
        )
    }
}

/// Why the message is spam by `check`, or `None`: its header is present (any spelling of the
/// name; every value when repeated) and some value does not match `spam_pass`.
fn spam(check: &SpamCheck, data: &EmailData) -> Option<String> {
    let value = field(data, &Field::Header(check.header.clone()))?;
    let failed = value.split('\n').find(|v| !check.pass.is_match(v.trim()))?;
    Some(format!(
        "spam: {} is \"{}\", which does not match spam_pass \"{}\"",
        check.header,
        failed.trim(),
        check.pass.as_str()
    ))
}

/// Every Message-ID of the thread the message belongs to, its own included, newest first:
/// a reply aggregates into the alert of any of them (bounded, see [`dedup_keys`]).
fn thread_ids(data: &EmailData, thirdparty_id: &str) -> Vec<String> {
    let ids = data
        .message_id
        .iter()
        .chain(data.in_reply_to.iter())
        .chain(data.references.iter().rev())
        .map(String::as_str);
    dedup_keys(ids, thirdparty_id)
}

/// References[0], else In-Reply-To, else Message-ID, else a random id.
pub(crate) fn default_id(data: &EmailData) -> String {
    data.references
        .first()
        .or(data.in_reply_to.as_ref())
        .or(data.message_id.as_ref())
        .filter(|id| !id.trim().is_empty())
        .cloned()
        .unwrap_or_else(random_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::domain::{Matcher, RuleAction};
    use crate::email::{Envelope, parse};
    use regex::Regex;
    use std::path::Path;

    /// The event of an e-mail integration with these rules and nothing else.
    fn adapt(data: EmailData, rules: &[Rule]) -> Event {
        let integration = Integration {
            rules: rules.to_vec(),
            ..Integration::new("ops", crate::domain::IntegrationType::Email)
        };
        super::adapt(data, &integration)
    }

    fn data(headers: &str) -> EmailData {
        let raw = format!("From: a@b\r\nTo: ops@x\r\nSubject: s\r\n{headers}\r\nbody\r\n");
        parse(raw.as_bytes(), Envelope::default())
    }

    fn sample(name: &str) -> EmailData {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("samples")
            .join(name);
        parse(&std::fs::read(path).unwrap(), Envelope::default())
    }

    /// The rules of one email integration configured with `rules` (TOML `[[integrations.rules]]`
    /// tables).
    fn rules(rules: &str) -> Vec<Rule> {
        let text = format!(
            "[[integrations]]\nid = \"ops\"\ntype = \"email\"\naddresses = [\"ops@x\"]\n{rules}"
        );
        let mut config = Config::parse(&text, Path::new("t.toml")).expect("rules compile");
        config.integrations.remove(0).rules
    }

    #[test]
    fn thirdparty_id_by_table() {
        let cases = [
            ("Message-ID: <m1@x>\r\n", Some("m1@x")),
            (
                "Message-ID: <m2@x>\r\nIn-Reply-To: <m1@x>\r\n",
                Some("m1@x"),
            ),
            (
                "Message-ID: <m3@x>\r\nIn-Reply-To: <m2@x>\r\nReferences: <m1@x> <m2@x>\r\n",
                Some("m1@x"),
            ),
            ("", None),
        ];
        for (headers, want) in cases {
            let e = adapt(data(headers), &[]);
            assert_eq!(e.action, Action::Create);
            assert_eq!(e.data["rule"], serde_json::Value::Null);
            match want {
                Some(id) => assert_eq!(e.thirdparty_id, id, "{headers}"),
                None => assert_eq!(
                    e.thirdparty_id.len(),
                    36,
                    "a random id when there is no Message-ID"
                ),
            }
        }
        assert_ne!(
            adapt(data(""), &[]).thirdparty_id,
            adapt(data(""), &[]).thirdparty_id
        );
    }

    /// The rules of one integration of the example configuration, `config/siren.toml`.
    fn example_rules(id: &str) -> Vec<Rule> {
        let text = include_str!("../../config/siren.toml");
        let config = Config::parse(text, Path::new("config/siren.toml")).unwrap();
        let i = config.integrations.into_iter().find(|i| i.id == id);
        i.expect("the example has the integration").rules
    }

    /// (integration, sample, action, third-party id or None for the default, rule index)
    type Case = (
        &'static str,
        &'static str,
        Action,
        Option<&'static str>,
        Option<usize>,
    );

    #[test]
    fn example_rules_over_the_samples() {
        let cases: &[Case] = &[
            (
                "ops",
                "nagios-problem.eml",
                Action::Create,
                Some("web01/HTTP"),
                Some(0),
            ),
            (
                "ops",
                "nagios-recovery.eml",
                Action::Resolve,
                Some("web01/HTTP"),
                Some(1),
            ),
            ("ops", "monit.eml", Action::Create, None, None),
            ("zabbix", "zabbix-problem.eml", Action::Create, None, None),
            (
                "zabbix",
                "zabbix-resolved.eml",
                Action::Resolve,
                None,
                Some(0),
            ),
            (
                "prometheus",
                "alertmanager.eml",
                Action::Create,
                Some("InstanceDown (node critical)"),
                Some(3),
            ),
        ];
        for &(integration, file, action, id, rule) in cases {
            let data = sample(file);
            let e = adapt(data.clone(), &example_rules(integration));
            assert_eq!(e.action, action, "{file}");
            let default = default_id(&data);
            assert_eq!(e.thirdparty_id, id.unwrap_or(&default), "{file}");
            assert_eq!(e.data["rule"], serde_json::json!(rule), "{file}");
        }
        // Zabbix's pair share the thread's id, the default.
        assert_eq!(
            default_id(&sample("zabbix-resolved.eml")),
            "20240312031422.3385217.23661@zabbix.example.com"
        );
        assert_eq!(
            default_id(&sample("zabbix-problem.eml")),
            default_id(&sample("zabbix-resolved.eml"))
        );
        // The default subject of a resolved group resolves what its firing subject created.
        let resolved = "From: am@x\r\nTo: prometheus@x\r\nSubject: [RESOLVED] InstanceDown (node critical)\r\n\r\nb\r\n";
        let e = adapt(
            parse(resolved.as_bytes(), Envelope::default()),
            &example_rules("prometheus"),
        );
        assert_eq!(
            (e.action, e.thirdparty_id.as_str()),
            (Action::Resolve, "InstanceDown (node critical)")
        );
    }

    #[test]
    fn every_matcher_must_match_and_the_first_matching_rule_wins() {
        let rules = rules(
            r#"
            [[integrations.rules]]
            subject = "^PROBLEM"
            from = "@staging\\."
            action = "drop"
            [[integrations.rules]]
            subject = "^PROBLEM"
            action = "ignore"
            [[integrations.rules]]
            subject = "PROBLEM"
            action = "acknowledge"
        "#,
        );
        let mail = |from: &str, subject: &str| {
            let raw = format!("From: {from}\r\nTo: ops@x\r\nSubject: {subject}\r\n\r\nbody\r\n");
            adapt(parse(raw.as_bytes(), Envelope::default()), &rules)
        };
        let cases = [
            ("n@staging.example.com", "PROBLEM disk", Action::Drop, 0),
            ("n@prod.example.com", "PROBLEM disk", Action::Other, 1),
            (
                "n@staging.example.com",
                "re: PROBLEM",
                Action::Acknowledge,
                2,
            ),
        ];
        for (from, subject, action, rule) in cases {
            let e = mail(from, subject);
            assert_eq!(e.action, action, "{from} {subject}");
            assert_eq!(e.data["rule"], rule, "{from} {subject}");
        }
        assert_eq!(mail("a@b", "all good").action, Action::Create);
    }

    #[test]
    fn fields_by_table() {
        let raw = "From: Nagios <nagios@mon.example.com>\r\nTo: ops@x, db@x\r\nSubject: Disk\r\n\
                   X-Alert-Key: disk/db01\r\nx-alert-key: second\r\nContent-Type: text/html\r\n\r\n\
                   <p>Host <b>db01</b> state CRITICAL</p>\r\n";
        let d = parse(raw.as_bytes(), Envelope::default());
        // (field, pattern, matches); headers ignore the case of their name.
        let cases: &[(Field, &str, bool)] = &[
            (Field::To, "^ops@x;db@x$", true),
            (Field::From, "^nagios@mon\\.example\\.com$", true),
            (Field::Subject, "(?i)^disk$", true),
            (Field::Subject, "^disk$", false),
            (Field::Message, "<b>db01</b>", true),
            (Field::Text, "Host db01 state CRITICAL", true),
            (Field::Text, "<b>", false),
            // Both spellings are one header, its values joined with a newline.
            (Field::Header("X-ALERT-KEY".into()), "(?m)^disk/db01$", true),
            (Field::Header("X-ALERT-KEY".into()), "^disk/db01$", false),
            (Field::Header("x-alert-key".into()), "(?m)^second$", true),
            (Field::Header("X-Absent".into()), "", false),
        ];
        for (f, pattern, want) in cases {
            let rule = Rule {
                matchers: vec![Matcher {
                    field: f.clone(),
                    regex: Regex::new(pattern).unwrap(),
                }],
                action: RuleAction::Resolve,
                id: None,
            };
            assert_eq!(apply(&rule, &d).is_some(), *want, "{f:?} {pattern}");
        }
    }

    #[test]
    fn id_from_a_header_and_an_empty_id_falls_back() {
        let rules = rules(
            r#"
            [[integrations.rules]]
            headers.X-Group = '^(?P<id>.*)$'
            headers.X-Status = '^resolved$'
            action = "resolve"
            [[integrations.rules]]
            headers.x-group = '^(?P<id>.*)$'
            action = "create"
        "#,
        );
        let e = adapt(
            data("Message-ID: <m@x>\r\nX-Group: {}:{alertname=\"Down\"}\r\nX-Status: resolved\r\n"),
            &rules,
        );
        assert_eq!(e.action, Action::Resolve);
        assert_eq!(e.thirdparty_id, "{}:{alertname=\"Down\"}");
        let e = adapt(
            data("Message-ID: <m@x>\r\nX-Group: g1\r\nX-Status: firing\r\n"),
            &rules,
        );
        assert_eq!((e.action, e.thirdparty_id.as_str()), (Action::Create, "g1"));
        // The group matched nothing: the default id, not an empty one.
        let e = adapt(data("Message-ID: <m@x>\r\nX-Group: \r\n"), &rules);
        assert_eq!(
            (e.action, e.thirdparty_id.as_str()),
            (Action::Create, "m@x")
        );
    }

    #[test]
    fn a_reply_carries_every_message_id_of_its_thread() {
        let e = adapt(
            data(
                "Message-ID: <m3@x>\r\nIn-Reply-To: <m2@x>\r\nReferences: <m0@x> <m1@x> <m2@x>\r\n",
            ),
            &[],
        );
        assert_eq!(
            e.thirdparty_id, "m0@x",
            "the thread's first message, as before"
        );
        assert_eq!(
            e.dedup_keys,
            ["m3@x", "m2@x", "m1@x"],
            "newest first, without the id"
        );
        let e = adapt(data("Message-ID: <m1@x>\r\n"), &[]);
        assert_eq!((e.thirdparty_id.as_str(), e.dedup_keys.len()), ("m1@x", 0));
        // A rule's own id names the problem: the thread's ids do not aggregate into it.
        let rules = rules("[[integrations.rules]]\nsubject = '^(?P<id>s)$'\naction = \"create\"\n");
        let e = adapt(data("Message-ID: <m3@x>\r\nReferences: <m0@x>\r\n"), &rules);
        assert_eq!((e.thirdparty_id.as_str(), e.dedup_keys.len()), ("s", 0));
    }

    #[test]
    fn spam_is_ignored_with_the_reason() {
        let integration = |header: &str, pass: &str| Integration {
            spam: Some(SpamCheck {
                header: header.into(),
                pass: Regex::new(pass).unwrap(),
            }),
            // A rule that would otherwise resolve: spam goes before rules.
            rules: rules("[[integrations.rules]]\nsubject = \"\"\naction = \"resolve\"\n"),
            ..Integration::new("ops", crate::domain::IntegrationType::Email)
        };
        let ses = integration("X-SES-Spam-Verdict", "^PASS$");
        let e = super::adapt(data("X-SES-Spam-Verdict: FAIL\r\n"), &ses);
        assert_eq!(e.action, Action::Other);
        assert_eq!(
            e.reason.as_deref(),
            Some("spam: X-SES-Spam-Verdict is \"FAIL\", which does not match spam_pass \"^PASS$\"")
        );
        assert_eq!(e.data["rule"], serde_json::Value::Null);
        for headers in [
            "X-SES-Spam-Verdict: PASS\r\n",
            "x-ses-spam-verdict:  PASS \r\n",
            "",
        ] {
            let e = super::adapt(data(headers), &ses);
            assert_eq!(
                (e.action, e.reason.as_deref()),
                (Action::Resolve, None),
                "{headers:?}"
            );
        }
        let flag = integration("X-Spam-Flag", "(?i)^no$");
        assert_eq!(
            super::adapt(data("X-Spam-Flag: YES\r\n"), &flag).action,
            Action::Other
        );
        assert_eq!(
            super::adapt(data("X-Spam-Flag: No\r\n"), &flag).action,
            Action::Resolve
        );
        // A repeated header is spam when any of its values fails.
        let e = super::adapt(data("X-Spam-Flag: NO\r\nX-Spam-Flag: YES\r\n"), &flag);
        assert_eq!(e.action, Action::Other);
    }
}
