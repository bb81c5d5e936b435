// Shared by the tests: the app built from the committed cdk.json and cdk.context.json (as `cdk
// synth` would), and small readers of the synthesized templates.

import * as fs from "node:fs";
import * as path from "node:path";
import { Template } from "aws-cdk-lib/assertions";
import { buildApp, BankApp } from "../lib/app";

/** The deploy/ folder (tests run from dist/test/). */
export const DEPLOY_DIR = path.resolve(__dirname, "..", "..");

/** Context of cdk.json plus the pinned lookups of cdk.context.json. */
export function committedContext(): Record<string, unknown> {
  const cdkJson = JSON.parse(fs.readFileSync(path.join(DEPLOY_DIR, "cdk.json"), "utf8"));
  const pinned = JSON.parse(fs.readFileSync(path.join(DEPLOY_DIR, "cdk.context.json"), "utf8"));
  return { ...cdkJson.context, ...pinned };
}

export interface Synthesized extends BankApp {
  readonly template: Template;
  readonly edgeTemplate: Template;
  readonly resources: Record<string, { Type: string; Properties?: any; Metadata?: any }>;
}

const cache = new Map<string, Synthesized>();

/**
 * The environment `env` synthesized, with `overrides` merged into its settings (to test the
 * other auth mode). Cached: synthesis takes seconds.
 */
export function synth(env: string, overrides: Record<string, unknown> = {}): Synthesized {
  const key = JSON.stringify([env, overrides]);
  const hit = cache.get(key);
  if (hit) return hit;
  const context = committedContext();
  const environments = context.environments as Record<string, Record<string, unknown>>;
  const built = buildApp({
    context: {
      ...context,
      environments: { ...environments, [env]: { ...environments[env], ...overrides } },
      env,
      imageTag: "test-tag",
    },
  });
  const template = Template.fromStack(built.main);
  const result: Synthesized = {
    ...built,
    template,
    edgeTemplate: Template.fromStack(built.edge),
    resources: template.toJSON().Resources,
  };
  cache.set(key, result);
  return result;
}

/** Logical ids and resources of one type. */
export function ofType(s: Synthesized, type: string): [string, { Type: string; Properties?: any; Metadata?: any }][] {
  return Object.entries(s.resources).filter(([, r]) => r.Type === type);
}

/** The one logical id whose id starts with `prefix` (CDK ids are path + hash). */
export function logicalId(s: Synthesized, prefix: string, type?: string): string {
  const ids = Object.entries(s.resources)
    .filter(([id, r]) => id.startsWith(prefix) && (!type || r.Type === type))
    .map(([id]) => id);
  if (ids.length !== 1) throw new Error(`expected one resource ${prefix} (${type ?? "any type"}), found ${ids.join(", ") || "none"}`);
  return ids[0];
}

/** Whether a CloudFormation value refers to resource `id` (Ref or GetAtt, anywhere inside). */
export function refersTo(value: unknown, id: string): boolean {
  return JSON.stringify(value ?? null).includes(`"${id}"`);
}

/** One IAM statement of an identity policy, actions normalized to an array. */
export interface Statement {
  readonly Effect: string;
  readonly Action: string[];
  readonly Resource: unknown;
}

/** Every statement of every AWS::IAM::Policy attached to role `roleId`. */
export function statementsOfRole(s: Synthesized, roleId: string): Statement[] {
  return ofType(s, "AWS::IAM::Policy")
    .filter(([, p]) => (p.Properties.Roles ?? []).some((r: unknown) => refersTo(r, roleId)))
    .flatMap(([, p]) => p.Properties.PolicyDocument.Statement as any[])
    .map((st) => ({ ...st, Action: ([] as string[]).concat(st.Action) }));
}

/** Whether an IAM action pattern (`s3:Get*`, `s3:*`, `*`) covers `action`. */
export function actionCovers(pattern: string, action: string): boolean {
  const re = new RegExp("^" + pattern.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*") + "$", "i");
  return re.test(action);
}

/** Whether the statements allow `action` on something that refers to resource `id`. */
export function allows(statements: Statement[], action: string, id: string): boolean {
  return statements.some(
    (st) => st.Effect === "Allow" && st.Action.some((a) => actionCovers(a, action)) && (refersTo(st.Resource, id) || JSON.stringify(st.Resource) === '"*"'),
  );
}
