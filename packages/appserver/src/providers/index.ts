import type { ProviderAppConfig, ProviderOptions, PushProvider } from "./types.js";

export type * from "./types.js";

/** The provider of one configured app (APNs over HTTP/2 or FCM v1). */
export function createProvider(app: ProviderAppConfig, _opts: ProviderOptions = {}): PushProvider {
  throw new Error(`app "${app.name}": provider "${app.type}" not implemented yet`);
}
