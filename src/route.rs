//! Stage 3: recipient address -> integration. Exact addresses, `*@domain` wildcards and
//! sub-addressing (`ops+db@x` reaches whoever claims `ops@x`), case-insensitive. No I/O.

use std::collections::HashMap;

use crate::config::{Integration, IntegrationType};

/// Where one recipient goes: the integration (its index in `Config::integrations`) and the
/// sub-address tag, if the address had one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub integration: usize,
    pub tag: Option<String>,
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
    use crate::config::Config;
    use std::path::Path;

    fn router() -> Router {
        let cfg = Config::parse(
            r#"
            [[integrations]]
            id = "ops"
            type = "email"
            addresses = ["ops@alerts.example", "*@nagios.example"]
            [[integrations]]
            id = "db"
            type = "email"
            addresses = ["db@alerts.example", "ops+special@alerts.example"]
            [[integrations]]
            id = "hook"
            type = "webhook"
            "#,
            Path::new("t.toml"),
        )
        .unwrap();
        Router::new(&cfg.integrations)
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
            ("ops@sub.alerts.example", None),
            ("+x@alerts.example", None),
            ("ops", None),
            ("@alerts.example", None),
        ];
        for (address, want) in cases {
            assert_eq!(&r.route(address), want, "{address}");
        }
    }
}
