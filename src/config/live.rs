//! The configuration in force, and SIGHUP's reload: integrations, templates, address claims
//! and destinations change as one unit, and a renewed STARTTLS certificate is picked up;
//! listeners, limits, the store and log retention need a restart, so their running values stay.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::Config;

/// The configuration in force. SIGHUP replaces its integrations (with their templates and
/// address claims) and destinations as one unit; readers take a snapshot ([`Live::get`]) and
/// use it for a whole transaction or request, so a reload never splits one.
#[derive(Clone)]
pub struct Live(Arc<ArcSwap<Config>>);

impl Live {
    pub fn new(config: Config) -> Self {
        Live(Arc::new(ArcSwap::from_pointee(config)))
    }

    /// The configuration as it is now.
    pub fn get(&self) -> Arc<Config> {
        self.0.load_full()
    }

    /// Puts `new`'s integrations, templates and destinations in force. The listeners, limits,
    /// store and log retention stay as they are (they need a restart); returns the sections
    /// whose new values were therefore not applied.
    pub fn reload(&self, new: Config) -> Vec<&'static str> {
        let old = self.get();
        // A renewed certificate and key (certbot-style rotation) are put in force: each STARTTLS
        // handshake takes them from here. Turning TLS on or off needs a restart.
        let mut smtp = old.smtp.clone();
        if old.smtp.tls.is_some()
            && new.smtp.tls.is_some()
            && old.smtp.tls_chain != new.smtp.tls_chain
        {
            smtp.tls = new.smtp.tls.clone();
            smtp.tls_chain = new.smtp.tls_chain.clone();
            tracing::info!("smtp TLS certificate and key reloaded");
        }
        let kept = [
            ("smtp", smtp == new.smtp),
            ("http", old.http == new.http),
            ("store", old.store == new.store),
            ("logs", old.logs == new.logs),
        ]
        .into_iter()
        .filter_map(|(section, same)| (!same).then_some(section))
        .collect();
        self.0.store(Arc::new(Config {
            smtp,
            http: old.http.clone(),
            store: old.store.clone(),
            logs: old.logs.clone(),
            ..new
        }));
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(dir: &std::path::Path, text: &str) -> Config {
        Config::parse(text, &dir.join("siren.toml")).expect("valid test configuration")
    }

    /// A fresh self-signed certificate and key as `tls.crt` and `tls.key` in `dir`.
    fn certificate(dir: &std::path::Path) {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::write(dir.join("tls.crt"), c.cert.pem()).unwrap();
        std::fs::write(dir.join("tls.key"), c.signing_key.serialize_pem()).unwrap();
    }

    #[test]
    fn reload_names_each_section_whose_value_changed_and_keeps_its_running_value() {
        let dir = tempfile::tempdir().unwrap();
        certificate(dir.path());
        let tls = "[smtp]\ntls_cert = \"tls.crt\"\ntls_key = \"tls.key\"\n\
                   [[smtp.users]]\nname = \"am\"\npassword = \"one\"\n";
        let live = Live::new(parse(dir.path(), tls));
        let hook = "[[integrations]]\nid = \"hook\"\ntype = \"webhook\"\n";
        // The same file again, plus an integration: nothing is kept back, the integration is in.
        let same = parse(dir.path(), &format!("{tls}{hook}"));
        assert_eq!(live.reload(same), Vec::<&str>::new());
        assert_eq!(live.get().integrations.len(), 1);

        let cases: &[(&str, String)] = &[
            (
                "smtp",
                tls.replace("password = \"one\"", "password = \"two\""),
            ),
            (
                "smtp",
                tls.replace("[[smtp.users]]", "max_recipients = 7\n[[smtp.users]]"),
            ),
            ("http", format!("{tls}[http]\nmax_body_size = 10\n")),
            ("store", format!("{tls}[store]\npath = \"elsewhere\"\n")),
            ("logs", format!("{tls}[logs]\nmax_age = \"1d\"\n")),
        ];
        for (section, text) in cases {
            let before = live.get();
            assert_eq!(live.reload(parse(dir.path(), text)), [*section], "{text}");
            let after = live.get();
            assert!(after.smtp == before.smtp && after.http == before.http);
            assert!(after.store == before.store && after.logs == before.logs);
            assert!(
                after.integrations.is_empty(),
                "the new integrations are in force"
            );
        }
        // A renewed certificate under the same file names (certbot-style rotation) is put in
        // force by the reload itself (issue 12): nothing is kept back.
        certificate(dir.path());
        let renewed = parse(dir.path(), tls);
        let chain = renewed.smtp.tls_chain.clone();
        assert_eq!(live.reload(renewed), Vec::<&str>::new());
        assert!(live.get().smtp.tls_chain == chain);
    }
}
