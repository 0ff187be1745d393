//! CSRF protection of every state-changing form. Each browser gets a random seed cookie
//! (`siren_csrf`, `HttpOnly`, `SameSite=Strict`); a form's token is an HMAC, under a key of
//! this process, of that seed and the session id. A POST must carry the token of its own
//! cookies, so another site can neither read nor forge one, and a token taken before log-in is
//! no good after. Requests a browser marks as coming from another site are refused as well.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SecureRandom;

use super::session::{behind_tls, cookie, set_cookie};
use super::{Console, ConsoleError};

pub const SEED_COOKIE: &str = "siren_csrf";
/// The seed cookie outlives sessions; it is only a random value.
const SEED_MAX_AGE_S: u64 = 30 * 86_400;

/// This request's seed (from its cookie, or new and set on the response).
#[derive(Clone)]
pub struct Seed(pub String);

pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0; N];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("the system's random number generator works");
    b
}

/// Gives every request a seed, setting the cookie when the browser has none yet.
pub async fn seed(State(console): State<Console>, mut req: Request, next: Next) -> Response {
    let given = cookie(req.headers(), SEED_COOKIE)
        .filter(|s| s.len() == 43 && B64.decode(s).is_ok())
        .map(str::to_string);
    let fresh = given.is_none();
    let seed = given.unwrap_or_else(|| B64.encode(random::<32>()));
    let secure = behind_tls(&console, req.headers());
    req.extensions_mut().insert(Seed(seed.clone()));
    let mut resp = next.run(req).await;
    if fresh {
        resp.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(SEED_COOKIE, &seed, SEED_MAX_AGE_S, secure),
        );
    }
    resp
}

/// The token of forms for `seed` and `session` (empty without one).
pub fn token(key: &ring::hmac::Key, seed: &str, session: &str) -> String {
    let mut msg = Vec::with_capacity(seed.len() + session.len() + 1);
    msg.extend_from_slice(seed.as_bytes());
    msg.push(0);
    msg.extend_from_slice(session.as_bytes());
    B64.encode(ring::hmac::sign(key, &msg).as_ref())
}

/// Whether two secrets are equal, in a time that does not tell where they differ: their HMACs
/// under `key` are compared, and ring compares tags in constant time.
pub fn same_secret(key: &ring::hmac::Key, a: &[u8], b: &[u8]) -> bool {
    ring::hmac::verify(key, a, ring::hmac::sign(key, b).as_ref()).is_ok()
}

/// Refuses a request from another site (as the browser tells), or with a token not `expected`.
pub fn check(
    key: &ring::hmac::Key,
    headers: &HeaderMap,
    expected: &str,
    given: &str,
) -> Result<(), ConsoleError> {
    let site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if matches!(site, "cross-site" | "same-site") {
        return Err(ConsoleError::forbidden(
            "This form was sent from another site.",
        ));
    }
    if given.is_empty() || !same_secret(key, given.as_bytes(), expected.as_bytes()) {
        return Err(ConsoleError::forbidden(
            "This form has expired or did not come from this console: reload the page and try again.",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_seed_session_and_key() {
        let rng = ring::rand::SystemRandom::new();
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng).unwrap();
        let other = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng).unwrap();
        let t = token(&key, "seed", "");
        assert_eq!(t, token(&key, "seed", ""));
        assert_ne!(t, token(&key, "seed", "session"));
        assert_ne!(t, token(&key, "seed2", ""));
        assert_ne!(t, token(&other, "seed", ""));
        let h = HeaderMap::new();
        assert!(check(&key, &h, &t, &t).is_ok());
        assert!(check(&key, &h, &t, "").is_err());
        assert!(check(&key, &h, &t, "x").is_err());
        assert!(check(&key, &h, &t, &t[1..]).is_err());
        let mut cross = HeaderMap::new();
        cross.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(check(&key, &cross, &t, &t).is_err());
        assert!(same_secret(&key, b"secret", b"secret"));
        assert!(!same_secret(&key, b"secret", b"secreT"));
        assert!(!same_secret(&key, b"", b"x"));
    }
}
