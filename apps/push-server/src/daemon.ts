import { AppServer, loadConfigFile, type AppServerConfig } from "@lichen/appserver";
import { startDemo, type Demo } from "./demo.js";

export interface DaemonOptions {
  configFile?: string;
  env?: NodeJS.ProcessEnv;
}

/**
 * Runs lichen-push until SIGINT/SIGTERM. With a config file: exactly that. Without: the demo setup
 * (APNs/FCM simulators in-process, SQLite in ./lichen-push-data, and a local Prosody when the test
 * servers are installed, else waiting for an XMPP server on 127.0.0.1:5347).
 */
export async function runDaemon(o: DaemonOptions): Promise<void> {
  const env = o.env ?? process.env;
  let config: AppServerConfig;
  let demo: Demo | undefined;
  if (o.configFile) {
    config = loadConfigFile(o.configFile, env);
  } else {
    demo = await startDemo(env);
    config = demo.config;
  }
  const server = await AppServer.start({ config });
  const logger = server.logger;
  if (demo) for (const line of demo.describe(server.httpPort)) logger.info(line);
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    server
      .stop()
      .then(() => demo?.stop())
      .then(
        () => process.exit(0),
        (e: unknown) => {
          logger.error({ err: e }, "shutdown failed");
          process.exit(1);
        },
      );
  };
  process.on("SIGINT", () => shutdown("SIGINT"));
  process.on("SIGTERM", () => shutdown("SIGTERM"));
}
