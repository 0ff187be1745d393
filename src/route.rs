//! Stage 3: recipient address -> integration. Exact addresses, `*@domain` wildcards and
//! sub-addressing (`ops+db@x` reaches whoever claims `ops@x`), case-insensitive. No I/O.

use std::collections::HashMap;

use crate::domain::{Integration, IntegrationType};

/// Where one recipient goes: the integration (its index in `Config::integrations`) and the
/// sub-address tag, if the address had one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub integration: usize,
    pub tag: Option<String>,
}

/// The integrations one message goes to, each once, with the recipients that route there, in
/// the order first reached. Built recipient by recipient, as RCPT commands arrive (or as
/// `siren inject` reads `To` and `Cc`); the first recipient's tag is the route's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes(Vec<(Route, Vec<String>)>);

impl Routes {
    /// Routes `to` and records it under its integration; `None` (nothing recorded) when no
    /// integration claims it, which at RCPT is a `550`.
    pub fn add(&mut self, router: &Router, to: &str) -> Option<&Route> {
        let route = router.route(to)?;
        Some(self.push(route, to))
    }

    /// Records `to` under `route`, already looked up (the RCPT handler routes before mailin
    /// accepts the command, and records after); answers the route the recipient joined, whose
    /// tag is its first recipient's.
    pub fn push(&mut self, route: Route, to: &str) -> &Route {
        let at = match self
            .0
            .iter()
            .position(|(r, _)| r.integration == route.integration)
        {
            Some(at) => {
                self.0[at].1.push(to.to_string());
                at
            }
            None => {
                self.0.push((route, vec![to.to_string()]));
                self.0.len() - 1
            }
        };
        &self.0[at].0
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// The routes as a slice: what `ingest::email` takes.
impl std::ops::Deref for Routes {
    type Target = [(Route, Vec<String>)];

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// The address claims of every e-mail integration, built once per configuration.
#[derive(Debug, Clone, Default)]
pub struct Router {
    claims: HashMap<String, usize>,
}

impl Router {
    pub fn new(integrations: &[Integration]) -> Self {
        let mut claims = HashMap::new();
        for (i, integration) in integrations.iter().enumerate() {
            if integration.kind == IntegrationType::Email {
                for a in &integration.addresses {
                    claims.insert(a.clone(), i);
                }
            }
        }
        Self { claims }
    }

    /// The integration that claims `address`, most specific claim first: the literal address,
    /// then the address without its `+tag`, then the domain wildcard.
    pub fn route(&self, address: &str) -> Option<Route> {
        let address = address
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_ascii_lowercase();
        let (local, domain) = address.rsplit_once('@')?;
        if local.is_empty() || domain.is_empty() {
            return None;
        }
        if let Some(&integration) = self.claims.get(&address) {
            return Some(Route {
                integration,
                tag: None,
            });
        }
        let (base, tag) = match local.split_once('+') {
            Some((base, tag)) if !base.is_empty() => (base, Some(tag.to_string())),
            _ => (local, None),
        };
        if tag.is_some()
            && let Some(&integration) = self.claims.get(&format!("{base}@{domain}"))
        {
            return Some(Route { integration, tag });
        }
        let integration = *self.claims.get(&format!("*@{domain}"))?;
        Some(Route { integration, tag })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An integration of `kind` claiming `addresses`; the router reads nothing else.
    fn integration(id: &str, kind: IntegrationType, addresses: &[&str]) -> Integration {
        Integration {
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            ..Integration::new(id, kind)
        }
    }

    fn router() -> Router {
        Router::new(&[
            integration(
                "ops",
                IntegrationType::Email,
                &["ops@alerts.example", "*@nagios.example"],
            ),
            integration(
                "db",
                IntegrationType::Email,
                &["db@alerts.example", "ops+special@alerts.example"],
            ),
            // Only e-mail integrations claim addresses (config refuses others that do).
            integration("hook", IntegrationType::Webhook, &["hook@alerts.example"]),
        ])
    }

    fn at(integration: usize, tag: Option<&str>) -> Option<Route> {
        Some(Route {
            integration,
            tag: tag.map(str::to_string),
        })
    }

    #[test]
    fn routes_by_table() {
        let r = router();
        let cases: &[(&str, Option<Route>)] = &[
            ("ops@alerts.example", at(0, None)),
            ("OPS@Alerts.Example", at(0, None)),
            ("<ops@alerts.example>", at(0, None)),
            ("ops+db@alerts.example", at(0, Some("db"))),
            ("Ops+DB@alerts.example", at(0, Some("db"))),
            ("ops+special@alerts.example", at(1, None)),
            ("db@alerts.example", at(1, None)),
            ("anything@nagios.example", at(0, None)),
            ("host+web01@nagios.example", at(0, Some("web01"))),
            ("nobody@alerts.example", None),
            ("hook@alerts.example", None),
            ("ops@sub.alerts.example", None),
            ("+x@alerts.example", None),
            ("ops", None),
            ("@alerts.example", None),
        ];
        for (address, want) in cases {
            assert_eq!(&r.route(address), want, "{address}");
        }
    }

    #[test]
    fn routes_group_recipients_by_integration_in_first_seen_order() {
        let r = router();
        let mut routes = Routes::default();
        assert_eq!(routes.add(&r, "db@alerts.example"), at(1, None).as_ref());
        assert_eq!(routes.add(&r, "nobody@alerts.example"), None);
        assert_eq!(
            routes.add(&r, "ops+x@alerts.example"),
            at(0, Some("x")).as_ref()
        );
        // A second recipient of `ops` joins its route; the first one's tag stays.
        assert_eq!(
            routes.add(&r, "web@nagios.example"),
            at(0, Some("x")).as_ref()
        );
        let got: Vec<(usize, Vec<&str>)> = routes
            .iter()
            .map(|(r, to)| (r.integration, to.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(
            got,
            [
                (1, vec!["db@alerts.example"]),
                (0, vec!["ops+x@alerts.example", "web@nagios.example"]),
            ]
        );
        routes.clear();
        assert!(routes.is_empty());
    }
}
