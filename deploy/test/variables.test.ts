// lib/server-variables.json is a copy of the server's variable list
// (bank_server::config::VARIABLES): the deployment may set only those. This test compares the copy
// with bank-server/src/config.rs, so a variable renamed or added in the server fails here until the
// copy (and the task environments) follow.

import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { it } from "node:test";
import { SERVER_VARIABLES } from "../lib/variables";
import { DEPLOY_DIR } from "./helpers";

/** Names in the `VARIABLES` table of config.rs: the first string of each tuple. */
function namesInConfigRs(source: string): string[] {
  const start = source.indexOf("VARIABLES: &[(&str, &str, &str)] = &[");
  assert.ok(start >= 0, "config.rs has no VARIABLES table");
  const end = source.indexOf("\n];", start);
  const table = source.slice(start, end);
  return [...table.matchAll(/\(\s*"([A-Z][A-Z0-9_]*)",/g)].map((m) => m[1]);
}

it("the copy of the server's variables matches bank-server/src/config.rs", () => {
  const source = fs.readFileSync(path.join(DEPLOY_DIR, "..", "bank-server", "src", "config.rs"), "utf8");
  assert.deepEqual(SERVER_VARIABLES.map((v) => v.name), namesInConfigRs(source));
});

it("the copy has every variable once, with a meaning", () => {
  const names = SERVER_VARIABLES.map((v) => v.name);
  assert.equal(new Set(names).size, names.length);
  assert.ok(names.length >= 40);
  for (const v of SERVER_VARIABLES) assert.ok(v.meaning.length > 0, v.name);
});
