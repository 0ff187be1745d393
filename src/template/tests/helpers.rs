//! The helper library over full `Templates`: what each helper renders, the README's examples,
//! the registry's own examples, and the errors that make a template fall back.

use std::path::Path;

use super::*;

/// `(template, output)` over the data of [`helpers_render`].
#[rustfmt::skip]
const HELPER_CASES: &[(&str, &str)] = &[
    // text
    ("{{upper data.s}}", "DISK FULL ON DB-1"),
    ("{{upper data.n}}", "7"),
    ("{{lower data.s}}", "disk full on db-1"),
    ("[{{lower data.nil}}]", "[]"),
    ("[{{trim data.pad}}]", "[x]"),
    ("[{{trim data.blank}}]", "[]"),
    ("{{truncate data.s 9}}", "Disk Full"),
    ("{{truncate data.s 9 \"…\"}}", "Disk Ful…"),
    ("{{truncate data.s 100 \"…\"}}", "Disk Full on DB-1"),
    // handlebars-helpers: `slice(0, limit - suffix.length) + suffix`, so a negative end.
    ("{{truncate data.s 2 \"...\"}}", "Disk Full on DB-..."),
    ("{{truncate \"héllo wörld\" 4}}", "héll"),
    ("{{replace data.s \" \" \"_\"}}", "Disk_Full_on_DB-1"),
    ("{{replace data.s \"\" \"_\"}}", "Disk Full on DB-1"),
    // An array is written as handlebars.js writes it.
    ("{{split \"a,b,c\" \",\"}}", "a,b,c"),
    ("{{length (split data.blank \",\")}}", "0"),
    ("{{join data.list \"+\"}}", "a+b+c"),
    ("{{join data.empty \"+\"}}", ""),
    ("{{join (split \"a b\" \" \") \"-\"}}", "a-b"),
    ("{{join data.nums}}", "3, 1, 2"),
    ("{{default data.missing \"none\"}}", "none"),
    ("{{default data.nil \"none\"}}", "none"),
    // handlebars-helpers keeps "": only null and missing fall through.
    ("{{default data.blank \"none\"}}", ""),
    ("{{default data.zero \"none\"}}", "0"),
    ("{{default data.s \"none\"}}", "Disk Full on DB-1"),
    ("{{default data.a data.b \"third\"}}", "third"),
    ("{{contains data.s \"Full\"}}", "true"),
    ("{{contains data.s \"full\"}}", "false"),
    ("{{contains data.list \"b\"}}", "true"),
    // handlebars-helpers' contains is indexOf: an object contains nothing.
    ("{{contains data.obj \"k\"}}", "false"),
    ("{{contains data.nil \"k\"}}", "false"),
    ("{{#if (contains data.s \"Disk\")}}disk{{else}}other{{/if}}", "disk"),
    ("{{#contains data.s \"CPU\"}}cpu{{else}}other{{/contains}}", "other"),
    // Siren's startsWith is now startsWithText (startsWith is the library's block helper).
    ("{{startsWithText data.s \"Disk\"}}", "true"),
    ("{{startsWithText data.s \"\"}}", "true"),
    ("{{#startsWith \"Disk\" data.s}}yes{{/startsWith}}", "yes"),
    ("{{endsWith data.s \"DB-1\"}}", "true"),
    ("{{endsWith data.nil \"x\"}}", "false"),
    // regular expressions
    // Siren's match is now matchRegex (match is the library's glob matcher).
    ("{{matchRegex data.s \"DB-\\\\d+\"}}", "true"),
    ("{{matchRegex data.s \"^db\"}}", "false"),
    ("{{matchRegex data.s \"(?i)^disk\"}}", "true"),
    ("{{extract data.s \"on (\\\\S+)\"}}", "DB-1"),
    ("{{extract data.s \"DB-\\\\d\"}}", "DB-1"),
    ("{{extract data.s \"(\\\\w+) (\\\\w+)\" 2}}", "Full"),
    ("{{extract data.s \"on (?P<host>\\\\S+)\" \"host\"}}", "DB-1"),
    ("[{{extract data.s \"nothing (here)\"}}]", "[]"),
    ("{{#if (matchRegex data.s \"Full\")}}full{{/if}}", "full"),
    // comparison and logic (handlebars' own)
    ("{{eq data.n 7}}", "true"),
    ("{{eq data.ns \"12\"}}", "true"),
    ("{{eq data.ns 12}}", "false"),
    ("{{ne data.s \"x\"}}", "true"),
    ("{{gt data.n 5}}", "true"),
    ("{{gt data.ns 5}}", "true"),
    ("{{gt \"b\" \"a\"}}", "true"),
    ("{{gte data.n 7}}", "true"),
    ("{{lt data.f 3}}", "true"),
    ("{{lt data.neg 0}}", "true"),
    ("{{lte data.n 6}}", "false"),
    ("{{and true data.n}}", "true"),
    ("{{and true data.zero}}", "false"),
    ("{{or data.nil data.s}}", "true"),
    ("{{not data.blank}}", "true"),
    ("{{#if (and (gt data.n 5) (contains data.s \"Disk\"))}}both{{/if}}", "both"),
    ("{{#if (eq integration.urgency \"medium\")}}m{{/if}}", "m"),
    // arrays
    ("{{first data.list}}", "a"),
    ("[{{first data.empty}}]", "[]"),
    ("{{last data.list}}", "c"),
    ("{{last data.s}}", "1"),
    ("{{length data.list}}", "3"),
    ("{{length \"héllo\"}}", "5"),
    ("{{length data.obj}}", "2"),
    ("{{length data.nil}}", "0"),
    ("{{includes data.nums 2}}", "true"),
    ("{{includes data.nums \"2\"}}", "true"),
    ("{{includes data.empty 2}}", "false"),
    // math
    ("{{add data.n 3}}", "10"),
    ("{{add data.f data.ns}}", "14.5"),
    // JavaScript numbers, printed as JavaScript prints them.
    ("{{add 9223372036854775807 1}}", "9223372036854776000"),
    ("{{subtract data.n 10}}", "-3"),
    ("{{multiply data.f 4}}", "10"),
    ("{{multiply \"1.5\" 3}}", "4.5"),
    ("{{divide 10 4}}", "2.5"),
    ("{{divide 10 2}}", "5"),
    ("{{round 2.5}}", "3"),
    ("{{round 3.14159 2}}", "3.14"),
    ("{{round data.n 2}}", "7"),
    ("{{round (divide 2 3) 3}}", "0.667"),
    // dates
    ("{{formatDate data.ts \"%Y-%m-%d %H:%M\"}}", "2024-07-15 16:24"),
    ("{{formatDate data.unix \"%d/%m/%Y %H:%M:%S %Z\"}}", "15/07/2024 16:24:59 UTC"),
    ("{{formatDate data.unix_ms \"%H:%M:%S%.3f\"}}", "16:24:59.123"),
    ("{{formatDate \"1721060699\"}}", "2024-07-15T16:24:59Z"),
    ("{{formatDate data.rfc2822 \"%H:%M %z\"}}", "16:24 +0000"),
    ("{{formatDate \"2024-07-15T18:24:59+02:00\" \"%A %e %B\"}}", "Monday 15 July"),
    ("{{length (now \"%Y\")}}", "4"),
    // UTC unless a time zone is given.
    ("{{formatDate data.ts \"%H:%M %Z\" tz=\"Europe/Paris\"}}", "18:24 CEST"),
    ("{{date data.ts \"HH:mm Z\" tz=\"+05:30\"}}", "21:54 +05:30"),
    ("{{moment data.ts \"YYYY-MM-DD HH:mm ZZ\" tz=\"America/New_York\"}}", "2024-07-15 12:24 -0400"),
    ("{{moment data.ts \"HH:mm Z\"}}", "16:24 +00:00"),
    // JSON
    // Keys keep their order.
    ("{{json data.obj}}", "{\"k\":1,\"j\":2}"),
    ("{{json data.html}}", "\"<b>x</b>\""),
    ("{{json data.nil}}", "null"),
    ("{{jsonPretty data.list}}", "[ \"a\", \"b\", \"c\" ]"),
    // context
    ("{{integration.id}}/{{integration.name}}/{{integration.type}}", "custom/custom/webhook"),
    ("{{{data.html}}} {{data.html}}", "<b>x</b> <b>x</b>"),
];

#[test]
fn helpers_render() {
    let data = json!({
        "s": "Disk Full on DB-1",
        "pad": "  x  ",
        "n": 7, "f": 2.5, "ns": "12", "zero": 0, "neg": -3,
        "list": ["a", "b", "c"], "nums": [3, 1, 2], "empty": [], "nil": null, "blank": "",
        "obj": {"k": 1, "j": 2},
        "ts": "2024-07-15T16:24:59Z", "unix": 1721060699, "unix_ms": 1721060699123_i64,
        "rfc2822": "Mon, 15 Jul 2024 18:24:59 +0200",
        "html": "<b>x</b>",
    });
    let table = HELPER_CASES;
    let mut failures = Vec::new();
    for (source, want) in table {
        match render(source, &data) {
            Ok(got) if got == *want => {}
            other => failures.push(format!("{source}: want {want:?}, got {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The examples of the helper table (docs/helpers.md), over its sample data (docs/templates.md).
#[test]
fn readme_examples() {
    let mut list = integrations(
        "[[integrations]]\nid = \"ops\"\nname = \"Ops e-mail\"\ntype = \"email\"\n\
         addresses = [\"ops@alerts.localhost\"]\nurgency = \"high\"\n",
    );
    list[0].description = String::new();
    let data = json!({
        "subject": "PROBLEM: Disk full on db-1",
        "host": "db-1",
        "severity": "critical",
        "load": 7.25,
        "count": "12",
        "tags": ["disk", "prod"],
        "started": "2024-07-15T16:24:59Z",
        "epoch": 1721060699,
        "labels": {"alertname": "DiskFull", "instance": "db-1:9100"},
        "empty": ""
    });
    #[rustfmt::skip]
    let table: &[(&str, &str)] = &[
        ("{{data.labels.alertname}} on {{data.host}}", "DiskFull on db-1"),
        ("{{integration.name}} ({{integration.id}}, {{integration.type}}, {{integration.urgency}})", "Ops e-mail (ops, email, high)"),
        ("{{upper data.host}}", "DB-1"),
        ("{{lower data.labels.alertname}}", "diskfull"),
        ("{{trim \"  db-1  \"}}", "db-1"),
        ("{{truncate data.subject 12 \"…\"}}", "PROBLEM: Di…"),
        ("{{replace data.host \"-\" \"_\"}}", "db_1"),
        ("{{first (split data.labels.instance \":\")}}", "db-1"),
        ("{{join data.tags \" + \"}}", "disk + prod"),
        ("{{default data.empty \"n/a\"}}", ""),
        ("{{default data.runbook \"none\"}}", "none"),
        ("{{#if (contains data.subject \"PROBLEM\")}}down{{else}}up{{/if}}", "down"),
        ("{{startsWithText data.subject \"PROBLEM\"}}", "true"),
        ("{{endsWith data.host \"-1\"}}", "true"),
        ("{{matchRegex data.subject \"^(PROBLEM|RECOVERY)\"}}", "true"),
        ("{{extract data.subject \"on (\\\\S+)\"}}", "db-1"),
        ("{{extract data.labels.instance \"(?P<port>[0-9]+)$\" \"port\"}}", "9100"),
        ("{{#if (eq data.severity \"critical\")}}page{{/if}}", "page"),
        ("{{ne data.host \"db-2\"}}", "true"),
        ("{{gt data.count 10}}", "true"),
        ("{{gte data.load 7.25}}", "true"),
        ("{{lt data.load 5}}", "false"),
        ("{{lte 3 3}}", "true"),
        ("{{and (eq data.severity \"critical\") (includes data.tags \"prod\")}}", "true"),
        ("{{or data.empty data.host}}", "true"),
        ("{{not data.empty}}", "true"),
        ("{{first data.tags}}", "disk"),
        ("{{last data.tags}}", "prod"),
        ("{{length data.tags}}", "2"),
        ("{{length data.host}}", "4"),
        ("{{includes data.tags \"prod\"}}", "true"),
        ("{{add data.count 1}}", "13"),
        ("{{subtract data.count 2}}", "10"),
        ("{{multiply data.load 2}}", "14.5"),
        ("{{divide data.count 8}}", "1.5"),
        ("{{round data.load}}", "7"),
        ("{{round data.load 1}}", "7.3"),
        ("{{formatDate data.started \"%d %b %Y %H:%M %Z\"}}", "15 Jul 2024 16:24 UTC"),
        ("{{formatDate data.epoch}}", "2024-07-15T16:24:59Z"),
        ("{{json data.labels}}", "{\"alertname\":\"DiskFull\",\"instance\":\"db-1:9100\"}"),
        ("{{jsonPretty data.tags}}", "[ \"disk\", \"prod\" ]"),
        ("{{len data.tags}}", "2"),
        ("{{lookup data.labels \"alertname\"}}", "DiskFull"),
        ("{{#if data.runbook}}…{{else}}no runbook{{/if}}", "no runbook"),
        ("{{#each data.tags}}#{{this}} {{/each}}", "#disk #prod"),
        ("{{log data.host}}", ""),
        ("{{#with data.labels}}{{alertname}}{{/with}}", "DiskFull"),
        ("{{#unless data.empty}}no note{{/unless}}", "no note"),
        ("{{#contains data.tags \"prod\"}}PROD {{/contains}}{{data.host}}", "PROD db-1"),
    ];
    let mut failures = Vec::new();
    for (source, want) in table {
        list[0].title = source.to_string();
        let out = Templates::new(&list).map(|t| t.render(&list[0], &data));
        match out {
            Ok(r) if r.errors.is_empty() && r.title == *want => {}
            other => failures.push(format!("{source}: want {want:?}, got {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn helper_errors_fall_back_with_a_reason() {
    let data = json!({"s": "x", "n": 1, "list": [1], "obj": {}});
    let table: &[(&str, &str)] = &[
        (
            "{{divide data.s 0}}",
            "divide: expected the first argument to be a number",
        ),
        ("{{abs data.s}}", "abs: expected a number"),
        ("{{upper data.list}}", "upper: expects text, got an array"),
        ("{{matchRegex data.s data.s2}}", "missing field \"data.s2\""),
        ("{{matchRegex data.s (lower \"(\")}}", "unclosed group"),
        ("{{formatDate data.s}}", "cannot read \"x\" as a date"),
        (
            "{{formatDate data.n (trim \"%J\")}}",
            "cannot format a date",
        ),
        ("{{extract data.s \"(x)\" 3}}", "no group 3"),
        (
            "{{extract data.list \"x\"}}",
            "extract: expects text, got an array",
        ),
        ("{{round 1.5 99}}", "decimals must be"),
        ("{{ifEven data.s}}", "ifEven: expected a number"),
        ("{{upper data.missing}}", "missing field \"data.missing\""),
        (
            "{{JSONparse data.s}}",
            "JSONparse: cannot parse the text as JSON",
        ),
    ];
    let mut failures = Vec::new();
    for (source, want) in table {
        match render(source, &data) {
            Err(e) if e.contains(want) => {}
            other => failures.push(format!("{source}: want error with {want:?}, got {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every helper's registry example renders exactly its expected output over `EXAMPLE_DATA`.
#[test]
fn registry_examples() {
    let list = integrations(
        "[[integrations]]\nid = \"ops\"\nname = \"Ops e-mail\"\ntype = \"email\"\n\
         addresses = [\"ops@alerts.localhost\"]\nurgency = \"high\"\n",
    );
    let data: Value = serde_json::from_str(registry::EXAMPLE_DATA).unwrap();
    let mut scratch = Scratch::new(true);
    let mut failures = Vec::new();
    for (category, spec) in registry::helpers() {
        if spec.example.is_empty() {
            failures.push(format!("{}: no example", spec.name));
            continue;
        }
        // Strictly, as integration templates are, and before any clean-up of the output.
        let out = scratch.render(spec.example, &list[0], &data);
        match out {
            Ok(got) if got == spec.expected => {}
            other => failures.push(format!(
                "{} ({}): {}: want {:?}, got {other:?}",
                spec.name,
                category.name(),
                spec.example,
                spec.expected
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `docs/helpers.md` holds the reference generated from the registry, unchanged. With
/// `SIREN_BLESS=1` the test writes it instead.
#[test]
fn helper_reference_is_up_to_date() {
    const START: &str = "<!-- generated from src/template/registry.rs: edit there -->\n";
    const END: &str = "<!-- end of the generated reference -->";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/helpers.md");
    let doc = std::fs::read_to_string(&path).expect("docs/helpers.md");
    let (head, rest) = doc.split_once(START).expect("the start marker");
    let (_, tail) = rest.split_once(END).expect("the end marker");
    let want = registry::reference();
    let fresh = format!("{head}{START}{want}{END}{tail}");
    if std::env::var_os("SIREN_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write docs/helpers.md");
    }
    assert!(
        doc == fresh,
        "docs/helpers.md is not the registry's reference; run SIREN_BLESS=1 cargo test --lib helper_reference"
    );
}
