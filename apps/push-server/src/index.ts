export { runDaemon, type DaemonOptions } from "./daemon.js";
export { startDemo, DEMO_APNS_TOPIC, type Demo } from "./demo.js";
