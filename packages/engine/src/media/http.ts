// The HTTP side of XEP-0363 with Node's own http/https (no client library): a streamed PUT with
// progress, and a bounded, type-checked, resumable (Range) GET.
import { createReadStream, createWriteStream, statSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { MediaError } from "./errors.js";

export interface TransferProgress {
  /** Bytes done so far (a resumed download counts what it had). */
  done: number;
  /** Total bytes, when known. */
  total: number | null;
}

export interface HttpOptions {
  /** Extra trusted CA certificates (PEM) for https. */
  ca?: string | Buffer | (string | Buffer)[];
  /** Called as bytes move; at most every 64 KiB and at the end. */
  onProgress?: (p: TransferProgress) => void;
  signal?: AbortSignal;
}

/** A transfer whose socket stays silent this long is dropped (http-failed, retried later). */
const IDLE_TIMEOUT_MS = 30_000;

const LOOPBACK = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/i;

/**
 * An http(s) URL we may talk to: https anywhere, plain http only to loopback (test services), or
 * when `allowPlainHttp` says so. Anything else (ftp:, javascript:, garbage) is a MediaError.
 */
export function checkHttpUrl(raw: string, what: string, allowPlainHttp = false): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new MediaError("bad-slot", `${what} is not a URL: ${JSON.stringify(raw.slice(0, 200))}`);
  }
  if (url.protocol === "https:") return url;
  if (url.protocol === "http:" && (allowPlainHttp || LOOPBACK.test(url.hostname))) return url;
  throw new MediaError(
    "bad-slot",
    `${what} must be https (plain http only to loopback): ${JSON.stringify(raw.slice(0, 200))}`,
  );
}

function transport(url: URL): typeof http | typeof https {
  return url.protocol === "https:" ? https : http;
}

function progressReporter(opts: HttpOptions, total: number | null, start: number) {
  let done = start;
  let reported = start;
  return {
    add(n: number) {
      done += n;
      if (done - reported >= 65536) {
        reported = done;
        opts.onProgress?.({ done, total });
      }
    },
    end() {
      opts.onProgress?.({ done, total });
    },
    get done() {
      return done;
    },
  };
}

/** PUT a file (XEP-0363 §6: Content-Length, Content-Type and only the slot's headers). */
export function httpPut(
  url: URL,
  filePath: string,
  headers: Record<string, string>,
  contentType: string,
  opts: HttpOptions = {},
): Promise<void> {
  const size = statSync(filePath).size;
  return new Promise<void>((resolve, reject) => {
    const progress = progressReporter(opts, size, 0);
    const req = transport(url).request(url, {
      method: "PUT",
      headers: { ...headers, "content-length": String(size), "content-type": contentType },
      ...(opts.ca ? { ca: opts.ca } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    req.setTimeout(IDLE_TIMEOUT_MS, () => req.destroy(new Error("no progress for 30 s")));
    req.once("error", (err) =>
      reject(
        err instanceof MediaError
          ? err
          : new MediaError("http-failed", `PUT ${url.host}: ${err.message}`),
      ),
    );
    req.once("response", (res) => {
      res.resume();
      const status = res.statusCode ?? 0;
      if (status >= 200 && status < 300) {
        progress.end();
        resolve();
      } else {
        req.destroy();
        reject(
          new MediaError(
            "http-status",
            `the upload service answered the PUT with HTTP ${status}${
              status === 413 ? " (file too large)" : status === 403 ? " (forbidden)" : ""
            }`,
            status,
          ),
        );
      }
    });
    const body = createReadStream(filePath, { highWaterMark: 256 * 1024 });
    body.on("data", (chunk) => progress.add(chunk.length));
    body.once("error", (err) => req.destroy(err));
    // An early answer (413 before the body is read) ends the request: stop reading the file.
    req.once("close", () => body.destroy());
    body.pipe(req);
  });
}

export interface GetLimits {
  /** Refuse files larger than this (checked on Content-Length/Content-Range, and while reading). */
  maxBytes: number;
  /** Accepted content types: exact ("image/png") or family ("image/*"); empty: any. */
  acceptTypes: readonly string[];
}

export function typeAccepted(contentType: string, accept: readonly string[]): boolean {
  if (accept.length === 0) return true;
  const t = contentType.split(";")[0]?.trim().toLowerCase() ?? "";
  return accept.some((a) => {
    const p = a.toLowerCase();
    return p.endsWith("/*") ? t.startsWith(p.slice(0, -1)) : t === p;
  });
}

/**
 * GET `url` into `partPath`, continuing after its first `have` bytes with a Range request when
 * the server honours it (206), from the start otherwise (200). Resolves with the total size and
 * the content type once the file is complete.
 */
export function httpGetResumable(
  url: URL,
  partPath: string,
  have: number,
  limits: GetLimits,
  opts: HttpOptions = {},
): Promise<{ size: number; contentType: string }> {
  return new Promise((resolve, reject) => {
    const req = transport(url).get(url, {
      headers: have > 0 ? { range: `bytes=${have}-` } : {},
      ...(opts.ca ? { ca: opts.ca } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    const fail = (err: MediaError) => {
      req.destroy();
      reject(err);
    };
    req.setTimeout(IDLE_TIMEOUT_MS, () => req.destroy(new Error("no progress for 30 s")));
    req.once("error", (err) =>
      reject(
        err instanceof MediaError
          ? err
          : new MediaError("http-failed", `GET ${url.host}: ${err.message}`),
      ),
    );
    req.once("response", (res) => {
      const status = res.statusCode ?? 0;
      if (status !== 200 && status !== 206) {
        res.resume();
        return fail(
          new MediaError("http-status", `the file server answered HTTP ${status}`, status),
        );
      }
      const contentType = String(res.headers["content-type"] ?? "application/octet-stream");
      if (!typeAccepted(contentType, limits.acceptTypes))
        return fail(
          new MediaError(
            "wrong-type",
            `refused: content type ${contentType} is not one of ${limits.acceptTypes.join(", ")}`,
          ),
        );
      const start = status === 206 ? have : 0;
      const range = /\/(\d+)$/.exec(String(res.headers["content-range"] ?? ""));
      const length = res.headers["content-length"] ? Number(res.headers["content-length"]) : null;
      const total = range?.[1] ? Number(range[1]) : length !== null ? start + length : null;
      if (total !== null && total > limits.maxBytes)
        return fail(
          new MediaError(
            "too-large",
            `refused: the file has ${total} bytes, the limit is ${limits.maxBytes}`,
          ),
        );
      const progress = progressReporter(opts, total, start);
      const out = createWriteStream(partPath, start > 0 ? { flags: "a" } : {});
      res.on("data", (chunk: Buffer) => {
        progress.add(chunk.length);
        // No (or a lying) Content-Length: the limit still holds while reading.
        if (progress.done > limits.maxBytes) {
          out.destroy();
          fail(
            new MediaError(
              "too-large",
              `refused: the file exceeds the limit of ${limits.maxBytes} bytes`,
            ),
          );
        }
      });
      res.pipe(out);
      out.once("error", (err) =>
        fail(new MediaError("http-failed", `writing ${partPath}: ${err.message}`)),
      );
      out.once("finish", () => {
        if (total !== null && progress.done !== total)
          return reject(
            new MediaError(
              "http-failed",
              `download ended after ${progress.done} of ${total} bytes`,
            ),
          );
        progress.end();
        resolve({ size: progress.done, contentType });
      });
      res.once("aborted", () =>
        reject(new MediaError("http-failed", `download interrupted after ${progress.done} bytes`)),
      );
    });
  });
}

/** HEAD `url`: its status and Content-Length (to learn whether an interrupted PUT completed). */
export function httpHead(
  url: URL,
  opts: HttpOptions = {},
): Promise<{ status: number; size: number | null }> {
  return new Promise((resolve, reject) => {
    const req = transport(url).request(url, {
      method: "HEAD",
      ...(opts.ca ? { ca: opts.ca } : {}),
    });
    req.setTimeout(IDLE_TIMEOUT_MS, () => req.destroy(new Error("no answer for 30 s")));
    req.once("error", (err) =>
      reject(new MediaError("http-failed", `HEAD ${url.host}: ${err.message}`)),
    );
    req.once("response", (res) => {
      res.resume();
      const len = res.headers["content-length"];
      resolve({ status: res.statusCode ?? 0, size: len !== undefined ? Number(len) : null });
    });
    req.end();
  });
}
