#!/usr/bin/env python3
"""Clients and checks for tests/e2e/cluster/run: a webhook receiver that logs every delivery,
an SMTP and webhook load spread over the nodes (recording what got 250 / 202), the same
third-party id sent to every node at once, and the checks against the database (psql)."""

import argparse
import http.server
import json
import smtplib
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from email.message import EmailMessage


def receiver(args):
    """Logs `delivery-id event alert-id` per request, one line each, and answers 200."""
    lock = threading.Lock()
    out = open(args.file, "a", buffering=1)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            alert = json.loads(body).get("alert", {}).get("id", "?")
            with lock:
                out.write(f"{self.headers['x-siren-delivery']} {self.headers['x-siren-event']} {alert}\n")
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a):
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


def send_mail(port, n):
    msg = EmailMessage()
    msg["From"] = "load@test.localhost"
    msg["To"] = "ops@alerts.localhost"
    msg["Subject"] = f"cluster load {n}"
    msg["Message-ID"] = f"<m{n}@cluster.test>"
    msg.set_content(f"message {n}\n")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.send_message(msg)  # raises unless the final reply is 250


def send_hook(port, tp, title="cluster hook"):
    body = json.dumps({"event_type": "create", "Id": tp, "Title": title}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/webhooks/hook",
        data=body,
        headers={"content-type": "application/json", "authorization": "Bearer t"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


def load(args):
    """Sends `--n` messages and `--n` webhooks round-robin over the nodes from 8 threads."""
    smtp = [int(p) for p in args.smtp.split(",")]
    hooks = [int(p) for p in args.http.split(",")]
    acked = {"smtp": [], "http": []}
    failed = {"smtp": 0, "http": 0}
    lock = threading.Lock()
    counter = iter(range(args.n * 2))

    def work():
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            n = i // 2
            try:
                if i % 2 == 0:
                    send_mail(smtp[n % len(smtp)], n)
                    kind = "smtp"
                else:
                    kind = "http"
                    if send_hook(hooks[n % len(hooks)], f"w{n}") != 202:
                        raise RuntimeError("not 202")
                with lock:
                    acked[kind].append(n)
            except Exception:
                with lock:
                    failed["smtp" if i % 2 == 0 else "http"] += 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    json.dump({"acked": acked, "failed": failed, "seconds": time.time() - t0}, open(args.out, "w"))


def same(args):
    """One third-party id sent to every node at the same moment."""
    hooks = [int(p) for p in args.http.split(",")]
    barrier = threading.Barrier(len(hooks))
    statuses = []

    def one(port):
        barrier.wait()
        statuses.append(send_hook(port, "same-everywhere", "same"))

    threads = [threading.Thread(target=one, args=(p,)) for p in hooks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(statuses))
    if statuses != [202] * len(hooks):
        sys.exit("the same alert was not accepted by every node")


def probe(args):
    """One message to one node; prints the final reply code (250, or 451 while the database is
    away) and exits 0 either way, 1 when the node did not answer at all."""
    try:
        send_mail(args.port, args.n)
        print(250)
    except smtplib.SMTPResponseException as e:
        print(e.smtp_code)
    except (OSError, smtplib.SMTPException) as e:
        sys.exit(f"no answer: {e}")


def psql(url, sql):
    out = subprocess.run(["psql", url, "-At", "-c", sql], check=True, capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if line]


def check(args):
    """Every 250/202 stored exactly once; the same-id alert made once; deliveries at least once
    and, apart from those the killed node held, exactly once. Prints the counts."""
    result = json.load(open(args.load))
    acked = result["acked"]
    problems = []
    # Third-party ids as stored: e-mails by Message-ID, webhooks by their Id (each input makes
    # one entry here, so each entry's raw input is its own).
    logged = {}
    for row in psql(args.url, "SELECT l.integration, coalesce(substring(convert_from(r.raw, "
                    "'UTF8') from 'Message-ID: <m([0-9]+)@cluster.test>'), "
                    "substring(convert_from(r.raw, 'UTF8') from '\"Id\": ?\"w([0-9]+)\"')) "
                    "FROM siren_logs l JOIN siren_raws r ON r.id = l.raw_id"):
        integration, n = row.split("|")
        if n:
            key = ("smtp" if integration == "ops" else "http", int(n))
            logged[key] = logged.get(key, 0) + 1
    alerts = {}
    for row in psql(args.url, "SELECT integration, thirdparty_id, dedup_count FROM siren_alerts"):
        integration, tp, dedup = row.split("|")
        alerts.setdefault((integration, tp), []).append(int(dedup))
    lost = dups = 0
    for kind, tp in (("smtp", "m{}@cluster.test"), ("http", "w{}")):
        integration = "ops" if kind == "smtp" else "hook"
        for n in acked[kind]:
            logs = logged.get((kind, n), 0)
            stored = alerts.get((integration, tp.format(n)), [])
            if logs == 0 or not stored:
                lost += 1
            elif logs > 1 or len(stored) > 1 or stored[0] != 0:
                dups += 1
    total_acked = len(acked["smtp"]) + len(acked["http"])
    stored = sum(1 for k in logged)
    print(f"cluster: acknowledged {total_acked} (smtp {len(acked['smtp'])}, http {len(acked['http'])}), "
          f"refused while a node was down {result['failed']['smtp'] + result['failed']['http']}, "
          f"stored {stored}, duplicates {dups}, lost {lost}")
    if lost or dups:
        problems.append(f"{lost} lost and {dups} duplicated inputs")
    same_alert = alerts.get(("hook", "same-everywhere"), [])
    print(f"cluster: same id at three nodes at once: {len(same_alert)} alert(s), dedup_count {same_alert}")
    if same_alert != [2]:
        problems.append("the id sent to all three nodes did not make one alert with dedup_count 2")
    pending = int(psql(args.url, "SELECT count(*) FROM siren_deliveries")[0])
    seen = {}
    for line in open(args.deliveries):
        did, event, alert = line.split()
        seen.setdefault(did, []).append((event, alert))
    twice = sum(1 for v in seen.values() if len(v) == 2)
    more = sum(1 for v in seen.values() if len(v) > 2)
    created = {a for v in seen.values() for e, a in v if e == "create"}
    all_alerts = int(psql(args.url, "SELECT count(*) FROM siren_alerts")[0])
    print(f"cluster: deliveries {len(seen)} ids, {twice} received twice (held by the killed node), "
          f"{more} more than twice, {pending} still in the outbox; create events for "
          f"{len(created)} of {all_alerts} alerts")
    if pending or more or len(created) != all_alerts:
        problems.append("deliveries missing, pending or repeated more than once")
    if twice > args.max_twice:
        problems.append(f"{twice} deliveries repeated; at most {args.max_twice} could be in flight")
    if problems:
        sys.exit("cluster: FAILED: " + "; ".join(problems))


def resolved(args):
    """After the faketime phase: every hook alert resolved by auto, exactly once in total."""
    total = 0
    for port in args.http.split(","):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith('siren_alerts_resolved_total{integration="hook",by="auto"}'):
                    total += int(float(line.rsplit(" ", 1)[1]))
    want = int(psql(args.url, "SELECT count(*) FROM siren_alerts WHERE integration = 'hook'")[0])
    auto = int(psql(args.url, "SELECT count(*) FROM siren_alerts WHERE integration = 'hook' "
                    "AND status = 'resolved' AND resolved_by = 'auto'")[0])
    resolves = {}
    for line in open(args.deliveries):
        did, event, alert = line.split()
        if event == "resolve":
            resolves.setdefault(alert, set()).add(did)
    print(f"cluster: auto-resolve: {auto} of {want} alerts resolved by auto, {total} resolutions "
          f"counted over the three nodes, resolve deliveries for {len(resolves)} alerts, "
          f"{sum(1 for v in resolves.values() if len(v) > 1)} with more than one delivery id")
    if not (auto == want == total == len(resolves)) or any(len(v) > 1 for v in resolves.values()):
        sys.exit("cluster: FAILED: auto-resolve did not happen exactly once per alert")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(required=True)
    r = sub.add_parser("receiver")
    r.add_argument("port", type=int)
    r.add_argument("file")
    r.set_defaults(f=receiver)
    ld = sub.add_parser("load")
    for a in ("--smtp", "--http", "--out"):
        ld.add_argument(a, required=True)
    ld.add_argument("--n", type=int, default=1000)
    ld.set_defaults(f=load)
    s = sub.add_parser("same")
    s.add_argument("--http", required=True)
    s.set_defaults(f=same)
    c = sub.add_parser("check")
    for a in ("--url", "--load", "--deliveries"):
        c.add_argument(a, required=True)
    c.add_argument("--max-twice", type=int, default=1000)
    c.set_defaults(f=check)
    pr = sub.add_parser("probe")
    pr.add_argument("port", type=int)
    pr.add_argument("n", type=int)
    pr.set_defaults(f=probe)
    rs = sub.add_parser("resolved")
    for a in ("--url", "--http", "--deliveries"):
        rs.add_argument(a, required=True)
    rs.set_defaults(f=resolved)
    args = p.parse_args()
    args.f(args)


if __name__ == "__main__":
    main()
