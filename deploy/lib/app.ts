// Builds the app for one environment: the edge stack (us-east-1, WAF) and the main stack. Shared by
// bin/bank.ts (cdk synth) and the tests, so both check the same thing.

import { App, AppProps } from "aws-cdk-lib";
import { BankStack } from "./bank-stack";
import { EnvironmentConfig, loadConfig } from "./config";
import { EdgeStack } from "./edge-stack";

/** Region of every CLOUDFRONT-scoped WAF web ACL. */
export const EDGE_REGION = "us-east-1";

export interface BankApp {
  readonly app: App;
  readonly config: EnvironmentConfig;
  readonly edge: EdgeStack;
  readonly main: BankStack;
}

/** The app for the environment named by context `env` (see lib/config.ts for the checks). */
export function buildApp(props: AppProps = {}): BankApp {
  const app = new App(props);
  const config = loadConfig((key) => app.node.tryGetContext(key));
  const edge = new EdgeStack(app, `BankEdge-${config.name}`, {
    env: { account: config.account, region: EDGE_REGION },
    config,
    crossRegionReferences: true,
    description: `bank ${config.name}: WAF web ACL of the CloudFront distribution`,
  });
  const main = new BankStack(app, `Bank-${config.name}`, {
    env: { account: config.account, region: config.region },
    config,
    webAclArn: edge.webAclArn,
    crossRegionReferences: true,
    description: `bank ${config.name}: the seed's AWS topology (deploy/README.md)`,
  });
  return { app, config, edge, main };
}
