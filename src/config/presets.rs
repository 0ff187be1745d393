//! Sender presets (`preset = "nagios"`): the rules and templates that fit one monitoring tool's
//! default mails, written as configuration (`presets/<name>.toml`, `[[rules]]` tables and
//! optional `title` / `description`) and compiled by the same code as an integration's own
//! rules, so a preset can do nothing a user could not write, and `check-config --explain`
//! prints it as it is.

use serde::Deserialize;

use crate::domain::{IntegrationType, Preset, Rule};

use super::ConfigError;
use super::key::Key;
use super::raw::RawRule;

/// The configuration text of `preset`.
pub fn source(preset: Preset) -> &'static str {
    match preset {
        Preset::Nagios => include_str!("presets/nagios.toml"),
        Preset::Icinga2 => include_str!("presets/icinga2.toml"),
        Preset::Zabbix => include_str!("presets/zabbix.toml"),
        Preset::Monit => include_str!("presets/monit.toml"),
        Preset::Alertmanager => include_str!("presets/alertmanager.toml"),
        Preset::Grafana => include_str!("presets/grafana.toml"),
        Preset::Cron => include_str!("presets/cron.toml"),
        Preset::Smartd => include_str!("presets/smartd.toml"),
        Preset::Apcupsd => include_str!("presets/apcupsd.toml"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPreset {
    title: Option<String>,
    description: Option<String>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

/// A preset compiled: its templates (used when the integration sets none) and its rules (tried
/// after the integration's own).
#[derive(Debug, Clone)]
pub struct Compiled {
    pub title: Option<String>,
    pub description: Option<String>,
    pub rules: Vec<Rule>,
}

/// The compiled preset of an integration of `kind` (`at` is its `preset` key), if it names one.
pub(super) fn for_integration(
    at: &Key,
    kind: IntegrationType,
    preset: Option<Preset>,
) -> Result<Option<Compiled>, ConfigError> {
    let Some(preset) = preset else {
        return Ok(None);
    };
    if kind != IntegrationType::Email {
        return Err(at.err("only email integrations take a preset"));
    }
    compile(at, preset).map(Some)
}

/// Compiles `preset`; an error (a bug in a shipped preset) names the preset's own key.
fn compile(at: &Key, preset: Preset) -> Result<Compiled, ConfigError> {
    let raw: RawPreset = toml::from_str(source(preset)).map_err(|e| {
        at.err(format!(
            "the preset \"{}\" is unreadable: {e}",
            preset.as_str()
        ))
    })?;
    let at = at.item(preset.as_str()).at("rules");
    let rules = raw
        .rules
        .into_iter()
        .enumerate()
        .map(|(i, r)| super::integrations::rule(&at.item(i), r))
        .collect::<Result<_, _>>()?;
    Ok(Compiled {
        title: raw.title,
        description: raw.description,
        rules,
    })
}

/// The compiled rules and templates of `preset`, for tests and the documentation (the tests
/// of each preset over its samples are `adapt::preset_tests`).
pub fn compiled(preset: Preset) -> Result<Compiled, ConfigError> {
    compile(
        &Key::root(std::path::Path::new("(preset)")).at("preset"),
        preset,
    )
}
