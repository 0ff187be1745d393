//! Login and sessions. With `http.api_token` set, the console asks for the token once (a form
//! with a password input) and keeps a session: a random id in a cookie (`HttpOnly`,
//! `SameSite=Strict`, `Secure` behind TLS), held in memory with its expiry, removed at log-out.
//! Without a token the console is open, as the API is. [`Visitor`] is what a handler knows of
//! the request: whether it is logged in and the CSRF token its forms carry.

use std::collections::HashMap;
use std::sync::Mutex;

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Form, RequestPartsExt};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Deserialize;

use super::view::{Chrome, now_ms};
use super::{Console, ConsoleError, csrf};

pub const SESSION_COOKIE: &str = "siren_session";
/// A session lasts this long from log-in.
const LIFETIME_MS: u64 = 12 * 3600 * 1000;
/// Sessions kept at most; past it the oldest go first (only a log-in adds one).
const MAX_SESSIONS: usize = 10_000;

/// Wrong tokens one client address may try at once; after that, one more per
/// `GUESS_EVERY`, as the SMTP port's AUTH bucket does.
const GUESS_BURST: f64 = 5.0;
const GUESS_EVERY: std::time::Duration = std::time::Duration::from_secs(12);
/// Addresses whose wrong tokens are remembered at most; drained ones are forgotten first.
const MAX_GUESSERS: usize = 10_000;

/// Failed log-ins per client address, a leaky bucket: a full one refuses log-ins with 429
/// before the token is compared, so guessing the API token through the form is held to five
/// a minute from one address.
#[derive(Default)]
pub struct Guesses {
    map: Mutex<HashMap<std::net::IpAddr, (f64, tokio::time::Instant)>>,
}

impl Guesses {
    fn level(entry: &(f64, tokio::time::Instant), now: tokio::time::Instant) -> f64 {
        let drained = now.duration_since(entry.1).as_secs_f64() / GUESS_EVERY.as_secs_f64();
        (entry.0 - drained).max(0.0)
    }

    /// Whether `ip` may try a token now.
    fn may_try(&self, ip: std::net::IpAddr) -> bool {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let now = tokio::time::Instant::now();
        map.get(&ip)
            .is_none_or(|e| Self::level(e, now) <= GUESS_BURST - 1.0)
    }

    fn failed(&self, ip: std::net::IpAddr) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let now = tokio::time::Instant::now();
        if map.len() >= MAX_GUESSERS {
            map.retain(|_, e| Self::level(e, now) > 0.0);
        }
        if map.len() < MAX_GUESSERS || map.contains_key(&ip) {
            let level = map.get(&ip).map_or(0.0, |e| Self::level(e, now));
            map.insert(ip, (level + 1.0, now));
        }
    }
}

/// Sessions in memory: id -> expiry (ms since the epoch).
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, u64>>,
}

impl Sessions {
    fn create(&self, now: u64) -> String {
        let id = B64.encode(csrf::random::<32>());
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, exp| *exp > now);
        while map.len() >= MAX_SESSIONS {
            let oldest = map
                .iter()
                .min_by_key(|(_, exp)| **exp)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
        map.insert(id.clone(), now + LIFETIME_MS);
        id
    }

    fn valid(&self, id: &str, now: u64) -> bool {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id).is_some_and(|exp| *exp > now)
    }

    fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the visitor reached Siren over TLS: through a proxy that says so, or
/// `http.public_url` is https. Cookies then get `Secure`.
pub fn behind_tls(console: &Console, headers: &HeaderMap) -> bool {
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    forwarded || console.live.get().http.public_url.starts_with("https://")
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, `Path=/`, `Secure` behind TLS.
pub fn set_cookie(name: &str, value: &str, max_age_s: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let v =
        format!("{name}={value}; Path=/; Max-Age={max_age_s}; HttpOnly; SameSite=Strict{secure}");
    HeaderValue::from_str(&v).expect("cookie values are base64url")
}

/// What a handler knows of the visitor.
pub struct Visitor {
    /// The CSRF token this visitor's forms carry.
    pub csrf: String,
    /// Logged in with the token (false when none is configured: nothing to log out of).
    pub logged_in: bool,
    session: Option<String>,
    key: std::sync::Arc<ring::hmac::Key>,
}

impl Visitor {
    /// Refuses a state-changing request whose CSRF token is not this visitor's, or that a
    /// browser says came from another site.
    pub fn check(&self, headers: &HeaderMap, token: &str) -> Result<(), ConsoleError> {
        csrf::check(&self.key, headers, &self.csrf, token)
    }
}

impl FromRequestParts<Console> for Visitor {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Console,
    ) -> Result<Self, Self::Rejection> {
        let headers: HeaderMap = parts.extract().await.unwrap_or_default();
        let seed = parts
            .extensions
            .get::<csrf::Seed>()
            .map(|s| s.0.clone())
            .unwrap_or_default();
        let session = cookie(&headers, SESSION_COOKIE)
            .filter(|id| console.sessions.valid(id, now_ms()))
            .map(str::to_string);
        Ok(Visitor {
            csrf: csrf::token(&console.key, &seed, session.as_deref().unwrap_or("")),
            logged_in: console.token().is_some() && session.is_some(),
            session,
            key: console.key.clone(),
        })
    }
}

/// With a token configured, every console page but the login form and the assets needs a
/// session: pages redirect to the login form, other requests get 401.
pub async fn require_login(State(console): State<Console>, req: Request, next: Next) -> Response {
    if console.token().is_none() {
        return next.run(req).await;
    }
    let ok = cookie(req.headers(), SESSION_COOKIE)
        .is_some_and(|id| console.sessions.valid(id, now_ms()));
    if ok {
        return next.run(req).await;
    }
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    if req.method() == Method::GET && req.uri().path() != "/alert-rows" {
        let to = format!("/login{}", super::view::query(&[("next", path)]));
        return Redirect::to(&to).into_response();
    }
    ConsoleError::new(StatusCode::UNAUTHORIZED, "Log in first.").into_response()
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Chrome,
    csrf: String,
    next: String,
    error: String,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Only a path on this site: never `//host` or `https://host` (an open redirect).
fn local(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".to_string(),
    }
}

pub async fn form(
    State(console): State<Console>,
    visitor: Visitor,
    q: Result<Query<NextQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ConsoleError> {
    let Query(q) = q?;
    let next = local(q.next.as_deref());
    if console.token().is_none() || visitor.session.is_some() {
        return Ok(Redirect::to(&next).into_response());
    }
    login_page(&visitor, next, String::new(), StatusCode::OK)
}

fn login_page(
    visitor: &Visitor,
    next: String,
    error: String,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let page = LoginPage {
        chrome: Chrome::bare("Log in"),
        csrf: visitor.csrf.clone(),
        next,
        error,
    };
    Ok((status, Html(page.render()?)).into_response())
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

pub async fn login(
    State(console): State<Console>,
    visitor: Visitor,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Form(form) = form?;
    visitor.check(&headers, &form.csrf)?;
    let next = local(form.next.as_deref());
    let Some(token) = console.token() else {
        return Ok(Redirect::to(&next).into_response());
    };
    let client = client_address(peer.ip(), &headers);
    if !console.guesses.may_try(client) {
        let error = "Too many wrong tokens from your address: try again in a minute.".to_string();
        let mut resp = login_page(&visitor, next, error, StatusCode::TOO_MANY_REQUESTS)?;
        let wait = HeaderValue::from(GUESS_EVERY.as_secs());
        resp.headers_mut().insert(header::RETRY_AFTER, wait);
        return Ok(resp);
    }
    if !csrf::same_secret(&console.key, form.token.as_bytes(), token.as_bytes()) {
        console.guesses.failed(client);
        tracing::warn!(%client, "console login with a wrong token");
        let error = "That is not the API token.".to_string();
        return login_page(&visitor, next, error, StatusCode::UNAUTHORIZED);
    }
    let id = console.sessions.create(now_ms());
    let secure = behind_tls(&console, &headers);
    let mut resp = Redirect::to(&next).into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &id, LIFETIME_MS / 1000, secure),
    );
    Ok(resp)
}

/// Who is logging in: the peer, or behind a reverse proxy on this host (a loopback peer) the
/// address the proxy put last in `X-Forwarded-For`, so one guesser does not lock out everyone
/// behind the same proxy. A remote peer cannot choose its address this way.
fn client_address(peer: std::net::IpAddr, headers: &HeaderMap) -> std::net::IpAddr {
    if !peer.is_loopback() {
        return peer;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .and_then(|last| last.trim().parse().ok())
        .unwrap_or(peer)
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    State(console): State<Console>,
    visitor: Visitor,
    headers: HeaderMap,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Form(form) = form?;
    visitor.check(&headers, &form.csrf)?;
    if let Some(id) = &visitor.session {
        console.sessions.remove(id);
    }
    let mut resp = Redirect::to("/login").into_response();
    let secure = behind_tls(&console, &headers);
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", 0, secure),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behind_a_local_proxy_the_forwarded_address_counts() {
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_static("10.9.9.9, 192.0.2.7"),
        );
        let local = "127.0.0.1".parse().unwrap();
        let remote = "198.51.100.1".parse().unwrap();
        assert_eq!(client_address(local, &headers).to_string(), "192.0.2.7");
        assert_eq!(client_address(remote, &headers), remote);
        assert_eq!(client_address(local, &HeaderMap::new()), local);
    }

    #[tokio::test(start_paused = true)]
    async fn wrong_tokens_drain_one_every_twelve_seconds() {
        let guesses = Guesses::default();
        let (a, b) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        for _ in 0..5 {
            assert!(guesses.may_try(a));
            guesses.failed(a);
        }
        assert!(!guesses.may_try(a));
        assert!(guesses.may_try(b));
        tokio::time::advance(GUESS_EVERY - std::time::Duration::from_millis(100)).await;
        assert!(!guesses.may_try(a));
        tokio::time::advance(std::time::Duration::from_millis(200)).await;
        assert!(guesses.may_try(a));
        guesses.failed(a);
        assert!(!guesses.may_try(a));
        tokio::time::advance(GUESS_EVERY * 5).await;
        assert!(guesses.may_try(a));
        guesses.failed(a);
        assert!(guesses.may_try(a), "a drained bucket starts again from one");
    }

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(local(Some("/alerts/3")), "/alerts/3");
        assert_eq!(local(Some("//evil.example")), "/");
        assert_eq!(local(Some("https://evil.example")), "/");
        assert_eq!(local(Some("/\\evil.example")), "/");
        assert_eq!(local(None), "/");
    }

    #[test]
    fn sessions_expire_and_are_removed() {
        let s = Sessions::default();
        let id = s.create(1000);
        assert!(s.valid(&id, 1001));
        assert!(!s.valid(&id, 1000 + LIFETIME_MS));
        assert!(!s.valid("forged", 1001));
        s.remove(&id);
        assert!(!s.valid(&id, 1001));
    }
}
