//! The configuration in force, and SIGHUP's reload: integrations, templates, address claims
//! and destinations change as one unit; listeners, limits, the store and log retention need a
//! restart, so their running values stay.

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
        let kept = [
            ("smtp", old.smtp == new.smtp),
            ("http", old.http == new.http),
            ("store", old.store == new.store),
            ("logs", old.logs == new.logs),
        ]
        .into_iter()
        .filter_map(|(section, same)| (!same).then_some(section))
        .collect();
        self.0.store(Arc::new(Config {
            smtp: old.smtp.clone(),
            http: old.http.clone(),
            store: old.store.clone(),
            logs: old.logs.clone(),
            ..new
        }));
        kept
    }
}
