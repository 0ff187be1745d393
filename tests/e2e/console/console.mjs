// The web console in a real browser: Debian's chromium, headless, driven by playwright-core.
// Run by ./run, which starts two Sirens (one open, one with an API token) and passes:
//   OPEN_URL, OPEN_SMTP (host:port), TOKEN_URL, TOKEN_SMTP, TOKEN, IMG_DIR, WORK.
// Steps: mail a sample and see it appear on / without a reload (within 2 s), open it,
// acknowledge it from the keyboard, follow its log entry, check the raw input and its
// download, then an XSS subject and an HTML body with scripts (no dialog, no page error, no
// console error but the CSP's own refusals, nothing loaded from another origin), the phone width, the
// login with the token and its cookie, and two screenshots for the docs.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const OPEN = env("OPEN_URL");
const LOCKED = env("TOKEN_URL");
const WORK = env("WORK");
const IMG = env("IMG_DIR");

function log(msg) {
  console.log(`e2e console: ${msg}`);
}

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
}

/** Mails a file (or text) to Siren with swaks, as a monitoring system would. */
function mail(server, to, { file, text }) {
  const data = file ?? join(WORK, `mail-${Date.now()}-${Math.random()}.eml`);
  if (text) writeFileSync(data, text);
  execFileSync("swaks", ["--server", server, "--helo", "e2e.localhost",
    "--from", "monitor@e2e.localhost", "--to", to, "--data", `@${data}`], { stdio: "pipe" });
}

const problems = { dialogs: [], pageErrors: [], consoleErrors: [], cspRefusals: [], offOrigin: new Map() };
// Set while a wrong token is tried: Chromium logs the login form's 401 as a console error.
let expect401 = false;

function watch(page) {
  page.on("dialog", (d) => {
    problems.dialogs.push(`${d.type()}: ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  page.on("pageerror", (e) => problems.pageErrors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    // The CSP refusing a remote image of a mail body is the protection working, not a fault.
    if (/Refused to|Content Security Policy/.test(m.text())) problems.cspRefusals.push(m.text());
    else if (expect401 && /status of 401/.test(m.text())) return;
    else problems.consoleErrors.push(m.text());
  });
  // A load from anywhere but the console itself must be one the CSP blocked before it left.
  const origins = [new URL(OPEN).origin, new URL(LOCKED).origin];
  page.on("request", (r) => {
    const u = new URL(r.url());
    if (["http:", "https:"].includes(u.protocol) && !origins.includes(u.origin)) {
      problems.offOrigin.set(r, r.url());
    }
  });
  page.on("requestfailed", (r) => {
    if (problems.offOrigin.has(r) && /^(csp|net::ERR_BLOCKED_BY_CSP)$/.test(r.failure()?.errorText ?? "")) {
      problems.offOrigin.delete(r);
      problems.cspRefusals.push(`blocked ${r.url()}`);
    }
  });
}

function clean(what) {
  check(problems.dialogs.length === 0, `${what}: no dialog (got ${problems.dialogs})`);
  check(problems.pageErrors.length === 0, `${what}: no page error (got ${problems.pageErrors})`);
  check(problems.consoleErrors.length === 0, `${what}: no console error (got ${problems.consoleErrors})`);
  const off = [...problems.offOrigin.values()];
  check(off.length === 0, `${what}: nothing loaded from elsewhere (got ${off})`);
}

mkdirSync(IMG, { recursive: true });
const browser = await chromium.launchPersistentContext(mkdtempSync(join(WORK, "profile-")), {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-quic",
    "--no-first-run", "--disable-component-update", "--disable-sync"],
  viewport: { width: 1280, height: 800 },
  acceptDownloads: true,
  timezoneId: "Europe/Paris",
});
try {
  const page = browser.pages()[0] ?? (await browser.newPage());
  watch(page);

  // --- the live list ------------------------------------------------------------------------
  for (const [to, file] of [["zabbix@alerts.localhost", "samples/zabbix-problem.eml"],
    ["prometheus@alerts.localhost", "samples/alertmanager.eml"],
    ["ops@alerts.localhost", "samples/monit.eml"]]) {
    mail(env("OPEN_SMTP"), to, { file });
  }
  await page.goto(`${OPEN}/`);
  check(await page.locator("table[data-live]").count() === 1, "the list is live");
  await page.evaluate(() => { window.__notReloaded = true; });
  const sent = Date.now();
  mail(env("OPEN_SMTP"), "ops@alerts.localhost", { file: "samples/nagios-problem.eml" });
  const row = page.locator("#alert-rows a", { hasText: "** PROBLEM Service Alert: web01/HTTP is CRITICAL **" });
  await row.waitFor({ timeout: 2000 });
  const seenAfter = Date.now() - sent;
  check(await page.evaluate(() => window.__notReloaded === true), "the row came without a reload");
  log(`a mailed sample appeared on / without a reload after ${seenAfter} ms`);
  // Times are in the viewer's zone, the UTC value in the title.
  const time = page.locator("#alert-rows time").first();
  check(/UTC$/.test(await time.getAttribute("title")), "UTC in the title");
  check(!/UTC$/.test(await time.textContent()), "the text is in the viewer's zone");
  await page.screenshot({ path: join(IMG, "console-alerts.png") });

  // --- the alert, acknowledged from the keyboard ---------------------------------------------
  await row.click();
  await page.waitForURL(/\/alerts\/\d+$/);
  check((await page.locator("h1").textContent()) === "** PROBLEM Service Alert: web01/HTTP is CRITICAL **", "the alert's title");
  await page.getByRole("button", { name: "Acknowledge" }).focus();
  await Promise.all([page.waitForNavigation(), page.keyboard.press("Enter")]);
  check(await page.locator(".facts .badge.status-acknowledged").count() === 1, "acknowledged");
  check(await page.getByRole("cell", { name: "Acknowledged by a user" }).count() === 1, "the timeline has the acknowledgement");
  check(await page.getByRole("button", { name: "Acknowledge" }).count() === 0, "no second Acknowledge");
  log("opened it and acknowledged it");
  await page.emulateMedia({ colorScheme: "dark" });
  await page.screenshot({ path: join(IMG, "console-alert-dark.png"), fullPage: true });
  await page.emulateMedia({ colorScheme: "light" });

  // --- its log entry and the raw input --------------------------------------------------------
  await page.getByRole("row", { name: /Created by this input/ }).getByRole("link").click();
  await page.waitForURL(/\/logs\/\d+$/);
  const sample = readFileSync("samples/nagios-problem.eml", "utf8");
  const lf = (s) => s.replace(/\r\n/g, "\n").replace(/\n+$/, "");
  const shown = await page.locator("pre.raw").textContent();
  check(lf(shown) === lf(sample), "the raw input is shown as received");
  const [download] = await Promise.all([page.waitForEvent("download"),
    page.getByRole("link", { name: "Download the raw input" }).click()]);
  const got = readFileSync(await download.path(), "utf8");
  check(lf(got) === lf(sample) && got.includes("\r\n"), "the download is the input as received (CRLF)");
  check(await page.getByRole("cell", { name: "nagios@monitor.example.com" }).count() >= 1, "the parsed From");
  log("followed its log entry; raw input shown and downloaded as received");

  // --- an XSS subject and an HTML body with scripts -------------------------------------------
  const subject = `<img src=x onerror=alert('subject')><script>alert("subject")</script>`;
  mail(env("OPEN_SMTP"), "ops@alerts.localhost", {
    text: `From: evil@e2e.localhost\r\nTo: ops@alerts.localhost\r\nSubject: ${subject}\r\n` +
      `Message-ID: <xss-e2e@e2e.localhost>\r\nContent-Type: text/html; charset=utf-8\r\n\r\n` +
      `<p>Hello from the body</p><script>alert("body")</script>` +
      `<img src="x" onerror="alert('img')"><svg onload="alert('svg')"></svg>` +
      `<a href="javascript:alert('link')">link</a><img src="http://127.0.0.2:9/remote.png">` +
      `<iframe src="javascript:alert('frame')"></iframe>\r\n`,
  });
  await page.goto(`${OPEN}/`);
  const xss = page.locator("#alert-rows a", { hasText: "onerror=alert" });
  await xss.waitFor({ timeout: 2000 });
  check((await xss.textContent()) === subject, "the subject is shown as text, exactly");
  await xss.click();
  await page.waitForURL(/\/alerts\/\d+$/);
  check((await page.locator("h1").textContent()) === subject, "the title is text on the alert page");
  await page.getByRole("link", { name: /^log entry \d+$/ }).first().click();
  await page.waitForURL(/\/logs\/\d+$/);
  const frame = page.frameLocator("iframe.body");
  await frame.getByText("Hello from the body").waitFor({ timeout: 5000 });
  check(await frame.locator("script").count() === 0, "no script element in the body");
  check((await page.locator("iframe.body").getAttribute("sandbox")).includes("allow-scripts") === false, "sandbox without allow-scripts");
  await page.locator("iframe.body").click({ position: { x: 5, y: 5 } });
  await page.waitForTimeout(300); // time for any handler that would fire: none may
  clean("an XSS subject and an HTML body with scripts");
  log(`XSS subject and scripted body ran nothing (CSP refusals seen: ${problems.cspRefusals.length})`);

  // --- phone width ---------------------------------------------------------------------------
  await page.setViewportSize({ width: 390, height: 844 });
  for (const path of ["/", "/integrations", "/deliveries"]) {
    await page.goto(`${OPEN}${path}`);
    const over = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(over <= 0, `${path} fits a phone-width screen (overflows by ${over}px)`);
  }
  await page.setViewportSize({ width: 1280, height: 800 });
  log("pages fit a 390 px wide screen");
  clean("the open console");

  // --- login with the token -------------------------------------------------------------------
  mail(env("TOKEN_SMTP"), "ops@alerts.localhost", { file: "samples/nagios-problem.eml" });
  await page.goto(`${LOCKED}/`);
  check(new URL(page.url()).pathname === "/login", "asked to log in");
  const password = page.getByLabel("API token");
  check((await password.getAttribute("type")) === "password", "a password input");
  await password.fill("wrong-token");
  expect401 = true;
  await Promise.all([page.waitForNavigation(), password.press("Enter")]);
  expect401 = false;
  check(await page.getByRole("alert").count() === 1, "a wrong token is refused");
  await page.getByLabel("API token").fill(env("TOKEN"));
  await Promise.all([page.waitForNavigation(), page.getByLabel("API token").press("Enter")]);
  check(new URL(page.url()).pathname === "/", "back to the list");
  await page.locator("#alert-rows a", { hasText: "web01/HTTP" }).waitFor({ timeout: 2000 });
  const session = (await browser.cookies(LOCKED)).find((c) => c.name === "siren_session");
  check(session && session.httpOnly && session.sameSite === "Strict", "an HttpOnly, SameSite=Strict session cookie");
  await Promise.all([page.waitForNavigation(), page.getByRole("button", { name: "Log out" }).click()]);
  check(new URL(page.url()).pathname === "/login", "logged out");
  // Console errors here would be a 401 page load, which the login never causes.
  clean("login");
  log("logged in with the token, session cookie HttpOnly + SameSite=Strict, logged out");
  log(`screenshots in ${IMG}: console-alerts.png, console-alert-dark.png`);
} finally {
  await browser.close();
}
