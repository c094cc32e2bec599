// Child process of the appserver benchmark: one appserver (the production AppServer, providers
// included) started from the config given as JSON in argv[2]. Prints "ready" once its component
// link is up, exits after a graceful stop when stdin closes. Running it in its own process keeps
// the benchmark's fake XMPP server and load generator off its event loop.
import { destination, pino } from "pino";
import { AppServer } from "#src/appserver.js";
import { validateConfig } from "#src/config.js";
import type { AppSender, SendOutcome } from "#src/push-service.js";
import { serveCpuUsage } from "./cpu-ipc.js";

const config = validateConfig(JSON.parse(process.argv[2]!) as unknown);
// LICHEN_BENCH_APPSERVER_LOG=info: log as a production daemon does (to /dev/null), to measure it
const level = process.env.LICHEN_BENCH_APPSERVER_LOG ?? "silent";
const logger = level === "silent" ? pino({ level }) : pino({ level }, destination("/dev/null"));
// LICHEN_BENCH_APPSERVER_SENDER=stub: every app "delivers" at once, without a provider or HTTP/2,
// so that the process' CPU is the appserver's own per-push work (the `pipeline` bench part)
const stub = process.env.LICHEN_BENCH_APPSERVER_SENDER === "stub";
const delivered: SendOutcome = { kind: "delivered" };
const stubSender: AppSender = {
  caseInsensitiveTokens: true,
  attemptTimeoutMs: 10_000,
  send: () => Promise.resolve(delivered),
  sendWith: (_job, done) => done(delivered),
};
const server = await AppServer.start({
  config,
  logger,
  ...(stub ? { createSender: () => stubSender } : {}),
});
const ready = setInterval(() => {
  if (!server.link.online) return;
  clearInterval(ready);
  process.stdout.write("ready\n");
}, 20);
serveCpuUsage();
process.stdin.resume();
process.stdin.on("end", () => {
  void server.stop().then(() => process.exit(0));
});
