//! Arbitrary bytes as a webhook body, as JSON and as a form, through every adapter: never a
//! panic, never an empty id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use siren::adapt::{form, payload};
use siren::domain::{GroupBy, Integration, IntegrationType};

fuzz_target!(|data: &[u8]| {
    for content_type in ["application/json", "application/x-www-form-urlencoded"] {
        let Ok(body) = form::decode(Some(content_type), data) else {
            continue;
        };
        for kind in IntegrationType::ALL {
            for group_by in [GroupBy::Alert, GroupBy::Group] {
                let integration = Integration {
                    group_by,
                    ..Integration::new("fuzz", kind)
                };
                if let Ok(events) = payload(&integration, &body, Some("a=1")) {
                    assert!(events.iter().all(|e| !e.thirdparty_id.is_empty()));
                }
            }
        }
    }
});
