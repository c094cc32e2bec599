import { timingSafeEqual } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface HttpEndpoints {
  metrics: () => Promise<{ contentType: string; body: string }>;
  health: () => { ok: boolean; details: Record<string, unknown> };
  /**
   * Operator endpoints under /admin/ (the daemon's CLI commands use them), allowed only with
   * `authorization: Bearer <adminToken>`: the token lives in a 0600 file in the data folder, so
   * only whoever can read that folder can act, even when /metrics is exposed more widely.
   */
  admin?: {
    token: string;
    handle: (
      method: string,
      path: string[],
      query: URLSearchParams,
    ) => { status: number; body: unknown };
  };
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** /metrics (Prometheus text format) and /healthz (200 or 503 with a JSON body). */
export async function startHttp(host: string, port: number, ep: HttpEndpoints): Promise<Server> {
  const server = createServer((req, res) => {
    const [url = "/", qs = ""] = (req.url ?? "/").split("?");
    if (url.startsWith("/admin/") && ep.admin) {
      const auth = req.headers.authorization ?? "";
      if (!auth.startsWith("Bearer ") || !sameSecret(auth.slice(7), ep.admin.token)) {
        res.writeHead(401, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: "admin token required (see dataDir/admin-token)" }));
        return;
      }
      let r: { status: number; body: unknown };
      try {
        const parts = url.slice("/admin/".length).split("/").map(decodeURIComponent);
        r = ep.admin.handle(req.method ?? "GET", parts, new URLSearchParams(qs));
      } catch (e) {
        r = { status: 400, body: { error: (e as Error).message } };
      }
      res.writeHead(r.status, { "content-type": "application/json" }).end(JSON.stringify(r.body));
      return;
    }
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
