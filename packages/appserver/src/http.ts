import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface HttpEndpoints {
  metrics: () => Promise<{ contentType: string; body: string }>;
  health: () => { ok: boolean; details: Record<string, unknown> };
}

/** /metrics (Prometheus text format) and /healthz (200 or 503 with a JSON body). */
export async function startHttp(host: string, port: number, ep: HttpEndpoints): Promise<Server> {
  const server = createServer((req, res) => {
    const url = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET") {
      res.writeHead(405).end();
      return;
    }
    if (url === "/metrics") {
      ep.metrics().then(
        (m) => res.writeHead(200, { "content-type": m.contentType }).end(m.body),
        () => res.writeHead(500).end("metrics unavailable\n"),
      );
      return;
    }
    if (url === "/healthz") {
      const h = ep.health();
      res
        .writeHead(h.ok ? 200 : 503, { "content-type": "application/json" })
        .end(JSON.stringify({ status: h.ok ? "ok" : "unhealthy", ...h.details }));
      return;
    }
    res.writeHead(404).end("not found\n");
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return server;
}

export function httpPort(server: Server): number {
  return (server.address() as AddressInfo).port;
}
