//! Regexes for the regex helpers and e-mail rules: built with bounded size (linear-time engine,
//! so no pattern can hang a render) and kept compiled in a small cache shared by a registry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Regexes kept compiled; the cache is emptied when full (patterns are usually template
/// literals, so it rarely is).
pub(super) const REGEX_CACHE_MAX: usize = 128;
/// Longest regex pattern accepted, in bytes.
pub(super) const REGEX_PATTERN_MAX: usize = 4096;
/// Compiled size bound per regex (the `regex` crate's own limit is 10 MiB).
const REGEX_SIZE_MAX: usize = 1 << 20;

/// Compiled regexes by pattern, shared by a registry's helpers.
#[derive(Default)]
pub(super) struct RegexCache {
    pub(super) map: Mutex<HashMap<String, Arc<regex::Regex>>>,
}

impl RegexCache {
    pub(super) fn get(&self, pattern: &str) -> Result<Arc<regex::Regex>, String> {
        // A panic elsewhere while holding the lock leaves a usable map.
        let lock = || self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(re) = lock().get(pattern) {
            return Ok(Arc::clone(re));
        }
        let re = Arc::new(build_regex(pattern)?);
        let mut map = lock();
        if map.len() >= REGEX_CACHE_MAX {
            map.clear();
        }
        map.insert(pattern.to_string(), Arc::clone(&re));
        Ok(re)
    }
}

/// The `regex` crate runs in linear time (no backtracking), so a pattern from a template or
/// from alert data cannot hang a render; its size is bounded too.
pub(crate) fn build_regex(pattern: &str) -> Result<regex::Regex, String> {
    if pattern.len() > REGEX_PATTERN_MAX {
        return Err(format!(
            "the pattern is longer than {REGEX_PATTERN_MAX} bytes"
        ));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_MAX)
        .dfa_size_limit(REGEX_SIZE_MAX)
        .build()
        .map_err(|e| match e {
            // Its Display is several lines with a caret diagram; keep the reason.
            regex::Error::Syntax(s) => {
                let reason = s
                    .lines()
                    .find_map(|l| l.strip_prefix("error: "))
                    .unwrap_or("invalid syntax");
                format!("invalid regular expression \"{pattern}\": {reason}")
            }
            other => format!("invalid regular expression \"{pattern}\": {other}"),
        })
}
