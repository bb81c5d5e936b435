#!/usr/bin/env node
// `cdk synth -c env=NAME -c imageTag=TAG`: the stacks of one environment. A missing or wrong
// setting stops here with a message naming it (exit 1), before any template is written.

import { buildApp } from "../lib/app";
import { ConfigError } from "../lib/config";

try {
  buildApp().app.synth();
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`bank-deploy: ${err.message}\n`);
    process.exit(1);
  }
  throw err;
}
