// The server's configuration surface as the deployment sees it: the names in
// `server-variables.json` (a copy of `bank_server::config::VARIABLES`, checked against
// bank-server/src/config.rs by test/variables.test.ts), and a guard that every ECS container's
// environment and secrets use only those names.

import variables from "./server-variables.json";

/** One variable the server reads: name, default, meaning. */
export interface ServerVariable {
  readonly name: string;
  readonly default: string;
  readonly meaning: string;
}

/** Every variable `bank-server` reads, in its order. */
export const SERVER_VARIABLES: readonly ServerVariable[] = variables;

const NAMES = new Set(SERVER_VARIABLES.map((v) => v.name));

/** The process kinds of `bank-server` the deployment runs. */
export type ProcessKind = "api" | "worker" | "notifications" | "statements" | "migrate";

/**
 * Checks that `names` are all variables the server reads; throws naming the first that is not
 * (a typo here would leave the server on its default without a word).
 */
export function checkVariableNames(process: ProcessKind, names: Iterable<string>): void {
  for (const name of names) {
    if (!NAMES.has(name)) {
      throw new Error(`${process}: ${name} is not a variable bank-server reads (lib/server-variables.json)`);
    }
  }
}
