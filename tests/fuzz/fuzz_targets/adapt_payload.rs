//! Arbitrary bytes as a webhook body, through both JSON adapters: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use siren::adapt::{alertmanager, webhook};

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(event) = webhook::adapt(&body) {
            assert!(!event.thirdparty_id.is_empty());
        }
        if let Ok(events) = alertmanager::adapt(&body) {
            assert!(events.iter().all(|e| !e.thirdparty_id.is_empty()));
        }
    }
});
