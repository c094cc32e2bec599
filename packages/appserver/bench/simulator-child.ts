// Child process of the appserver benchmark: runs the APNs simulator (h2c on 127.0.0.1) with two
// signing keys (one for the appserver's provider, one for the bare baseline client: the simulator,
// like APNs, refuses a key's JWT changing within 20 minutes), prints one JSON line, exits when stdin
// closes.
import { generateApnsKey, startApnsSimulator } from "@lichen/push-simulators";

const topic = "im.lichen.bench";
const keys = [generateApnsKey(), generateApnsKey()];
const sim = await startApnsSimulator({
  keys: keys.map((k) => ({ keyId: k.keyId, teamId: k.teamId, publicKey: k.publicKeyPem })),
  topics: [topic],
});
process.stdout.write(
  `${JSON.stringify({
    url: sim.url,
    topic,
    keys: keys.map((k) => ({ keyId: k.keyId, teamId: k.teamId, privateKeyPem: k.privateKeyPem })),
  })}\n`,
);
process.stdin.resume();
process.stdin.on("end", () => {
  void sim.stop().then(() => process.exit(0));
});
