//! Integration tests: the daemon on real sockets bound to 127.0.0.1:0, real clients.

mod alerts;
mod api;
mod config_errors;
mod destinations;
mod docs;

mod email_parity;
mod fuzz_corpus;
mod helpers;
mod hostile;
mod inject;
mod intake;
mod integrations;
mod layout;
mod metrics;
mod notify;
mod process;
mod reload;
mod retention;
mod routing;
mod rules;
mod samples;
mod script;
mod service;
mod session;
mod template_errors;
mod tls;
mod webhooks;
mod xss;
