//! The web console through a real HTTP client against the in-process daemon: every page's
//! status and security headers, sender values escaped everywhere (the XSS fixture as subjects
//! and webhook titles), the sandboxed body, login with the API token and its cookie, CSRF
//! refusals, acknowledge and resolve through the forms, the rows the live list polls, and a
//! dead letter retried from the outbox page and through the API.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use reqwest::header::{self, HeaderMap};
use serde_json::{Value, json};
use siren::Config;
use tokio::sync::mpsc;

use crate::helpers::{Daemon, deliver, http_get, message};

/// A config with e-mail `ops`, webhook `hook`, extra `[http]` keys and extra tables.
fn config(store: &Path, http: &str, extra: &str) -> Config {
    let text = format!(
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"siren.test\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n{http}\n[store]\npath = \"{}\"\n\
         [logs]\nmax_entries = 100000\n\
         [[integrations]]\nid = \"ops\"\nname = \"Ops e-mail\"\ntype = \"email\"\n\
         addresses = [\"ops@alerts.localhost\"]\nurgency = \"high\"\n{extra}\n\
         [[integrations]]\nid = \"hook\"\ntype = \"webhook\"\n",
        store.display()
    );
    Config::parse(&text, Path::new("console-test.toml")).expect("valid test config")
}

async fn daemon(http: &str, extra: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_config(config(&dir.path().join("store"), http, extra)).await;
    d.dir = Some(dir);
    d
}

/// A browser as far as the console can tell: keeps cookies, follows no redirect, and sends
/// forms as `application/x-www-form-urlencoded`.
struct Browser {
    base: String,
    client: reqwest::Client,
    cookies: HashMap<String, String>,
}

struct Page {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The CSRF token of the page's first form.
    fn csrf(&self) -> String {
        let re = regex::Regex::new(r#"name="csrf" value="([^"]+)""#).unwrap();
        re.captures(&self.body)
            .unwrap_or_else(|| panic!("no CSRF token in {}", self.body))[1]
            .to_string()
    }
}

impl Browser {
    fn new(addr: SocketAddr) -> Browser {
        Self::from(addr, "127.0.0.1")
    }

    /// A browser on another host: its connections come from `local` (a loopback address).
    fn from(addr: SocketAddr, local: &str) -> Browser {
        Browser {
            base: format!("http://{addr}"),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .local_address(local.parse::<std::net::IpAddr>().unwrap())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
        }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let req = if cookie.is_empty() {
            req
        } else {
            req.header(header::COOKIE, cookie)
        };
        let resp = req.send().await.expect("http request");
        for c in resp.headers().get_all(header::SET_COOKIE) {
            let c = c.to_str().unwrap();
            let (pair, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() || c.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
        Page {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap_or_default(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let req = self.client.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Page {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req).await
    }
}

/// Tags in a console page that none of its templates writes: anything a sender's value could
/// have smuggled in. Returns the first one found.
fn foreign_tag(html: &str) -> Option<String> {
    const OURS: &[&str] = &[
        "html", "head", "meta", "title", "link", "script", "body", "a", "header", "nav", "ul",
        "li", "form", "input", "button", "main", "h1", "h2", "p", "div", "label", "select",
        "option", "table", "caption", "thead", "tbody", "tr", "th", "td", "span", "time", "abbr",
        "dl", "dt", "dd", "code", "iframe", "pre", "details", "summary", "section",
    ];
    let tag = regex::Regex::new(r"<([a-zA-Z][a-zA-Z0-9-]*)([^>]*)>").unwrap();
    let handler = regex::Regex::new(r"(?i)\son[a-z]+\s*=|javascript:|vbscript:").unwrap();
    for c in tag.captures_iter(html) {
        let (name, attrs) = (c[1].to_ascii_lowercase(), &c[2]);
        let bad = !OURS.contains(&name.as_str())
            || handler.is_match(attrs)
            || (name == "script" && attrs != r#" src="/assets/console.js" defer"#)
            || (name == "iframe"
                && !(attrs.contains(r#"sandbox="allow-popups allow-popups-to-escape-sandbox""#)
                    && (attrs.starts_with(r#" class="body" src="/logs/"#)
                        || attrs.starts_with(r#" class="body" src="/alerts/"#))));
        if bad {
            return Some(c[0].to_string());
        }
    }
    None
}

fn vectors() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/xss-vectors.txt");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

async fn alerts(d: &Daemon, query: &str) -> Vec<Value> {
    let (status, body) = d.get(&format!("/api/v1/alerts?limit=1000{query}")).await;
    assert_eq!(status, 200, "{body}");
    body["alerts"].as_array().unwrap().clone()
}

#[test]
fn the_tag_checker_catches_what_it_must() {
    assert!(foreign_tag("<p>x</p><img src=x onerror=alert(1)>").is_some());
    assert!(foreign_tag(r#"<a href="/x" onclick="y">"#).is_some());
    assert!(foreign_tag("<script>alert(1)</script>").is_some());
    assert!(foreign_tag(r#"<iframe src="http://evil">"#).is_some());
    assert!(foreign_tag(r#"<p class="x">&#60;script&#62;</p>"#).is_none());
}

#[tokio::test]
async fn every_page_answers_with_a_strict_policy_and_no_inline_script() {
    let d = daemon("", "").await;
    deliver(
        d.smtp,
        &["ops@alerts.localhost"],
        &message("disk full on db1", "csp@x"),
    )
    .await;
    let alert = &alerts(&d, "").await[0];
    let (id, log) = (
        alert["id"].as_str().unwrap(),
        alert["log_id"].as_str().unwrap(),
    );
    let mut b = Browser::new(d.http);
    for path in [
        "/".to_string(),
        "/?status=open&integration=ops&q=disk".into(),
        "/alert-rows".into(),
        format!("/alerts/{id}"),
        "/integrations".into(),
        "/integrations/ops/logs".into(),
        "/integrations/ops/logs?outcome=created".into(),
        format!("/logs/{log}"),
        "/deliveries".into(),
    ] {
        let p = b.get(&path).await;
        assert_eq!(p.status, 200, "{path}: {}", p.body);
        assert_eq!(
            p.header("content-type"),
            "text/html; charset=utf-8",
            "{path}"
        );
        let csp = p.header("content-security-policy");
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ] {
            assert!(csp.contains(part), "{path}: {part} not in {csp}");
        }
        for never in ["unsafe-inline", "unsafe-eval", "nonce-", "strict-dynamic"] {
            assert!(!csp.contains(never), "{path}: {never} in {csp}");
        }
        assert_eq!(p.header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(p.header("referrer-policy"), "no-referrer", "{path}");
        assert_eq!(p.header("x-frame-options"), "DENY", "{path}");
        assert!(!p.body.contains("<script>"), "{path}: inline script");
        assert!(!p.body.contains(" style="), "{path}: inline style");
        assert_eq!(foreign_tag(&p.body), None, "{path}");
    }
    for (path, kind) in [
        ("/assets/console.css", "text/css; charset=utf-8"),
        ("/assets/console.js", "text/javascript; charset=utf-8"),
        ("/assets/favicon.svg", "image/svg+xml"),
    ] {
        let p = b.get(path).await;
        assert_eq!((p.status, p.header("content-type")), (200, kind), "{path}");
        assert_eq!(p.header("x-content-type-options"), "nosniff");
    }
    for (path, status) in [
        ("/alerts/999999999", 404),
        ("/alerts/abc", 404),
        ("/logs/999999999", 404),
        ("/integrations/nope/logs", 404),
        ("/assets/nope.js", 404),
        ("/?status=bogus", 400),
        ("/?cursor=abc", 400),
        ("/?limit=0", 400),
        ("/integrations/ops/logs?outcome=bogus", 400),
    ] {
        let p = b.get(path).await;
        assert_eq!(p.status, status, "{path}: {}", p.body);
        assert!(p.body.contains("<h1>"), "{path}: an HTML error page");
        assert!(
            p.header("content-security-policy")
                .contains("script-src 'self'")
        );
    }
    d.stop().await;
}

#[tokio::test]
async fn sender_values_are_text_on_every_page() {
    let d = daemon("", "").await;
    let vectors = vectors();
    assert!(vectors.len() >= 50);
    let client = reqwest::Client::new();
    for (i, v) in vectors.iter().enumerate() {
        let mail = format!(
            "From: \"{v}\" <m@example.com>\r\nTo: ops@alerts.localhost\r\nSubject: {v}\r\n\
             Message-ID: <xss-{i}@x>\r\nX-Vector: {v}\r\nContent-Type: text/html\r\n\r\n{v}\r\n"
        );
        deliver(d.smtp, &["ops@alerts.localhost"], mail.as_bytes()).await;
        let resp = client
            .post(format!("http://{}/webhooks/hook", d.http))
            .json(&json!({"event_type": "create", "Id": format!("x{i}"), "Title": v, "Description": v}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
    }
    let mut b = Browser::new(d.http);
    let mut pages = vec![
        "/?limit=1000".to_string(),
        "/alert-rows?limit=1000".into(),
        "/integrations/ops/logs?limit=1000".into(),
        "/integrations/hook/logs?limit=1000".into(),
        "/?q=script".into(),
    ];
    for a in alerts(&d, "").await {
        pages.push(format!("/alerts/{}", a["id"].as_str().unwrap()));
        pages.push(format!("/logs/{}", a["log_id"].as_str().unwrap()));
    }
    assert_eq!(pages.len(), 5 + 4 * vectors.len());
    for path in &pages {
        let p = b.get(path).await;
        assert_eq!(p.status, 200, "{path}");
        assert_eq!(foreign_tag(&p.body), None, "{path}");
        for v in &vectors {
            assert!(!p.body.contains(v.as_str()), "{path}: {v} unescaped");
        }
    }
    // Titles are text: the list shows the subject as escaped characters, not as markup.
    let list = b.get("/?limit=1000").await;
    assert!(
        list.body
            .contains("&#60;script&#62;alert(&#39;XSS&#39;)&#60;/script&#62;")
    );
    d.stop().await;
}

#[tokio::test]
async fn an_html_body_with_scripts_is_served_sandboxed() {
    let d = daemon("", "").await;
    let mail = "From: m@example.com\r\nTo: ops@alerts.localhost\r\nSubject: html\r\n\
                Message-ID: <html@x>\r\nContent-Type: text/html\r\n\r\n\
                <p>hello</p><script>alert(1)</script><img src=\"http://192.0.2.1/x.png\" onerror=\"alert(2)\">\r\n";
    deliver(d.smtp, &["ops@alerts.localhost"], mail.as_bytes()).await;
    let a = &alerts(&d, "").await[0];
    let log = a["log_id"].as_str().unwrap();
    let mut b = Browser::new(d.http);
    let page = b.get(&format!("/logs/{log}")).await;
    assert!(page.body.contains(&format!(
        r#"<iframe class="body" src="/logs/{log}/body" sandbox="allow-popups allow-popups-to-escape-sandbox""#
    )));
    for path in [
        format!("/logs/{log}/body"),
        format!("/alerts/{}/description", a["id"].as_str().unwrap()),
    ] {
        let body = b.get(&path).await;
        assert_eq!(body.status, 200, "{path}");
        let csp = body.header("content-security-policy");
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        assert!(csp.contains("sandbox"), "{csp}");
        assert!(
            !csp.contains("allow-scripts") && !csp.contains("script-src"),
            "{csp}"
        );
        assert!(!csp.contains("http:") && !csp.contains("https:"), "{csp}");
        assert_eq!(body.header("x-frame-options"), "SAMEORIGIN");
        assert!(body.body.contains("<p>hello</p>"), "{}", body.body);
        assert!(
            !body.body.to_ascii_lowercase().contains("<script"),
            "{}",
            body.body
        );
        assert!(!body.body.contains("onerror"), "{}", body.body);
    }
    // A webhook's entry has no e-mail body.
    let raw = b.get(&format!("/logs/{log}/raw")).await;
    assert_eq!(raw.header("content-type"), "application/octet-stream");
    assert!(raw.header("content-disposition").starts_with("attachment;"));
    assert_eq!(raw.body.as_bytes(), mail.as_bytes());
    d.stop().await;
}

#[tokio::test]
async fn acknowledge_and_resolve_through_the_forms_with_the_apis_semantics() {
    let d = daemon("", "").await;
    deliver(
        d.smtp,
        &["ops@alerts.localhost"],
        &message("web down", "ack@x"),
    )
    .await;
    let id = alerts(&d, "").await[0]["id"].as_str().unwrap().to_string();
    let mut b = Browser::new(d.http);
    let page = b.get(&format!("/alerts/{id}")).await;
    assert!(page.body.contains(">Acknowledge</button>"));
    assert!(page.body.contains(">Resolve</button>"));
    let csrf = page.csrf();

    let p = b
        .post(
            &format!("/alerts/{id}/acknowledge"),
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(
        (p.status, p.header("location")),
        (303, format!("/alerts/{id}").as_str())
    );
    let (_, a) = d.get(&format!("/api/v1/alerts/{id}")).await;
    assert_eq!(a["status"], "acknowledged");
    let page = b.get(&format!("/alerts/{id}")).await;
    assert!(
        page.body.contains("Acknowledged by a user"),
        "{}",
        page.body
    );
    assert!(!page.body.contains(">Acknowledge</button>"));

    let p = b
        .post(&format!("/alerts/{id}/resolve"), &[("csrf", &csrf)], &[])
        .await;
    assert_eq!(p.status, 303);
    let (_, a) = d.get(&format!("/api/v1/alerts/{id}")).await;
    assert_eq!(
        (a["status"].as_str(), a["resolved_by"].as_str()),
        (Some("resolved"), Some("user"))
    );
    let page = b.get(&format!("/alerts/{id}")).await;
    assert!(page.body.contains("Resolved by a user"));
    assert!(page.body.contains("Created by this input"));

    // As in the API: a resolved alert cannot be acknowledged (409), an unknown one is 404.
    let p = b
        .post(
            &format!("/alerts/{id}/acknowledge"),
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(p.status, 409, "{}", p.body);
    let p = b
        .post("/alerts/999999999/resolve", &[("csrf", &csrf)], &[])
        .await;
    assert_eq!(p.status, 404);
    d.stop().await;
}

#[tokio::test]
async fn state_changing_forms_without_this_visitors_csrf_token_are_refused() {
    let d = daemon("", "").await;
    deliver(
        d.smtp,
        &["ops@alerts.localhost"],
        &message("csrf", "csrf@x"),
    )
    .await;
    let id = alerts(&d, "").await[0]["id"].as_str().unwrap().to_string();
    let path = format!("/alerts/{id}/acknowledge");
    let mut b = Browser::new(d.http);
    let csrf = b.get(&format!("/alerts/{id}")).await.csrf();
    let mut other = Browser::new(d.http);
    let others = other.get(&format!("/alerts/{id}")).await;
    assert!(
        others
            .header("set-cookie")
            .contains("HttpOnly; SameSite=Strict")
    );

    type Pairs<'a> = Vec<(&'a str, &'a str)>;
    let cases: [(&str, Pairs, Pairs); 3] = [
        ("no token", vec![], vec![]),
        ("a wrong token", vec![("csrf", "AAAA")], vec![]),
        (
            "a cross-site request",
            vec![("csrf", csrf.as_str())],
            vec![("sec-fetch-site", "cross-site")],
        ),
    ];
    for (who, form, headers) in cases {
        let p = b.post(&path, &form, &headers).await;
        assert_eq!(p.status, 403, "{who}: {}", p.body);
    }
    // The other browser's own token does not work with this browser's cookies either.
    let theirs = others.csrf();
    let p = b.post(&path, &[("csrf", &theirs)], &[]).await;
    assert_eq!(p.status, 403);
    // A browser without the seed cookie at all.
    let p = Browser::new(d.http)
        .post(&path, &[("csrf", &csrf)], &[])
        .await;
    assert_eq!(p.status, 403);
    assert_eq!(alerts(&d, "").await[0]["status"], "open");
    // The right one, from the same site, works.
    let p = b
        .post(
            &path,
            &[("csrf", &csrf)],
            &[("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(p.status, 303);
    assert_eq!(alerts(&d, "").await[0]["status"], "acknowledged");
    d.stop().await;
}

#[tokio::test]
async fn with_a_token_the_console_asks_for_it_once_and_keeps_a_session() {
    let d = daemon("api_token = \"s3cret-token\"", "").await;
    deliver(
        d.smtp,
        &["ops@alerts.localhost"],
        &message("behind login", "login@x"),
    )
    .await;
    let mut b = Browser::new(d.http);
    let p = b.get("/integrations?x=1").await;
    assert_eq!(p.status, 303);
    assert_eq!(p.header("location"), "/login?next=%2Fintegrations%3Fx%3D1");
    assert_eq!(b.get("/alert-rows").await.status, 401);
    assert_eq!(b.get("/assets/console.css").await.status, 200);
    let form = b.get("/login?next=%2Fintegrations").await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains(r#"type="password""#));
    assert!(form.body.contains(r#"<label for="token">"#));
    let csrf = form.csrf();

    let wrong = b
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("token", "guess"),
                ("next", "/integrations"),
            ],
            &[],
        )
        .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("not the API token"));
    assert!(!b.cookies.contains_key("siren_session"));
    let no_csrf = b.post("/login", &[("token", "s3cret-token")], &[]).await;
    assert_eq!(no_csrf.status, 403);
    assert!(!b.cookies.contains_key("siren_session"));

    let ok = b
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("token", "s3cret-token"),
                ("next", "/integrations"),
            ],
            &[],
        )
        .await;
    assert_eq!((ok.status, ok.header("location")), (303, "/integrations"));
    let cookie = ok.header("set-cookie");
    assert!(cookie.starts_with("siren_session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let page = b.get("/integrations").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(">Log out</button>"));
    assert_eq!(b.get("/").await.status, 200);
    assert_eq!(b.get("/alert-rows").await.status, 200);
    // The pre-login token is no good for a logged-in form.
    let id = alerts_with_token(&d).await;
    let p = b
        .post(
            &format!("/alerts/{id}/acknowledge"),
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(p.status, 403);
    let csrf = b.get(&format!("/alerts/{id}")).await.csrf();
    let p = b
        .post(
            &format!("/alerts/{id}/acknowledge"),
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(p.status, 303);
    // The API still wants its bearer token; the session cookie is not one.
    assert_eq!(http_get(d.http, "/api/v1/alerts").await.0, 401);

    let out = b.post("/logout", &[("csrf", &csrf)], &[]).await;
    assert_eq!((out.status, out.header("location")), (303, "/login"));
    assert_eq!(b.get("/").await.status, 303);
    // A forged or old session id is no session.
    b.cookies.insert("siren_session".into(), "forged".into());
    assert_eq!(b.get("/").await.status, 303);

    // Behind a TLS proxy the cookies are Secure.
    let mut tls = Browser::new(d.http);
    let proto = [("x-forwarded-proto", "https")];
    let req = tls
        .client
        .get(format!("{}/login", tls.base))
        .header("x-forwarded-proto", "https");
    let form = tls.send(req).await;
    assert!(form.header("set-cookie").contains("; Secure"));
    let csrf = form.csrf();
    let ok = tls
        .post(
            "/login",
            &[("csrf", &csrf), ("token", "s3cret-token")],
            &proto,
        )
        .await;
    assert_eq!(ok.status, 303);
    assert!(
        ok.header("set-cookie").contains("; Secure"),
        "{}",
        ok.header("set-cookie")
    );
    d.stop().await;
}

#[tokio::test]
async fn wrong_tokens_from_one_address_are_held_to_a_few_a_minute() {
    let d = daemon("api_token = \"s3cret-token\"", "").await;
    let mut guesser = Browser::from(d.http, "127.0.0.2");
    let csrf = guesser.get("/login").await.csrf();
    let mut statuses = Vec::new();
    for n in 0..7 {
        let guess = format!("guess-{n}");
        let p = guesser
            .post("/login", &[("csrf", &csrf), ("token", &guess)], &[])
            .await;
        statuses.push(p.status);
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429]);
    // Even the right token waits: the form is refused before any comparison.
    let p = guesser
        .post("/login", &[("csrf", &csrf), ("token", "s3cret-token")], &[])
        .await;
    assert_eq!(p.status, 429);
    assert_eq!(p.header("retry-after"), "12");
    assert!(p.body.contains("Too many wrong tokens"));
    // Another address is not held back by the guesser.
    let mut user = Browser::new(d.http);
    let csrf_user = user.get("/login").await.csrf();
    let ok = user
        .post(
            "/login",
            &[("csrf", &csrf_user), ("token", "s3cret-token")],
            &[],
        )
        .await;
    assert_eq!(ok.status, 303);
    // (That the bucket drains is `console::session`'s unit test, in paused time.)
    d.stop().await;
}

async fn alerts_with_token(d: &Daemon) -> String {
    let resp = reqwest::Client::new()
        .get(format!("http://{}/api/v1/alerts", d.http))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    body["alerts"][0]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_rows_the_list_polls_show_a_new_alert_and_keep_the_filters() {
    let d = daemon("", "").await;
    let mut b = Browser::new(d.http);
    let first = b.get("/").await;
    assert!(first.body.contains(r#"data-live="/alert-rows""#));
    assert!(first.body.contains("No alerts yet"));
    deliver(
        d.smtp,
        &["ops@alerts.localhost"],
        &message("PROBLEM web01/HTTP", "live@x"),
    )
    .await;
    let rows = b.get("/alert-rows").await;
    assert!(
        rows.body.starts_with("<tbody id=\"alert-rows\">"),
        "{}",
        rows.body
    );
    assert!(rows.body.contains("PROBLEM web01/HTTP"));
    let filtered = b.get("/?status=resolved&q=web").await;
    assert!(
        filtered
            .body
            .contains(r#"data-live="/alert-rows?status=resolved&#38;q=web""#),
        "{}",
        filtered.body
    );
    assert!(
        !b.get("/alert-rows?status=resolved&q=web")
            .await
            .body
            .contains("web01")
    );
    assert!(
        b.get("/alert-rows?q=WEB01")
            .await
            .body
            .contains("PROBLEM web01/HTTP")
    );
    assert!(
        !b.get("/alert-rows?q=nothing-like-it")
            .await
            .body
            .contains("web01")
    );
    // Later pages are not refreshed: they keep their place.
    let later = b.get("/?cursor=999999999").await;
    assert!(!later.body.contains("data-live"));
    d.stop().await;
}

#[tokio::test]
async fn pages_follow_the_apis_cursors() {
    let d = daemon("", "").await;
    for i in 0..5 {
        deliver(
            d.smtp,
            &["ops@alerts.localhost"],
            &message(&format!("page alert {i}"), &format!("p{i}@x")),
        )
        .await;
    }
    let mut b = Browser::new(d.http);
    let p1 = b.get("/?limit=2").await;
    assert!(p1.body.contains("page alert 4") && p1.body.contains("page alert 3"));
    assert!(!p1.body.contains("page alert 2"));
    let older = regex::Regex::new(r#"<a href="([^"]+)" rel="next">Older</a>"#).unwrap();
    let next = older.captures(&p1.body).expect("an Older link")[1].replace("&#38;", "&");
    let p2 = b.get(&next).await;
    assert!(p2.body.contains("page alert 2") && p2.body.contains("page alert 1"));
    assert!(!p2.body.contains("page alert 3"));
    assert!(p2.body.contains(">Newest</a>"));
    d.stop().await;
}

/// A real HTTP receiver answering `status` (changeable); each request's path goes to `got`.
async fn receiver(status: Arc<AtomicU16>) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, got) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/{*path}",
        axum::routing::post(move |uri: axum::http::Uri| {
            let (status, tx) = (status.clone(), tx.clone());
            async move {
                let _ = tx.send(uri.path().to_string());
                axum::http::StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap()
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, got)
}

async fn next_attempt(got: &mut mpsc::UnboundedReceiver<String>) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(10), got.recv())
        .await
        .expect("a delivery attempt within 10 s")
}

/// Polls the API (every 10 ms, up to 10 s) until the dead letters are `n`.
async fn dead_letters(d: &Daemon, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = d.get("/api/v1/deliveries?state=dead").await;
        let list = body["deliveries"].as_array().unwrap().clone();
        if list.len() == n {
            return list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dead letters: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_dead_letter_is_retried_from_the_outbox_page_and_through_the_api() {
    let status = Arc::new(AtomicU16::new(500));
    let (addr, mut got) = receiver(status.clone()).await;
    let extra = format!(
        "destinations = [\"hook-out\"]\n[[destinations]]\nid = \"hook-out\"\ntype = \"webhook\"\n\
         url = \"http://{addr}/in\"\nmax_attempts = 1\nevents = [\"create\"]\n"
    );
    let d = daemon("", &extra).await;
    deliver(
        d.smtp,
        &["ops@alerts.localhost"],
        &message("to retry", "retry@x"),
    )
    .await;
    assert_eq!(next_attempt(&mut got).await.as_deref(), Some("/in"));
    let dead = dead_letters(&d, 1).await;
    let id = dead[0]["id"].as_str().unwrap().to_string();
    let alert = dead[0]["alert_id"].as_str().unwrap().to_string();

    let mut b = Browser::new(d.http);
    let page = b.get(&format!("/alerts/{alert}")).await;
    assert!(
        page.body
            .contains(r#"<span class="badge delivery-dead">dead</span>"#),
        "{}",
        page.body
    );
    // Through the API: back in the outbox, tried again (and dead again: still 500).
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/v1/deliveries/{id}/retry", d.http))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(next_attempt(&mut got).await.as_deref(), Some("/in"));
    dead_letters(&d, 1).await;
    let again = reqwest::Client::new()
        .post(format!(
            "http://{}/api/v1/deliveries/999999999/retry",
            d.http
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);

    // From the outbox page, with the receiver up again: delivered.
    status.store(200, Ordering::SeqCst);
    let outbox = b.get("/deliveries").await;
    assert!(
        outbox
            .body
            .contains(&format!(r#"action="/deliveries/{id}/retry""#))
    );
    let csrf = outbox.csrf();
    assert_eq!(
        b.post(&format!("/deliveries/{id}/retry"), &[], &[])
            .await
            .status,
        403
    );
    let p = b
        .post(&format!("/deliveries/{id}/retry"), &[("csrf", &csrf)], &[])
        .await;
    assert_eq!((p.status, p.header("location")), (303, "/deliveries"));
    assert_eq!(next_attempt(&mut got).await.as_deref(), Some("/in"));
    dead_letters(&d, 0).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = b.get(&format!("/alerts/{alert}")).await;
        if page
            .body
            .contains(r#"<span class="badge delivery-delivered">delivered</span>"#)
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", page.body);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        b.post(&format!("/deliveries/{id}/retry"), &[("csrf", &csrf)], &[])
            .await
            .status,
        404
    );
    d.stop().await;
}

#[tokio::test]
async fn the_integrations_page_counts_the_last_day_and_the_log_filters_by_outcome() {
    let d = daemon("", "").await;
    deliver(d.smtp, &["ops@alerts.localhost"], &message("one", "c1@x")).await;
    deliver(
        d.smtp,
        &["ops@alerts.localhost"],
        &message("one again", "c1@x"),
    )
    .await;
    let resp = reqwest::Client::new()
        .post(format!("http://{}/webhooks/hook", d.http))
        .body("not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let mut b = Browser::new(d.http);
    let page = b.get("/integrations").await;
    assert!(
        page.body.contains("<code>ops@alerts.localhost</code>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("/webhooks/hook</code>"), "{}", page.body);
    assert!(page.body.contains("2 inputs"), "{}", page.body);
    assert!(
        page.body
            .contains("<li>1 created</li><li>1 aggregated</li>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("<li>1 rejected</li>"), "{}", page.body);
    let log = b.get("/integrations/ops/logs?outcome=aggregated").await;
    assert!(
        log.body.contains("one again") && !log.body.contains(">one<"),
        "{}",
        log.body
    );
    let rejected = b.get("/integrations/hook/logs").await;
    assert!(
        rejected.body.contains("outcome-rejected"),
        "{}",
        rejected.body
    );
    assert!(rejected.body.contains("400"), "{}", rejected.body);
    d.stop().await;
}
