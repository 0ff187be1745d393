//! Integration tests: the daemon on real sockets bound to 127.0.0.1:0, real clients.

mod alerts;
mod api;
mod config_errors;
mod console;
mod destinations;
mod docs;

mod fuzz_corpus;
mod helpers;
mod hostile;
mod inject;
mod intake;
mod metrics;
mod notify;
mod process;
mod reload;
mod retention;
mod routing;
mod rules;
mod samples;
mod service;
mod tls;
mod webhooks;
mod xss;
