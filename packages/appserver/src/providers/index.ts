import { ApnsProvider } from "./apns.js";
import { FcmProvider } from "./fcm.js";
import type { ProviderAppConfig, ProviderOptions, PushProvider } from "./types.js";

export type * from "./types.js";
export { ApnsProvider, apnsPayload, classifyApns } from "./apns.js";
export { ApnsProviderToken } from "./apns-jwt.js";
export { FcmProvider, classifyFcm, fcmMessage } from "./fcm.js";

/** The provider of one configured app (APNs over HTTP/2 or FCM v1). */
export function createProvider(app: ProviderAppConfig, opts: ProviderOptions = {}): PushProvider {
  switch (app.type) {
    case "apns":
      return new ApnsProvider(app, opts);
    case "fcm":
      return new FcmProvider(app, opts);
    default:
      throw new Error(
        `app "${(app as { name?: string }).name}": unknown provider type "${(app as { type?: string }).type}"`,
      );
  }
}
