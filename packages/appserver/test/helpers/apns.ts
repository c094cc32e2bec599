import {
  generateApnsKey,
  startApnsSimulator,
  type ApnsScriptStep,
  type ApnsSimulator,
} from "@lichen/push-simulators";
import type { AppConfig, AppServerConfigInput } from "../../src/config.js";
import type { AppSender } from "../../src/push-service.js";
import { createProviderSender } from "../../src/senders.js";
import { until } from "./nodes.js";

export type Script =
  | "unregistered"
  | "bad-device-token"
  | "device-token-not-for-topic"
  | "too-many-requests"
  | "internal-server-error";

const STEP: Record<Script, ApnsScriptStep> = {
  unregistered: "410-Unregistered",
  "bad-device-token": "400-BadDeviceToken",
  "device-token-not-for-topic": "400-DeviceTokenNotForTopic",
  "too-many-requests": "429-TooManyRequests",
  "internal-server-error": "500-InternalServerError",
};

/** What the simulator saw for one request to a token. */
export interface Delivery {
  token: string;
  topic: string;
  pushType: string;
  payload: string;
  status: number;
}

/** The APNs simulator (tools/push-simulators) plus the app config that points the real provider at it. */
export interface ApnsHarness {
  sim: ApnsSimulator;
  topic: string;
  /** App config for the real provider; key 0. */
  appConfig: AppInput;
  /** App config with signing key `i` (0..7): separate appserver instances use separate keys. */
  app(i: number): AppInput;
  /** The production sender (src/providers via src/senders). */
  createSender: (name: string, app: AppConfig) => AppSender;
  /** Every following request for `token` gets this error (until the test ends). */
  script(token: string, s: Script): void;
  /** Accepted pushes for `token` (with includeRejected: every answered request). */
  deliveries(token: string, o?: { includeRejected?: boolean }): Delivery[];
  waitForDeliveries(
    token: string,
    n: number,
    o?: { includeRejected?: boolean },
  ): Promise<Delivery[]>;
  stop(): Promise<void>;
}

type AppInput = NonNullable<AppServerConfigInput["apps"]>[string];

export async function startApns(): Promise<ApnsHarness> {
  const teamId = "LICHENTEAM";
  const keys = Array.from({ length: 8 }, () => generateApnsKey({ teamId }));
  const topic = "im.lichen.test";
  const sim = await startApnsSimulator({
    keys: keys.map((k) => ({ keyId: k.keyId, teamId, publicKey: k.publicKeyPem })),
    topics: [topic],
  });
  const app = (i: number): AppInput => ({
    type: "apns",
    topic,
    teamId,
    keyId: keys[i]!.keyId,
    privateKeyPem: keys[i]!.privateKeyPem,
    endpoint: sim.url,
    requestTimeout: "10s",
  });
  const requests = () => sim.responses;
  const h: ApnsHarness = {
    sim,
    topic,
    appConfig: app(0),
    app,
    createSender: (name, app) => createProviderSender(name, app),
    script: (token, s) => sim.script(token, Array<ApnsScriptStep>(100).fill(STEP[s])),
    deliveries: (token, o) => {
      if (!o?.includeRejected) {
        return sim.deliveriesFor(token).map((d) => ({
          token,
          topic: d.headers["apns-topic"] ?? "",
          pushType: d.headers["apns-push-type"] ?? "",
          payload: JSON.stringify(d.payload),
          status: 200,
        }));
      }
      return requests()
        .filter((r) => r.token === token)
        .map((r) => ({ token, topic: "", pushType: "", payload: "", status: r.status }));
    },
    waitForDeliveries: async (token, n, o) => {
      if (!o?.includeRejected) await sim.waitForDeliveries(n, 30_000, token);
      else
        await until(
          () => h.deliveries(token, o).length >= n,
          `${n} answered requests for a token`,
          30_000,
        );
      return h.deliveries(token, o);
    },
    stop: () => sim.stop(),
  };
  return h;
}
