//! Siren: a self-hosted, e-mail-first alert ingestion daemon.
//!
//! ```text
//!  SMTP client ──> smtp (1) ──> email (2) ──> route (3) ──> ingest ──> store (6)
//!                  limits,      parse,        recipient     one input,   group commit:
//!                  mailin       sanitize      -> integration log entries 250 after fsync
//!                                                                          │
//!  HTTP client ──> http: /healthz, integration logs API  <─────────────────┘ reads
//! ```
//!
//! Stages 2 and 3 are pure functions of their input and the configuration; I/O lives at the
//! edges (`smtp`, `http`, `store`). `app` wires them together and owns shutdown.

pub mod adapt;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod email;
pub mod http;
pub mod ingest;
pub mod resolver;
pub mod route;
pub mod smtp;
pub mod store;
pub mod template;

pub use app::App;
pub use config::Config;
