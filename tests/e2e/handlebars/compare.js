// Compares the two renderings byte for byte. A template both sides refuse (an error on each)
// counts as identical. Every mismatch must be listed, by id, in the differences table of
// docs/helpers.md; an unlisted one fails, and so do more than 5% listed ones.
'use strict';
const fs = require('fs');

const [nodeFile, sirenFile, docsFile] = process.argv.slice(2);
const read = (f) =>
  new Map(
    fs
      .readFileSync(f, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
      .map((r) => [r.id, r])
  );
const js = read(nodeFile);
const rs = read(sirenFile);
// Table rows of the form "| `id` | … |" under the differences heading.
const docs = fs.readFileSync(docsFile, 'utf8');
const section = docs.split('## Differences from handlebars-helpers')[1] || '';
const listed = new Set([...section.matchAll(/^\| `([a-z0-9_-]+)` \|/gm)].map((m) => m[1]));

let identical = 0;
const differences = [];
const unlisted = [];
for (const [id, a] of js) {
  const b = rs.get(id);
  const same =
    b && ((a.error !== undefined && b.error !== undefined) || (a.out !== undefined && a.out === b.out));
  if (same) {
    identical++;
    continue;
  }
  const line = `${id}: handlebars-helpers ${JSON.stringify(a.out ?? 'ERROR ' + a.error)}, Siren ${JSON.stringify(
    b ? b.out ?? 'ERROR ' + b.error : 'not rendered'
  )}`;
  (listed.has(id) ? differences : unlisted).push(line);
}
const n = js.size;
for (const d of differences) console.log('listed   ' + d);
for (const d of unlisted) console.log('UNLISTED ' + d);
const stale = [...listed].filter((id) => !js.has(id));
for (const id of stale) console.log('STALE    ' + id + ' is in the table but not in the corpus');
console.log(`${n} templates, ${identical} identical, ${differences.length} listed differences`);
let ok = true;
if (unlisted.length) {
  console.log(`FAIL: ${unlisted.length} mismatches not in the differences table of ${docsFile}`);
  ok = false;
}
if (differences.length > n * 0.05) {
  console.log(`FAIL: ${differences.length} listed differences is more than 5% of ${n}`);
  ok = false;
}
if (n < 400) {
  console.log(`FAIL: the corpus has ${n} templates, fewer than 400`);
  ok = false;
}
if (rs.size !== js.size) {
  console.log(`FAIL: Siren rendered ${rs.size} templates, handlebars ${js.size}`);
  ok = false;
}
process.exit(ok ? 0 : 1);
