//! `systemd/siren.service` as systemd would run it, without systemd as PID 1: the unit scores
//! and verifies cleanly with `systemd-analyze`, and the real daemon serves a whole session
//! (STARTTLS, a large message, a webhook, the API, SIGHUP, webhook and command
//! destinations, a restart on the same store, SIGTERM)
//! under the seccomp filters the unit asks for. Also: JSON logs, one object per line.
//!
//! The filters are built the way systemd 252 builds them (`src/shared/seccomp-util.c`), with
//! the same libseccomp, from the unit's own lines: `SystemCallFilter=` (groups expanded by
//! `systemd-analyze syscall-filter`, `@default` added to an allow-list, `~` lines removing)
//! where any other call kills the daemon (stricter than the unit's `SystemCallErrorNumber=EPERM`:
//! a pass means that no call was denied at all), `SystemCallArchitectures=native`,
//! `RestrictAddressFamilies=` and `MemoryDenyWriteExecute=`. They are installed between fork
//! and exec, as systemd does. Not reproduced: the namespace side (ProtectSystem=,
//! PrivateTmp=, ProcSubset=, DynamicUser=...). Under strace the daemon opens only its
//! configuration, its store, its libraries, `/proc/self/{maps,cgroup}` and a few read-only
//! files under `/sys`, all of which the unit leaves readable.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::io::{Read, Seek};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustls::pki_types::CertificateDer;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::helpers::{Smtp, dot_stuff, http_get, message};
use crate::notify::{Notified, command};
use crate::process::write_config;
use crate::tls::{cmd, starttls};

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/siren.service")
}

/// Runs `systemd-analyze ARGS`; returns (success, stdout + stderr).
fn systemd_analyze(args: &[&str]) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .output()
        .expect("systemd-analyze (Debian package systemd) must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_unit_scores_2_0_or_less_and_verifies_without_a_word() {
    let unit = unit_path();
    let (_, report) = systemd_analyze(&[
        "security",
        "--offline=true",
        "--no-pager",
        unit.to_str().unwrap(),
    ]);
    let score: f64 = report
        .lines()
        .find_map(|l| l.split("Overall exposure level for siren.service: ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no overall score in:\n{report}"))
        .parse()
        .unwrap();
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{report}");

    // verify checks that ExecStart= exists, so it reads a copy that runs the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("siren.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(text.contains("ExecStart=/usr/local/bin/siren "));
    std::fs::write(
        &copy,
        text.replace("/usr/local/bin/siren", env!("CARGO_BIN_EXE_siren")),
    )
    .unwrap();
    let (ok, said) = systemd_analyze(&["verify", copy.to_str().unwrap()]);
    assert!(ok && said.is_empty(), "systemd-analyze verify:\n{said}");
}

/// The values of `key=` in the unit's [Service] section, in order.
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
        .collect()
}

/// Every group `systemd-analyze syscall-filter` knows, as written (members may be groups).
fn syscall_groups() -> BTreeMap<String, Vec<String>> {
    let (ok, text) = systemd_analyze(&["syscall-filter", "--no-pager"]);
    assert!(ok, "{text}");
    let mut groups = BTreeMap::new();
    let mut current: Option<&mut Vec<String>> = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('@') {
            current = Some(groups.entry(format!("@{name}")).or_default());
        } else if let Some(member) = line.strip_prefix("    ")
            && !member.starts_with('#')
            && let Some(group) = current.as_mut()
        {
            group.push(member.trim().to_string());
        }
    }
    groups
}

fn expand(name: &str, groups: &BTreeMap<String, Vec<String>>, into: &mut BTreeSet<String>) {
    if name.starts_with('@') {
        let members = groups
            .get(name)
            .unwrap_or_else(|| panic!("systemd knows no group {name}"));
        for m in members {
            expand(m, groups, into);
        }
    } else {
        into.insert(name.to_string());
    }
}

/// The system calls the unit's `SystemCallFilter=` lines allow, as systemd's
/// `config_parse_syscall_filter` reads them: the first line makes an allow-list and brings in
/// `@default`; later lines add, `~` lines take away.
fn allowed_syscalls(unit: &str) -> BTreeSet<String> {
    let groups = syscall_groups();
    let mut allowed = BTreeSet::new();
    let lines = unit_values(unit, "SystemCallFilter");
    assert!(!lines.is_empty(), "the unit has no SystemCallFilter=");
    assert!(
        !lines[0].starts_with('~'),
        "this check handles allow-lists only"
    );
    expand("@default", &groups, &mut allowed);
    for line in lines {
        let (remove, names) = match line.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, line.as_str()),
        };
        let mut set = BTreeSet::new();
        for name in names.split_whitespace() {
            assert!(!name.contains(':'), "per-call errno not handled: {name}");
            expand(name, &groups, &mut set);
        }
        if remove {
            allowed.retain(|s| !set.contains(s));
        } else {
            allowed.extend(set);
        }
    }
    allowed
}

/// The parts of libseccomp (the library systemd links) that build a filter and export it as
/// BPF, loaded at run time so that building the tests needs no libseccomp headers.
struct Libseccomp {
    init: InitFn,
    rule_add_array: RuleAddArrayFn,
    resolve_name: ResolveNameFn,
    export_bpf: ExportBpfFn,
    release: ReleaseFn,
}

type InitFn = unsafe extern "C" fn(u32) -> *mut c_void;
type RuleAddArrayFn = unsafe extern "C" fn(*mut c_void, u32, c_int, c_uint, *const ArgCmp) -> c_int;
type ResolveNameFn = unsafe extern "C" fn(*const c_char) -> c_int;
type ExportBpfFn = unsafe extern "C" fn(*mut c_void, c_int) -> c_int;
type ReleaseFn = unsafe extern "C" fn(*mut c_void);

/// `struct scmp_arg_cmp`.
#[repr(C)]
struct ArgCmp {
    arg: c_uint,
    op: c_uint,
    datum_a: u64,
    datum_b: u64,
}

const SCMP_ACT_ALLOW: u32 = 0x7fff_0000;
const SCMP_ACT_KILL_PROCESS: u32 = 0x8000_0000;
const SCMP_CMP_LT: c_uint = 2;
const SCMP_CMP_EQ: c_uint = 4;
const SCMP_CMP_GT: c_uint = 6;
const SCMP_CMP_MASKED_EQ: c_uint = 7;
const SHM_EXEC: u64 = 0o100000;

fn scmp_act_errno(errno: i32) -> u32 {
    0x0005_0000 | (errno as u32 & 0xffff)
}

impl Libseccomp {
    fn open() -> Libseccomp {
        // SAFETY: dlopen/dlsym with NUL-terminated names; each symbol is cast to the type
        // libseccomp 2.5's seccomp.h declares for it. The handle is never closed.
        unsafe {
            let lib = libc::dlopen(c"libseccomp.so.2".as_ptr(), libc::RTLD_NOW);
            assert!(
                !lib.is_null(),
                "libseccomp.so.2 (Debian package libseccomp2, a dependency of systemd) not found"
            );
            let sym = |name: &CStr| {
                let f = libc::dlsym(lib, name.as_ptr());
                assert!(!f.is_null(), "libseccomp has no {name:?}");
                f
            };
            Libseccomp {
                init: std::mem::transmute::<*mut c_void, InitFn>(sym(c"seccomp_init")),
                rule_add_array: std::mem::transmute::<*mut c_void, RuleAddArrayFn>(sym(
                    c"seccomp_rule_add_array",
                )),
                resolve_name: std::mem::transmute::<*mut c_void, ResolveNameFn>(sym(
                    c"seccomp_syscall_resolve_name",
                )),
                export_bpf: std::mem::transmute::<*mut c_void, ExportBpfFn>(sym(
                    c"seccomp_export_bpf",
                )),
                release: std::mem::transmute::<*mut c_void, ReleaseFn>(sym(c"seccomp_release")),
            }
        }
    }

    /// The native-architecture number of a system call, or `None` where it does not exist
    /// (systemd skips those too).
    fn resolve(&self, name: &str) -> Option<c_int> {
        let name = CString::new(name).unwrap();
        // SAFETY: a NUL-terminated string.
        let nr = unsafe { (self.resolve_name)(name.as_ptr()) };
        (nr >= 0).then_some(nr)
    }

    /// One filter: `default` for every call no rule matches; returns it as BPF.
    fn filter(&self, default: u32, rules: &[(u32, &str, Vec<ArgCmp>)]) -> Vec<libc::sock_filter> {
        // SAFETY: the context is created, used and released here, with valid arguments.
        unsafe {
            let ctx = (self.init)(default);
            assert!(!ctx.is_null());
            for (action, name, args) in rules {
                let Some(nr) = self.resolve(name) else {
                    continue;
                };
                let r =
                    (self.rule_add_array)(ctx, *action, nr, args.len() as c_uint, args.as_ptr());
                assert_eq!(r, 0, "seccomp_rule_add {name}");
            }
            let mut out = tempfile::tempfile().unwrap();
            assert_eq!((self.export_bpf)(ctx, out.as_raw_fd()), 0);
            (self.release)(ctx);
            out.rewind().unwrap();
            let mut bytes = Vec::new();
            out.read_to_end(&mut bytes).unwrap();
            bytes
                .chunks_exact(8)
                .map(|b| libc::sock_filter {
                    code: u16::from_ne_bytes([b[0], b[1]]),
                    jt: b[2],
                    jf: b[3],
                    k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
                })
                .collect()
        }
    }
}

fn cmp(arg: c_uint, op: c_uint, datum_a: u64, datum_b: u64) -> ArgCmp {
    ArgCmp {
        arg,
        op,
        datum_a,
        datum_b,
    }
}

/// The unit's seccomp filters, as BPF programs to install in order.
fn unit_filters(unit: &str) -> Vec<Vec<libc::sock_filter>> {
    let lib = Libseccomp::open();
    let mut filters = Vec::new();

    // RestrictAddressFamilies= (an allow-list): socket() with any other family fails with
    // EAFNOSUPPORT, as systemd's seccomp_restrict_address_families builds it.
    let families: BTreeSet<u64> = unit_values(unit, "RestrictAddressFamilies")
        .iter()
        .flat_map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .map(|f| match f.as_str() {
            "AF_UNIX" => libc::AF_UNIX as u64,
            "AF_INET" => libc::AF_INET as u64,
            "AF_INET6" => libc::AF_INET6 as u64,
            other => panic!("address family {other} is not handled here"),
        })
        .collect();
    let (first, last) = (
        *families.first().expect("RestrictAddressFamilies="),
        *families.last().unwrap(),
    );
    let no_family = scmp_act_errno(libc::EAFNOSUPPORT);
    let mut rules = vec![
        (no_family, "socket", vec![cmp(0, SCMP_CMP_LT, first, 0)]),
        (no_family, "socket", vec![cmp(0, SCMP_CMP_GT, last, 0)]),
    ];
    for af in first..last {
        if !families.contains(&af) {
            rules.push((no_family, "socket", vec![cmp(0, SCMP_CMP_EQ, af, 0)]));
        }
    }
    filters.push(lib.filter(SCMP_ACT_ALLOW, &rules));

    // MemoryDenyWriteExecute=: no mapping both writable and executable, no mapping made
    // executable later, as systemd's seccomp_memory_deny_write_execute builds it.
    assert_eq!(unit_values(unit, "MemoryDenyWriteExecute"), ["yes"]);
    let (w, x) = (libc::PROT_WRITE as u64, libc::PROT_EXEC as u64);
    let eperm = scmp_act_errno(libc::EPERM);
    filters.push(lib.filter(
        SCMP_ACT_ALLOW,
        &[
            (
                eperm,
                "mmap",
                vec![cmp(2, SCMP_CMP_MASKED_EQ, w | x, w | x)],
            ),
            (eperm, "mprotect", vec![cmp(2, SCMP_CMP_MASKED_EQ, x, x)]),
            (
                eperm,
                "pkey_mprotect",
                vec![cmp(2, SCMP_CMP_MASKED_EQ, x, x)],
            ),
            (
                eperm,
                "shmat",
                vec![cmp(2, SCMP_CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC)],
            ),
        ],
    ));

    // SystemCallFilter=, installed last as systemd does: it may deny seccomp(2) itself. The
    // unit answers other calls with EPERM (SystemCallErrorNumber=); here they kill the
    // daemon, as systemd does without that line, so a pass shows that no call was denied
    // at all, not merely that a denial was survived. A libseccomp context holds the native
    // architecture only, so a call from any other one is killed too:
    // SystemCallArchitectures=native.
    assert_eq!(unit_values(unit, "SystemCallArchitectures"), ["native"]);
    assert!(
        [vec![], vec!["EPERM".to_string()]].contains(&unit_values(unit, "SystemCallErrorNumber")),
        "SystemCallErrorNumber= is not handled here"
    );
    let allowed = allowed_syscalls(unit);
    for must in ["execve", "socket", "clone3", "fdatasync", "sendto"] {
        assert!(allowed.contains(must), "{must} is not allowed");
    }
    let rules: Vec<_> = allowed
        .iter()
        .map(|s| (SCMP_ACT_ALLOW, s.as_str(), vec![]))
        .collect();
    filters.push(lib.filter(SCMP_ACT_KILL_PROCESS, &rules));
    filters
}

/// Makes `cmd` install `filters` in the child between fork and exec, after no_new_privs (as
/// systemd does for a service that is not given CAP_SYS_ADMIN).
fn under_filters(cmd: &mut Command, filters: Vec<Vec<libc::sock_filter>>) {
    // SAFETY: the closure only makes prctl(2) and seccomp(2) calls on memory prepared before
    // the fork; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            for f in &filters {
                let prog = libc::sock_fprog {
                    len: f.len() as u16,
                    filter: f.as_ptr() as *mut libc::sock_filter,
                };
                if libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    0,
                    &prog as *const libc::sock_fprog,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// A message over STARTTLS, trusting only `cert`.
async fn deliver_over_tls(smtp: std::net::SocketAddr, cert: &CertificateDer<'static>) {
    let mut s = starttls(smtp, cert).await;
    cmd(&mut s, "EHLO client.test", "250").await;
    cmd(&mut s, "MAIL FROM:<a@example.com>", "250").await;
    cmd(&mut s, "RCPT TO:<ops@alerts.localhost>", "250").await;
    cmd(&mut s, "DATA", "354").await;
    s.get_mut()
        .write_all(&message("over tls", "tls@seccomp"))
        .await
        .unwrap();
    cmd(&mut s, ".", "250 2.0.0").await;
    cmd(&mut s, "QUIT", "221").await;
}

/// A webhook receiver on loopback: answers 200 and passes each JSON body on.
async fn receiver() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Value>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::Json<Value>| {
            let _ = tx.send(body.0);
            async {}
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rx)
}

/// Asserts every line is a JSON object and none is a warning or an error.
fn assert_clean_json_log(log: &[String]) {
    for line in log {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\nwhole log: {log:#?}"));
        assert!(
            ["INFO", "DEBUG", "TRACE"].contains(&v["level"].as_str().unwrap_or("?")),
            "{line}\nwhole log: {log:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_serves_a_whole_session_under_the_units_seccomp_filters() {
    let unit = std::fs::read_to_string(unit_path()).unwrap();
    let filters = unit_filters(&unit);

    let dir = tempfile::tempdir().unwrap();
    let cert = crate::tls::write_certificate(dir.path());
    let config = write_config(dir.path());
    let mut text = std::fs::read_to_string(&config).unwrap().replacen(
        "[smtp]\n",
        "[smtp]\ntls_cert = \"tls.crt\"\ntls_key = \"tls.key\"\n",
        1,
    );
    text.push_str("[[integrations]]\nid = \"hook\"\ntype = \"webhook\"\n");
    std::fs::write(&config, text).unwrap();

    let start = |n: usize| {
        let socket = dir.path().join(format!("notify{n}"));
        let mut cmd = command(&config, &socket);
        cmd.args(["--log-format", "json"])
            .env("WATCHDOG_USEC", "20000");
        under_filters(&mut cmd, filters.clone());
        Notified::spawn(cmd, &socket)
    };

    let mut d = start(1);
    let (smtp, http) = d.ready().await;
    deliver_over_tls(smtp, &cert).await;
    // Over 64 KiB: parsed on the blocking pool and stored in chunks.
    let mut big = message("big", "big@seccomp");
    big.extend(b"0123456789abcdef\r\n".repeat(16 * 1024));
    let mut c = Smtp::greeted(smtp).await;
    c.start_data("ops@alerts.localhost").await;
    c.send_raw(&dot_stuff(&big)).await;
    c.send_raw(b".\r\n").await;
    c.expect("250 2.0.0").await;
    let posted = reqwest::Client::new()
        .post(format!("http://{http}/webhooks/hook"))
        .json(&serde_json::json!({"event_type": "create", "Id": "w1", "Title": "hooked"}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202);
    let (status, alerts) = http_get(http, "/api/v1/alerts").await;
    assert_eq!(status, 200);
    assert_eq!(alerts["alerts"].as_array().unwrap().len(), 3, "{alerts}");
    // SIGHUP: a new integration, with a webhook destination reached by name (getaddrinfo)
    // and a command destination (a child process, under the same filters), takes mail
    // without a restart.
    let (hook, mut posted) = receiver().await;
    let fifo = dir.path().join("pager.fifo");
    let c_fifo = CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) }, 0);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "[[integrations]]\nid = \"late\"\ntype = \"email\"\naddresses = [\"late@alerts.localhost\"]\n\
         destinations = [\"out\", \"pager\"]\n\
         [[destinations]]\nid = \"out\"\ntype = \"webhook\"\nurl = \"http://localhost:{}/hook\"\n\
         [[destinations]]\nid = \"pager\"\ntype = \"command\"\n\
         command = [\"/bin/sh\", \"-c\", \"cat > \\\"$0\\\"\", \"{}\"]\n",
        hook.port(),
        fifo.display()
    ));
    std::fs::write(&config, text).unwrap();
    d.signal(libc::SIGHUP);
    d.log_line("configuration reloaded").await;
    let mut c = Smtp::greeted(smtp).await;
    let r = c
        .mail(
            "a@example.com",
            &["late@alerts.localhost"],
            &message("late", "late@seccomp"),
        )
        .await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
    let event = posted.recv().await.unwrap();
    assert_eq!(event["alert"]["thirdparty_id"], "late@seccomp", "{event}");
    let paged = tokio::task::spawn_blocking(move || std::fs::read_to_string(fifo).unwrap())
        .await
        .unwrap();
    let event: Value = serde_json::from_str(&paged).expect("the event JSON on stdin");
    assert_eq!(event["alert"]["thirdparty_id"], "late@seccomp", "{event}");
    assert!(d.recv().await.starts_with("WATCHDOG=1"));
    d.sigterm();
    let (status, log) = d.wait().await;
    assert_eq!(status.code(), Some(0), "{log:#?}");
    assert_clean_json_log(&log);

    // The same store, opened again under the filters.
    let mut d = start(2);
    let (_, http) = d.ready().await;
    let ids: Vec<_> = crate::helpers::log_details(http, "ops")
        .await
        .iter()
        .map(|l| l["data"]["message_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["big@seccomp", "tls@seccomp"]);
    d.sigterm();
    let (status, log) = d.wait().await;
    assert_eq!(status.code(), Some(0), "{log:#?}");
    assert_clean_json_log(&log);
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_from_the_flag_or_the_environment() {
    // The environment alone, and the flag winning over the environment.
    for (env, flag) in [("json", None), ("text", Some("json"))] {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path());
        let socket = dir.path().join("notify");
        let mut cmd = command(&config, &socket);
        cmd.env("SIREN_LOG_FORMAT", env);
        if let Some(flag) = flag {
            cmd.args(["--log-format", flag]);
        }
        let mut d = Notified::spawn(cmd, &socket);
        let (smtp, _) = d.ready().await;
        d.sigterm();
        let (status, log) = d.wait().await;
        assert_eq!(status.code(), Some(0));
        assert_clean_json_log(&log);
        let listening = log
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|v| v["message"] == "smtp listening")
            .unwrap_or_else(|| panic!("no smtp listening in {log:#?}"));
        assert_eq!(listening["addr"], smtp.to_string());
        assert_eq!(listening["target"], "siren::app");
        assert!(listening["timestamp"].is_string());
    }
}

#[test]
fn an_unknown_log_format_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_siren"))
        .args(["--log-format", "xml", "check-config"])
        .env_remove("SIREN_LOG_FORMAT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("'xml'") && err.contains("json"), "{err}");
}
