// Child process of the appserver benchmark: runs the APNs simulator (h2c on 127.0.0.1) with two
// signing keys (one for the appserver's provider, one for the bare baseline client: the simulator,
// like APNs, refuses a key's JWT changing within 20 minutes), prints one JSON line, exits when stdin
// closes.
import { generateApnsKey, startApnsSimulator } from "@lichen/push-simulators";
import { serveCpuUsage } from "./cpu-ipc.js";

// argv[2] === "soak": tokens starting with "dead" are answered 410 (dead tokens), and every
// 1000th other request 500 (provider errors, 0.1 %): deterministic, no randomness to replay.
const soak = process.argv[2] === "soak";
let served = 0;

const topic = "im.lichen.bench";
const keys = [generateApnsKey(), generateApnsKey()];
const sim = await startApnsSimulator({
  keys: keys.map((k) => ({ keyId: k.keyId, teamId: k.teamId, publicKey: k.publicKeyPem })),
  topics: [topic],
  // millions of requests: counters only, no per-request records in memory
  keepRecords: false,
  ...(soak
    ? {
        scriptFor: (token: string) =>
          token.startsWith("dead") ? "410" : ++served % 1000 === 0 ? "500" : undefined,
      }
    : {}),
});
process.stdout.write(
  `${JSON.stringify({
    url: sim.url,
    topic,
    keys: keys.map((k) => ({ keyId: k.keyId, teamId: k.teamId, privateKeyPem: k.privateKeyPem })),
  })}\n`,
);
serveCpuUsage();
process.stdin.resume();
process.stdin.on("end", () => {
  void sim.stop().then(() => process.exit(0));
});
