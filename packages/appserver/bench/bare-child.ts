// Child process of the appserver benchmark: the baseline, a bare node:http2 client sending the
// APNs requests a provider sends (same path, headers, payload, one reused JWT) to the simulator.
// In its own process like the appserver, so that each side's CPU time is its own and neither
// shares an event loop with the driver. Config as JSON in argv[2]; IPC: {kind:"run", n,
// concurrency} → {kind:"ran", perSecond, errors, cpuUs, sysUs, gcUs} (CPU and GC time of the requests,
// the tokens' making excluded), {kind:"cpu"} → own CPU time.
import { randomBytes, randomUUID } from "node:crypto";
import { connect as h2connect, constants as h2, type ClientHttp2Session } from "node:http2";
import { serveCpuUsage, usage } from "./cpu-ipc.js";

export interface BareClientConfig {
  origin: string;
  /** As many sessions as the appserver's provider opens (apps.<name>.connections). */
  connections: number;
  jwt: string;
  topic: string;
  body: string;
}

const cfg = JSON.parse(process.argv[2]!) as BareClientConfig;

// Connected once and kept, as the provider keeps its sessions across pushes.
const sessions: ClientHttp2Session[] = await Promise.all(
  Array.from({ length: cfg.connections }, async () => {
    const session = h2connect(cfg.origin);
    session.on("error", () => undefined);
    await new Promise<void>((resolve, reject) => {
      session.once("remoteSettings", () => resolve());
      session.once("error", reject);
    });
    return session;
  }),
);

/** The headers a provider sends for one alert push (see ApnsProvider.post). */
function headers(token: string): Record<string, string> {
  return {
    [h2.HTTP2_HEADER_METHOD]: "POST",
    [h2.HTTP2_HEADER_PATH]: `/3/device/${token}`,
    authorization: `bearer ${cfg.jwt}`,
    "apns-topic": cfg.topic,
    "apns-push-type": "alert",
    "apns-priority": "10",
    "apns-expiration": String(Math.floor(Date.now() / 1000) + 7 * 86_400),
    "apns-id": randomUUID(),
    "content-type": "application/json",
  };
}

/** `n` requests for distinct tokens, `concurrency` in flight, spread over the sessions. */
function run(
  n: number,
  concurrency: number,
): Promise<{ perSecond: number; errors: number; cpuUs: number; sysUs: number; gcUs: number }> {
  // tokens made before the clock starts, as the driver makes its IQs' tokens
  const tokens = Array.from({ length: n }, () => randomBytes(32).toString("hex"));
  let next = 0;
  let done = 0;
  let errors = 0;
  const u0 = usage();
  const t0 = performance.now();
  return new Promise((resolve) => {
    const sendOne = () => {
      const i = next++;
      const req = sessions[i % sessions.length]!.request(headers(tokens[i]!));
      let status = 0;
      req.setEncoding("utf8");
      req.on("response", (h) => (status = Number(h[h2.HTTP2_HEADER_STATUS])));
      req.on("data", () => undefined);
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        if (status !== 200) errors++;
        done++;
        if (next < n) sendOne();
        if (done === n) {
          const perSecond = n / ((performance.now() - t0) / 1000);
          const u = usage();
          resolve({
            perSecond,
            errors,
            cpuUs: u.cpuUs - u0.cpuUs,
            sysUs: u.sysUs - u0.sysUs,
            gcUs: u.gcUs - u0.gcUs,
          });
        }
      };
      req.on("end", finish);
      req.on("error", () => {
        status = -1;
        finish();
      });
      req.end(cfg.body);
    };
    for (let k = 0; k < Math.min(concurrency, n); k++) sendOne();
  });
}

serveCpuUsage();
process.on("message", (m: { kind?: string; n?: number; concurrency?: number }) => {
  if (m?.kind !== "run") return;
  void run(m.n!, m.concurrency!).then((r) => process.send!({ kind: "ran", ...r }));
});
process.on("disconnect", () => {
  for (const s of sessions) s.close();
  process.exit(0);
});
process.send!({ kind: "ready" });
