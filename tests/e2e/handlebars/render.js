// The JavaScript side of the differential test: handlebars 4.7.10 with every helper of
// handlebars-helpers 0.10.0, rendering each template of the corpus over data.json, one JSON
// object per line, as examples/hb_render.rs does. No HTML escaping: Siren sanitizes after.
'use strict';
const fs = require('fs');
const path = require('path');
const Handlebars = require('handlebars');
const helpers = require('handlebars-helpers');

const dir = process.argv[2];
const hb = Handlebars.create();
helpers({ handlebars: hb });
// The md helper logs a deprecation note, and mm too: keep stdout for results.
console.log = (...a) => process.stderr.write(a.join(' ') + '\n');
const fixture = JSON.parse(fs.readFileSync(path.join(dir, 'data.json'), 'utf8'));
const context = { integration: fixture.integration, data: fixture.data };
const files = fs.readdirSync(dir).filter((f) => f.endsWith('.tsv')).sort();
for (const f of files) {
  for (const line of fs.readFileSync(path.join(dir, f), 'utf8').split('\n')) {
    const tab = line.indexOf('\t');
    if (tab < 0) continue;
    const id = line.slice(0, tab);
    if (!id || id.startsWith('#')) continue;
    const source = line.slice(tab + 1);
    let row;
    try {
      // A fresh copy each time: some helpers (sort, merge) change their arguments.
      const ctx = JSON.parse(JSON.stringify(context));
      row = { id, out: String(hb.compile(source, { noEscape: true })(ctx)) };
    } catch (e) {
      row = { id, error: String(e && e.message) };
    }
    process.stdout.write(JSON.stringify(row) + '\n');
  }
}
