import http from "node:http";
import https from "node:https";

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A keep-alive HTTP(S) client for one origin with an optional extra CA and a per-request deadline. */
export class HttpClient {
  private readonly agent: http.Agent;
  private readonly secure: boolean;

  constructor(origin: string, o: { caPem?: string; maxSockets?: number } = {}) {
    this.secure = new URL(origin).protocol === "https:";
    const agentOptions = { keepAlive: true, maxSockets: o.maxSockets ?? 64 };
    this.agent = this.secure
      ? new https.Agent({ ...agentOptions, ...(o.caPem ? { ca: o.caPem } : {}) })
      : new http.Agent(agentOptions);
  }

  request(
    url: string,
    o: { method: string; headers: Record<string, string>; body: string; timeoutMs: number },
  ): Promise<HttpResponse> {
    const lib = this.secure ? https : http;
    return new Promise((resolve, reject) => {
      const req = lib.request(
        url,
        {
          method: o.method,
          agent: this.agent,
          headers: { ...o.headers, "content-length": String(Buffer.byteLength(o.body)) },
        },
        (res) => {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (c: string) => {
            if (body.length < 65_536) body += c;
          });
          res.on("end", () => {
            clearTimeout(timer);
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
          });
          res.on("error", (e) => {
            clearTimeout(timer);
            reject(e);
          });
        },
      );
      const timer = setTimeout(() => req.destroy(new Error("Timeout")), o.timeoutMs);
      req.on("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
      req.end(o.body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/** Retry-After in milliseconds (seconds or an HTTP date), if present and sane. */
export function parseRetryAfter(
  v: string | string[] | undefined,
  now: number = Date.now(),
): number | undefined {
  if (typeof v !== "string" || v.trim() === "") return undefined;
  const s = Number(v);
  if (Number.isFinite(s) && s >= 0) return Math.round(s * 1000);
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
