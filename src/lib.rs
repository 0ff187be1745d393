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
//! edges (`smtp`, `http`, `store`). `app` wires them together and owns shutdown. Imports point
//! down: `domain` at the bottom, then `email`, then `route`/`adapt`/`template`, then `config`,
//! `store`, `ingest`, and the front ends (`tests/it/layout.rs` keeps it so).

pub mod adapt; // stage 4: one file per integration type turns input into events
pub mod app; // builds the daemon and runs it until shutdown
pub mod cli; // `siren alerts` / `siren logs`, a client of the HTTP API
pub mod clock; // wall-clock time that follows tokio's paused clock in tests
pub mod config; // the only place that reads TOML: raw -> validated `Config`, and `Live` reload
pub mod console; // the web console: pages, login, CSRF, on the HTTP port
pub mod deliver; // stage 8: destinations and their outbox workers
pub mod domain; // the shared vocabulary at the bottom: urgency, action, alert events, integrations
pub mod email; // stage 2: raw message -> sanitized e-mail data
pub mod http; // webhook intake, alert API, health and metrics
pub mod ingest; // accepted input -> adapt, render, one durable commit
pub mod metrics; // the Prometheus registry
pub mod normalize; // aggregation keys that survive noise: numbers, ids, addresses, times masked
pub mod replay; // `siren replay`: stored inputs through a draft configuration, what would differ
pub mod resolver; // stage 7: the auto-resolve timer
pub mod route; // stage 3: recipient -> integration
pub mod silence; // `siren silence`: maintenance windows, a client of the HTTP API
pub mod smtp; // stage 1: the SMTP listener and sessions
pub mod store; // stage 6: the only code that touches sled; the group-commit writer
pub mod template; // stage 5: handlebars titles and descriptions, checked at load

pub use app::App;
pub use config::Config;
