import { ApnsProvider } from "./apns.js";
import type { ProviderAppConfig, ProviderOptions, PushProvider } from "./types.js";

export type * from "./types.js";
export { ApnsProvider, apnsPayload, classifyApns } from "./apns.js";
export { ApnsProviderToken } from "./apns-jwt.js";

/** The provider of one configured app (APNs over HTTP/2 or FCM v1). */
export function createProvider(app: ProviderAppConfig, opts: ProviderOptions = {}): PushProvider {
  if (app.type === "apns") return new ApnsProvider(app, opts);
  throw new Error(`app "${app.name}": provider "${app.type}" not implemented yet`);
}
