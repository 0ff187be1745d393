//! Parse and sanitize arbitrary bytes as an e-mail: never a panic, and no script survives.
#![no_main]

use libfuzzer_sys::fuzz_target;
use siren::email::{Envelope, parse, sanitize_html};

fuzz_target!(|data: &[u8]| {
    let parsed = parse(data, Envelope::default());
    let _ = serde_json::to_value(&parsed).expect("e-mail data serializes");
    let clean = sanitize_html(&String::from_utf8_lossy(data));
    assert!(!clean.to_ascii_lowercase().contains("<script"), "script survived: {clean}");
});
