// Bad settings stop synthesis with a message naming the setting (lib/config.ts).

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { buildApp } from "../lib/app";
import { ConfigError } from "../lib/config";
import { committedContext } from "./helpers";

function build(context: Record<string, unknown>) {
  return () => buildApp({ context });
}

function withSetting(key: string, value: unknown) {
  const context = committedContext();
  const environments = context.environments as Record<string, Record<string, unknown>>;
  const staging = { ...environments.staging };
  if (value === undefined) delete staging[key];
  else staging[key] = value;
  return { ...context, environments: { ...environments, staging }, env: "staging", imageTag: "t1" };
}

describe("configuration", () => {
  it("refuses a missing environment name, listing the known ones", () => {
    assert.throws(build({ ...committedContext(), imageTag: "t1" }), (e: Error) =>
      e instanceof ConfigError && /context "env" is missing/.test(e.message) && /production, staging/.test(e.message));
  });
  it("refuses an unknown environment name", () => {
    assert.throws(build({ ...committedContext(), env: "prod", imageTag: "t1" }), (e: Error) =>
      e instanceof ConfigError && /unknown environment "prod": expected one of production, staging/.test(e.message));
  });
  it("refuses a missing or malformed image tag", () => {
    assert.throws(build({ ...committedContext(), env: "staging" }), /context "imageTag" is missing/);
    assert.throws(build({ ...committedContext(), env: "staging", imageTag: "a b" }), /context "imageTag" is "a b"/);
  });
  it("refuses a missing environments map", () => {
    assert.throws(build({ env: "staging", imageTag: "t1" }), /context "environments" is missing/);
  });
  it("names the bad setting", () => {
    const cases: [string, unknown, RegExp][] = [
      ["account", "1234", /"account" is "1234", expected a 12-digit AWS account id/],
      ["account", undefined, /"account" is missing/],
      ["region", "Europe", /"region" is "Europe"/],
      ["maxAzs", 4, /"maxAzs" is 4, expected an integer from 2 to 3/],
      ["authMode", "saml", /"authMode" is "saml", expected cognito or builtin/],
      ["statementRetentionDays", 30, /"statementRetentionDays" is 30, expected an integer from 31 to 36525/],
      ["auditRetentionDays", 0, /"auditRetentionDays" is 0/],
      ["apiTasks", { min: 3, max: 2 }, /apiTasks: "max" is 2, expected an integer from 3 to 100/],
      ["workerTasks", undefined, /"workerTasks" is missing/],
      ["webhookUrl", "http://hooks.example", /"webhookUrl" is "http:\/\/hooks.example", expected an https:\/\/ URL/],
      ["alarmEmail", "oncall", /"alarmEmail" is "oncall"/],
      ["retainData", "yes", /"retainData" is missing \(true or false\)/],
      ["bankName", "x".repeat(81), /"bankName" is longer than 80 characters/],
    ];
    for (const [key, value, message] of cases) {
      assert.throws(build(withSetting(key, value)), (e: Error) => e instanceof ConfigError && message.test(e.message), `${key}=${JSON.stringify(value)}`);
    }
  });
});
