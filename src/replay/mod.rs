//! `siren replay --config draft.toml [--integration ID] [--since 7d]`: the stored raw inputs
//! of the integration logs run again, oldest first, through the draft's parsing, routing,
//! guard, presets, rules, templates and folding, into a [`Sandbox`] (nothing is written
//! anywhere), and what would differ is printed: per entry the outcome, the alert and its title
//! today versus under the draft, then a summary.
//!
//! Each entry is replayed at the time it arrived, so windows behave as they did. Alerts that
//! entries of the replayed span touched but that were created before it are taken as open at
//! their creation (the sandbox starts with them). An entry a silence dropped is silenced
//! under the draft too; silences created since are not applied. Query parameters of
//! webhooks are not stored, so a webhook that relied on them replays without them.

mod live;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;
use serde_json::Value;

use crate::config::Config;
use crate::domain::{Action, Integration, IntegrationType};
use crate::email::{self, Envelope};
use crate::ingest::{self, Input};
use crate::route::Routes;
use crate::store::{AlertRequest, Fold, NewLog, Receipt, Sandbox, Source};

use live::{Entry, Live, LiveAlert};

/// `siren replay …`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Only this integration's log.
    #[arg(long)]
    integration: Option<String>,
    /// How far back: a duration (7d, 12h) or an RFC 3339 time.
    #[arg(long, default_value = "7d")]
    since: String,
    /// The running daemon's HTTP base URL (default: http.listen of the draft).
    #[arg(long)]
    url: Option<String>,
    /// Print every entry, not only those that would change.
    #[arg(long)]
    all: bool,
}

/// What one entry came to: its outcome, the entry that created its alert, and that alert's
/// title (now).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Result_ {
    outcome: String,
    creator: Option<u64>,
    title: Option<String>,
}

/// Runs `siren replay` with `config` as the draft.
pub fn run(config: &Config, args: ReplayArgs) -> anyhow::Result<()> {
    crate::cli::block_on(async move {
        let (live, how) = Live::open(config, args.url.clone()).await?;
        eprintln!("siren: {how}");
        let since = since(&args.since)?;
        let integrations = match &args.integration {
            Some(id) if !config.integrations.iter().any(|i| &i.id == id) => {
                let ids: Vec<&str> = config.integrations.iter().map(|i| i.id.as_str()).collect();
                anyhow::bail!(
                    "--integration {id}: the draft has no such integration (it has: {})",
                    ids.join(", ")
                );
            }
            Some(id) => vec![id.clone()],
            None => live.integrations(config).await?,
        };
        let mut entries = Vec::new();
        for i in &integrations {
            entries.extend(live.entries(i, since).await?);
        }
        entries.sort_by_key(|e| e.id);
        let mut alerts: HashMap<u64, Option<LiveAlert>> = HashMap::new();
        for id in entries.iter().filter_map(|e| e.alert_id) {
            if let std::collections::hash_map::Entry::Vacant(v) = alerts.entry(id) {
                v.insert(live.alert(id).await?);
            }
        }
        let report = replay(config, &entries, &alerts)?;
        print!("{}", render(&entries, &report, args.all));
        Ok(())
    })
}

/// `--since`: a duration ago, or a time.
fn since(value: &str) -> anyhow::Result<SystemTime> {
    if let Ok(d) = humantime::parse_duration(value) {
        return Ok(SystemTime::now() - d);
    }
    humantime::parse_rfc3339_weak(value)
        .with_context(|| format!("--since {value}: use a duration (7d) or an RFC 3339 time"))
}

/// Per entry: today's result and the draft's.
struct Report {
    today: Vec<Result_>,
    draft: Vec<Result_>,
}

fn replay(
    config: &Config,
    entries: &[Entry],
    alerts: &HashMap<u64, Option<LiveAlert>>,
) -> anyhow::Result<Report> {
    let sandbox = Sandbox::new()?;
    // Sandbox alert id -> the live entry that created it.
    let mut creators: HashMap<u64, u64> = HashMap::new();
    seed(config, entries, alerts, &sandbox, &mut creators)?;
    let mut draft: Vec<(Option<Receipt>, Option<String>)> = Vec::with_capacity(entries.len());
    let mut i = 0;
    while i < entries.len() {
        let n = same_input(entries, i);
        let group = &entries[i..i + n];
        match draft_logs(config, group) {
            Ok(mut logs) => {
                resilence(group, &mut logs);
                let receipts = sandbox.ingest(&logs, group[0].received_at)?;
                for (k, entry) in group.iter().enumerate() {
                    let r = receipts.get(k).copied();
                    if let Some(a) = r.and_then(|r| r.alert_id) {
                        creators.entry(a).or_insert(entry.id);
                    }
                    draft.push((r, r.is_none().then(|| "none".to_string())));
                }
            }
            Err(outcome) => draft.extend(group.iter().map(|_| (None, Some(outcome.clone())))),
        }
        i += n;
    }
    let today = entries
        .iter()
        .map(|e| {
            let alert = e.alert_id.and_then(|a| alerts.get(&a).cloned().flatten());
            Result_ {
                outcome: e.outcome.clone().unwrap_or_else(|| "none".into()),
                creator: alert.as_ref().map(|a| a.log_id),
                title: alert.map(|a| a.title),
            }
        })
        .collect();
    let draft = draft
        .into_iter()
        .map(|(receipt, label)| {
            let Some(r) = receipt else {
                return Ok(Result_ {
                    outcome: label.unwrap_or_default(),
                    creator: None,
                    title: None,
                });
            };
            let alert = r.alert_id.map(|a| sandbox.alert(a)).transpose()?.flatten();
            Ok(Result_ {
                outcome: r
                    .outcome
                    .and_then(|o| serde_json::to_value(o).ok())
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| "none".into()),
                creator: r.alert_id.and_then(|a| creators.get(&a).copied()),
                title: alert.map(|a| a.title),
            })
        })
        .collect::<Result<_, crate::store::Error>>()?;
    Ok(Report { today, draft })
}

/// The silences that applied keep applying: an entry that a silence dropped is silenced by
/// it under the draft too (silences are not configuration).
fn resilence(group: &[Entry], logs: &mut [NewLog]) {
    let silence = group.iter().find_map(|e| {
        let error = e.error.as_deref()?;
        let at = error.find(crate::store::SILENCED_BY)? + crate::store::SILENCED_BY.len();
        let digits: String = error[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse::<u64>().ok()
    });
    if let Some(id) = silence {
        for req in logs.iter_mut().filter_map(|l| l.alert.as_mut()) {
            req.fold.silence = Some(id);
        }
    }
}

/// How many entries from `i` on are one input: one webhook request's events share their
/// integration, arrival and raw body.
fn same_input(entries: &[Entry], i: usize) -> usize {
    let first = &entries[i];
    if first.source != "http" {
        return 1;
    }
    entries[i..]
        .iter()
        .take_while(|e| {
            e.integration == first.integration
                && e.received_at == first.received_at
                && e.raw == first.raw
        })
        .count()
}

/// The alerts created before the replayed span that its entries touched, put in the sandbox
/// as open at their creation, so that a recovery in the span finds its problem.
fn seed(
    config: &Config,
    entries: &[Entry],
    alerts: &HashMap<u64, Option<LiveAlert>>,
    sandbox: &Sandbox,
    creators: &mut HashMap<u64, u64>,
) -> anyhow::Result<()> {
    let first = entries.first().map_or(0, |e| e.id);
    let mut before: BTreeMap<u64, &LiveAlert> = BTreeMap::new();
    for a in alerts.values().flatten() {
        if a.log_id < first {
            before.insert(a.log_id, a);
        }
    }
    for (log_id, a) in before {
        let Some(integration) = config.integrations.iter().find(|i| i.id == a.integration) else {
            continue;
        };
        let log = seed_log(integration, a);
        if let Some(id) = sandbox.ingest(&[log], a.created_at)?[0].alert_id {
            creators.insert(id, log_id);
        }
    }
    Ok(())
}

fn seed_log(integration: &Integration, a: &LiveAlert) -> NewLog {
    NewLog {
        integration: integration.id.clone(),
        received_at: a.created_at,
        source: Source::Http,
        remote_addr: String::new(),
        data: Value::Null,
        alert: Some(AlertRequest {
            action: Action::Create,
            thirdparty_id: a.thirdparty_id.clone(),
            dedup_keys: Vec::new(),
            title: a.title.clone(),
            description: String::new(),
            urgency: integration.urgency,
            aggregate: integration.aggregate,
            auto_resolve: integration.auto_resolve,
            fold: Fold::default(),
        }),
        outcome: None,
        error: None,
        raw: Arc::from(&b""[..]),
        email: None,
    }
}

/// The draft's log entries for one input (the entries in `group`), or the outcome that
/// stands for none: `rejected: …` (the draft cannot read it), `not routed here`, ….
fn draft_logs(config: &Config, group: &[Entry]) -> Result<Vec<NewLog>, String> {
    let entry = &group[0];
    let index = config
        .integrations
        .iter()
        .position(|i| i.id == entry.integration)
        .ok_or("no such integration in the draft")?;
    let integration = &config.integrations[index];
    let input = Input {
        source: if entry.source == "smtp" {
            Source::Smtp
        } else {
            Source::Http
        },
        remote_addr: entry.remote_addr.clone(),
        received_at: entry.received_at,
        raw: Arc::from(&entry.raw[..]),
    };
    if integration.kind == IntegrationType::Email {
        let envelope: Envelope = serde_json::from_value(entry.data["envelope"].clone())
            .map_err(|_| "rejected: not an e-mail entry")?;
        let mut routes = Routes::default();
        for rcpt in &envelope.rcpt_to {
            routes.add(&config.router, rcpt);
        }
        let here: Vec<_> = routes
            .iter()
            .filter(|(r, _)| r.integration == index)
            .cloned()
            .collect();
        if here.is_empty() {
            return Err(match routes.first() {
                Some((r, _)) => format!("routed to {}", config.integrations[r.integration].id),
                None => "rejected: 550 5.1.1, no integration claims the recipients".into(),
            });
        }
        let data = email::parse(&entry.raw, envelope.clone());
        return Ok(ingest::email_logs(config, &envelope, &data, &here, &input));
    }
    let body = match serde_json::from_slice::<Value>(&entry.raw) {
        Ok(v) => v,
        Err(_) => crate::adapt::form::decode(Some("application/x-www-form-urlencoded"), &entry.raw)
            .map_err(|e| format!("rejected: {e}"))?,
    };
    let events =
        crate::adapt::payload(integration, &body, None).map_err(|e| format!("rejected: {e}"))?;
    Ok(events
        .into_iter()
        .map(|event| ingest::event_log(config, integration, &input, event, None))
        .collect())
}

/// The entries that would change (every entry with `all`), then the summary.
fn render(entries: &[Entry], report: &Report, all: bool) -> String {
    let mut out = String::new();
    let mut changed = 0;
    let mut titles = 0;
    let mut counts: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for (n, e) in entries.iter().enumerate() {
        let (today, draft) = (&report.today[n], &report.draft[n]);
        counts.entry(label(&today.outcome)).or_default().0 += 1;
        counts.entry(label(&draft.outcome)).or_default().1 += 1;
        let differs = label(&today.outcome) != label(&draft.outcome)
            || today.creator != draft.creator
            || today.title != draft.title;
        if differs {
            changed += 1;
            if today.outcome == draft.outcome && today.creator == draft.creator {
                titles += 1;
            }
        }
        if differs || all {
            let _ = writeln!(
                out,
                "#{} {} {} {}",
                e.id,
                e.integration,
                crate::store::rfc3339(e.received_at),
                quoted(summary(&e.data))
            );
            let _ = writeln!(out, "    today: {}", describe(today));
            let _ = writeln!(out, "    draft: {}", describe(draft));
        }
    }
    let mut parts = Vec::new();
    for (outcome, (today, draft)) in &counts {
        match draft - today {
            0 => {}
            d if d > 0 => parts.push(format!("{d} more {outcome}")),
            d => parts.push(format!("{} fewer {outcome}", -d)),
        }
    }
    if titles > 0 {
        parts.push(format!("{titles} with another title"));
    }
    let _ = write!(out, "{} entries, {changed} would change", entries.len());
    if !parts.is_empty() {
        let _ = write!(out, ": {}", parts.join(", "));
    }
    out.push('\n');
    out
}

/// The outcome without its detail (`rejected: …` -> `rejected`).
fn label(outcome: &str) -> &str {
    outcome.split(':').next().unwrap_or(outcome)
}

fn describe(r: &Result_) -> String {
    let mut s = r.outcome.clone();
    if let Some(c) = r.creator {
        let _ = write!(s, " #{c}");
    }
    if let Some(t) = &r.title {
        let _ = write!(s, " {}", quoted(t));
    }
    s
}

fn quoted(text: &str) -> String {
    let t: String = text.chars().take(100).collect();
    format!("\"{t}\"")
}

/// An entry's subject or title, as the log list shows it.
fn summary(data: &Value) -> &str {
    ["subject", "Title", "title"]
        .iter()
        .find_map(|k| data[*k].as_str())
        .or_else(|| data["commonAnnotations"]["summary"].as_str())
        .unwrap_or("")
}
