//! What one accepted input does, from parsed data to the durable commit: adapt (stage 4),
//! render the templates (stage 5), and hand log entries with their alert requests to the
//! writer, which aggregates (stage 6). The seam between the protocol front ends (SMTP, HTTP)
//! and the pipeline behind them.

use std::sync::Arc;
use std::time::SystemTime;

use crate::adapt::{self, Event};
use crate::config::Config;
use crate::domain::{Action, Integration, IntegrationType};
use crate::email::{self, EmailData, Envelope};
use crate::route::{Route, Routes};
use crate::store::{self, AlertRequest, EmailSource, Fold, NewLog, Receipt, Source, WriterHandle};
use crate::template::{DESCRIPTION_MAX, Rendered};

/// Messages larger than this are parsed on the blocking pool, off the session's worker.
const PARSE_INLINE_MAX: usize = 64 * 1024;
/// The title of an e-mail alert whose template renders nothing (no subject), as PagerTree's.
pub const UNTITLED_EMAIL: &str = "Incoming Email - Untitled Alert";

/// Parses one message once and logs it for each integration it was routed to (each once, with
/// only the recipients that route there in its envelope), returning only after everything is
/// durable. Receipts come in route order.
pub async fn email(
    config: &Config,
    writer: &WriterHandle,
    envelope: Envelope,
    raw: Vec<u8>,
    routes: &[(Route, Vec<String>)],
    received_at: SystemTime,
) -> Result<Vec<Receipt>, store::Error> {
    let remote_addr = envelope.client_addr.clone();
    let raw: Arc<[u8]> = raw.into();
    let data = if raw.len() <= PARSE_INLINE_MAX {
        email::parse(&raw, envelope.clone())
    } else {
        let (raw, envelope) = (raw.clone(), envelope.clone());
        tokio::task::spawn_blocking(move || email::parse(&raw, envelope))
            .await
            .map_err(|_| store::Error::Stopped)?
    };
    let input = Input {
        source: Source::Smtp,
        remote_addr,
        received_at,
        raw,
    };
    let logs = email_logs(config, &envelope, &data, routes, &input);
    writer.commit(logs).await
}

/// The log entries of one parsed message (`data`, from `envelope`), one per route: adapted,
/// rendered, ready for the writer. `siren replay` builds them the same way.
pub fn email_logs(
    config: &Config,
    envelope: &Envelope,
    data: &EmailData,
    routes: &[(Route, Vec<String>)],
    input: &Input,
) -> Vec<NewLog> {
    routes
        .iter()
        .map(|(route, rcpts)| {
            let integration = &config.integrations[route.integration];
            let event = adapt_email(config, integration, data, route, rcpts);
            let email = EmailSource {
                envelope: envelope.clone(),
                rcpt_to: rcpts.clone(),
                tag: route.tag.clone(),
                rule: event.rule,
            };
            let mut log = event_log(config, integration, input, event, data.parse_error.clone());
            log.email = Some(email);
            log
        })
        .collect()
}

/// Stage 4 for one route of a message: the data as the integration sees it (the route's tag,
/// only its recipients), adapted by the integration's rules; mail the loop and auto-reply
/// guard stops is an `other` event (logged as `ignored`) with the guard's reason.
fn adapt_email(
    config: &Config,
    integration: &Integration,
    data: &EmailData,
    route: &Route,
    rcpts: &[String],
) -> Event {
    let mut data = data.clone();
    data.tag = route.tag.clone();
    data.envelope.rcpt_to = rcpts.to_vec();
    let hostname = &config.smtp.hostname;
    match adapt::guard::check(&data, hostname, integration.accept_auto_replies) {
        Some(reason) => adapt::guard::ignored(data, reason),
        None => adapt::email::adapt(data, integration),
    }
}

/// Where an input came from, shared by the log entries it makes.
pub struct Input {
    pub source: Source,
    pub remote_addr: String,
    pub received_at: SystemTime,
    pub raw: Arc<[u8]>,
}

/// The log entry and alert request of one event; the templates are rendered here.
pub fn event_log(
    config: &Config,
    integration: &Integration,
    input: &Input,
    event: Event,
    error: Option<String>,
) -> NewLog {
    let (rendered, mut errors) = render(config, integration, &event, error, &input.raw);
    let fold = Fold {
        key: aggregate_key(config, integration, &event, &rendered.title, &mut errors),
        storm: integration.storm,
        silence: None,
    };
    NewLog {
        integration: integration.id.clone(),
        received_at: input.received_at,
        source: input.source,
        remote_addr: input.remote_addr.clone(),
        alert: Some(AlertRequest {
            action: event.action,
            thirdparty_id: event.thirdparty_id,
            dedup_keys: event.dedup_keys,
            title: rendered.title,
            description: rendered.description,
            urgency: event.urgency.unwrap_or(integration.urgency),
            aggregate: integration.aggregate,
            auto_resolve: integration.auto_resolve,
            fold,
        }),
        data: event.data,
        outcome: None,
        error: (!errors.is_empty()).then(|| errors.join("; ")),
        raw: input.raw.clone(),
        email: None,
    }
}

/// What the title window compares for a new alert, when not the title itself: the
/// integration's `aggregate_key` rendered (the title when that fails; the reason joins
/// `errors`), normalized with `normalize`.
fn aggregate_key(
    config: &Config,
    integration: &Integration,
    event: &Event,
    title: &str,
    errors: &mut Vec<String>,
) -> Option<String> {
    let new_alert = matches!(event.action, Action::Create | Action::Drop);
    if integration.aggregate.is_none() || !new_alert {
        return None;
    }
    let key = match &integration.aggregate_key {
        None if !integration.normalize => return None,
        None => title.to_string(),
        Some(_) => config
            .templates
            .render_key(integration, &event.data)
            .unwrap_or_else(|e| {
                errors.push(format!(
                    "aggregate_key: {e}; the title was compared instead"
                ));
                title.to_string()
            }),
    };
    Some(if integration.normalize {
        crate::normalize::normalize(&key)
    } else {
        key
    })
}

/// The title and description of an event, and every error on the way (`error` first, then
/// the templates'). Only a new alert takes a title and description; a resolve or
/// acknowledge renders nothing.
///
/// An e-mail alert whose title renders empty (no subject) takes PagerTree's
/// [`UNTITLED_EMAIL`], and its description's `cid:` images are embedded from `raw`.
fn render(
    config: &Config,
    integration: &Integration,
    event: &Event,
    error: Option<String>,
    raw: &[u8],
) -> (Rendered, Vec<String>) {
    let mut rendered = match event.action {
        Action::Create | Action::Drop => config.templates.render(integration, &event.data),
        Action::Resolve | Action::Acknowledge | Action::Other => Rendered::default(),
    };
    if integration.kind == IntegrationType::Email
        && matches!(event.action, Action::Create | Action::Drop)
    {
        if rendered.title.is_empty() {
            rendered.title = UNTITLED_EMAIL.to_string();
        }
        rendered.description =
            email::embed_inline_images(&rendered.description, raw, DESCRIPTION_MAX);
    }
    let errors = error
        .into_iter()
        .chain(event.reason.clone())
        .chain(rendered.errors.drain(..))
        .collect();
    (rendered, errors)
}

/// `siren inject`: runs one input through stages 2 to 5 (parse, route, adapt, template) as the
/// daemon would, and returns what each resulting event would ask of the store, without
/// touching it. An e-mail goes to `integration`, or else to every integration its `To` and
/// `Cc` addresses reach; JSON needs `integration` (a webhook, alertmanager or grafana one).
pub fn inject(
    config: &Config,
    input: &[u8],
    integration: Option<&str>,
) -> Result<Vec<serde_json::Value>, String> {
    let named = integration
        .map(|id| {
            config
                .integrations
                .iter()
                .position(|i| i.id == id)
                .ok_or_else(|| format!("no integration \"{id}\" in the configuration"))
        })
        .transpose()?;
    let is_json = serde_json::from_slice::<serde_json::Value>(input).is_ok();
    let named_kind = named.map(|i| config.integrations[i].kind);
    let events = if is_json && named_kind != Some(IntegrationType::Email) {
        let index = named.ok_or(
            "a JSON input needs --integration (a webhook, alertmanager or grafana integration)",
        )?;
        let body: serde_json::Value = serde_json::from_slice(input).map_err(|e| e.to_string())?;
        adapt::payload(&config.integrations[index], &body, None)
            .map_err(|e| format!("the payload cannot be read: {e}"))?
            .into_iter()
            .map(|event| (index, event, None))
            .collect()
    } else {
        inject_email(config, input, named)?
    };
    Ok(events
        .into_iter()
        .map(|(index, event, error)| {
            let integration = &config.integrations[index];
            let (rendered, errors) = render(config, integration, &event, error, input);
            serde_json::json!({
                "integration": integration.id,
                "action": event.action,
                "thirdparty_id": event.thirdparty_id,
                "title": rendered.title,
                "description": rendered.description,
                "urgency": event.urgency.unwrap_or(integration.urgency),
                "errors": errors,
                "data": event.data,
            })
        })
        .collect())
}

/// An injected e-mail's events, with the parse error of each: routed as RCPT would route its
/// `To` and `Cc` addresses (the same [`Routes`]), or to the `named` integration's first address.
fn inject_email(
    config: &Config,
    input: &[u8],
    named: Option<usize>,
) -> Result<Vec<(usize, Event, Option<String>)>, String> {
    let headers_only = email::parse(input, Envelope::default());
    let routes = match named {
        Some(index) => {
            let to = config.integrations[index].addresses.first().cloned();
            let route = Route {
                integration: index,
                tag: None,
            };
            vec![(route, vec![to.unwrap_or_default()])]
        }
        None => {
            let mut routes = Routes::default();
            for address in headers_only.to.split(';').chain(headers_only.cc.split(';')) {
                routes.add(&config.router, address.trim());
            }
            routes.to_vec()
        }
    };
    if routes.is_empty() {
        return Err(
            "no integration claims the message's To or Cc addresses (name one with --integration)"
                .into(),
        );
    }
    let envelope = Envelope {
        mail_from: headers_only
            .from
            .split(';')
            .next()
            .unwrap_or_default()
            .to_string(),
        rcpt_to: routes.iter().flat_map(|(_, to)| to.clone()).collect(),
        client_addr: "inject".into(),
        helo: "inject".into(),
    };
    let data = email::parse(input, envelope);
    Ok(routes
        .iter()
        .map(|(route, rcpts)| {
            let integration = &config.integrations[route.integration];
            let event = adapt_email(config, integration, &data, route, rcpts);
            (route.integration, event, data.parse_error.clone())
        })
        .collect())
}
