//! The Siren side of the differential test against handlebars-helpers
//! (`tests/e2e/handlebars/run`): renders every template of the corpus in
//! `tests/fixtures/templates/*.tsv` over its `data.json` with Siren's real template engine
//! (`siren::template::Scratch`, lenient as the JavaScript side is), one JSON object per line:
//! `{"id": …, "out": …}` or `{"id": …, "error": …}`.

use std::path::Path;

use serde_json::{Value, json};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or("tests/fixtures/templates".into());
    let dir = Path::new(&dir);
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("data.json"))?)?;
    let i = &fixture["integration"];
    let toml = format!(
        "[[integrations]]\nid = {}\nname = {}\ntype = {}\nurgency = {}\ntoken = \"t\"\n",
        i["id"], i["name"], i["type"], i["urgency"]
    );
    let config = siren::config::Config::parse(&toml, Path::new("differential.toml"))?;
    let integration = &config.integrations[0];
    let mut scratch = siren::template::Scratch::new(false);
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tsv"))
        .collect();
    files.sort();
    for file in files {
        for line in std::fs::read_to_string(&file)?.lines() {
            let Some((id, source)) = line.split_once('\t') else {
                continue;
            };
            if id.starts_with('#') || id.is_empty() {
                continue;
            }
            let row = match scratch.render(source, integration, &fixture["data"]) {
                Ok(out) => json!({"id": id, "out": out}),
                Err(e) => json!({"id": id, "error": e}),
            };
            println!("{row}");
        }
    }
    Ok(())
}
