//! The web console on the HTTP port: server-rendered pages (askama, escaped by the engine) for
//! the alert list, an alert, the integrations, their logs, one log entry and the outbox. Its
//! routes live outside `/api/v1`, so its auth is its own: a login with the API token and a
//! session cookie ([`session`]), a CSRF token on every form ([`csrf`]), and strict security
//! headers on every response ([`secure`]). It reads through `Store` and changes things only
//! through the writer, with the API's semantics. Scripts only enhance: every page works without.
//!
//! ```text
//!  GET  /                        alerts (filters, cursor pages); /alert-rows: its rows, polled
//!  GET  /alerts/{id}             the alert, timeline, deliveries; POST .../acknowledge|resolve
//!  GET  /alerts/{id}/description the description, for a sandboxed iframe
//!  GET  /integrations            every integration, last input, counts over 24 h
//!  GET  /integrations/{id}/logs  its log, filterable by outcome
//!  GET  /logs/{id}               one entry; /logs/{id}/body (sandboxed) and /logs/{id}/raw
//!  GET  /deliveries              dead letters (POST /deliveries/{id}/retry) and pending ones
//!  GET  /login, POST /login, POST /logout, GET /assets/{file}
//! ```

mod alerts;
mod assets;
mod csrf;
mod deliveries;
mod errors;
mod integrations;
mod logs;
mod session;
mod view;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

use crate::config::Live;
use crate::store::{Store, WriterHandle};

pub use errors::ConsoleError;

/// The page's Content-Security-Policy: scripts and styles only from the daemon's own files, no
/// inline script of any kind, frames only from this origin (the sandboxed bodies), and never
/// framed itself.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// What every console handler shares: the configuration, the store and its writer, the
/// sessions, and the key that signs CSRF tokens (random per process: a restart logs everyone
/// out and expires open forms).
#[derive(Clone)]
pub struct Console {
    live: Live,
    store: Store,
    writer: WriterHandle,
    sessions: Arc<session::Sessions>,
    guesses: Arc<session::Guesses>,
    key: Arc<ring::hmac::Key>,
}

impl Console {
    fn new(live: Live, store: Store, writer: WriterHandle) -> Self {
        let rng = ring::rand::SystemRandom::new();
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)
            .expect("the system's random number generator works");
        Console {
            live,
            store,
            writer,
            sessions: Arc::new(session::Sessions::default()),
            guesses: Arc::new(session::Guesses::default()),
            key: Arc::new(key),
        }
    }

    /// The API token when one is configured: then the console asks for it once.
    fn token(&self) -> Option<crate::domain::Secret> {
        self.live.get().http.api_token.clone()
    }
}

/// The console's routes, merged into the HTTP router beside the API (whatever its state).
pub fn router<S: Clone + Send + Sync + 'static>(
    live: Live,
    store: Store,
    writer: WriterHandle,
) -> Router<S> {
    let console = Console::new(live, store, writer);
    Router::new()
        .route("/", get(alerts::list))
        .route("/alert-rows", get(alerts::rows))
        .route("/alerts/{id}", get(alerts::show))
        .route("/alerts/{id}/description", get(alerts::description))
        .route("/alerts/{id}/acknowledge", post(alerts::acknowledge))
        .route("/alerts/{id}/resolve", post(alerts::resolve))
        .route("/integrations", get(integrations::list))
        .route("/integrations/{id}/logs", get(integrations::logs))
        .route("/logs/{id}", get(logs::show))
        .route("/logs/{id}/body", get(logs::body))
        .route("/logs/{id}/raw", get(logs::raw))
        .route("/deliveries", get(deliveries::list))
        .route("/deliveries/{id}/retry", post(deliveries::retry))
        .route("/logout", post(session::logout))
        .route_layer(middleware::from_fn_with_state(
            console.clone(),
            session::require_login,
        ))
        .route("/login", get(session::form).post(session::login))
        .route("/assets/{file}", get(assets::serve))
        .layer(middleware::from_fn_with_state(console.clone(), csrf::seed))
        .layer(middleware::from_fn(secure))
        .with_state(console)
}

/// Security headers on every console response; a handler that sets its own (the sandboxed
/// bodies' CSP, the assets' caching) keeps them.
async fn secure(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let defaults = [
        (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in defaults {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    }
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    resp
}

/// Runs store reads on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::Error> + Send + 'static,
) -> Result<T, ConsoleError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ConsoleError::from(crate::store::Error::Stopped))?
        .map_err(ConsoleError::from)
}
