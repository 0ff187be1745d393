//! Siren: a self-hosted, e-mail-first alert ingestion daemon.
//!
//! ```text
//!  SMTP ─> smtp (1) ──┬─ route (3) at RCPT: recipient -> integration, else 550
//!                     └─ after the dot ─┐
//!  HTTP ─> http::webhook ───────────────┤
//!                                       ▼
//!                 ingest: email (2) parse+sanitize ─> adapt (4) ─> template (5)
//!                                       │ log entries + alert requests
//!                                       ▼
//!                 store (6) writer: aggregate, one batch, flush, fdatasync ─> 250 / 202
//!                                       ▲
//!                 resolver (7) ─────────┘ auto-resolve at the next stored deadline
//!                 outbox (same commit) ─> deliver (8): webhook, slack, email, command
//!  HTTP ─> http: alert API, integration logs, /healthz, /readyz, /metrics (reads the store)
//! ```
//!
//! Stages 2 to 5 are pure functions of their input and the configuration; I/O lives at the
//! edges (`smtp`, `http`, `store`). `app` wires them together and owns shutdown.

pub mod adapt;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod deliver;
pub mod domain;
pub mod email;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod resolver;
pub mod route;
pub mod smtp;
pub mod store;
pub mod template;

pub use app::App;
pub use config::Config;
