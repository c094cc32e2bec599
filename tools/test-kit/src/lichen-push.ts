/** One APNs app of a `lichen-push` configuration (see apps/push-server's README). */
export interface LichenPushApnsApp {
  topic: string;
  teamId: string;
  keyId: string;
  privateKeyFile: string;
  /** The APNs simulator's URL. */
  endpoint: string;
  /** "background": content-available pushes (no alert). */
  pushType?: "background";
}

/**
 * The `push.yaml` of a `lichen-push` daemon attached to a test server's component port, with
 * APNs apps pointing at the simulator — the one configuration the chat tests and the device
 * simulator's push chain both start the real daemon with.
 */
export function lichenPushConfig(o: {
  component: { port: number; domain: string; secret: string; reconnectInitialDelay?: string };
  apps: Record<string, LichenPushApnsApp>;
  dataDir: string;
  http: { host?: string; port: number };
  rateLimitWindow?: string;
}): string {
  const lines = [
    "component:",
    `  service: xmpp://127.0.0.1:${o.component.port}`,
    `  domain: ${o.component.domain}`,
    `  secret: ${o.component.secret}`,
    ...(o.component.reconnectInitialDelay
      ? [`  reconnectInitialDelay: ${o.component.reconnectInitialDelay}`]
      : []),
    "apps:",
  ];
  for (const [name, app] of Object.entries(o.apps)) {
    lines.push(
      `  ${name}:`,
      "    type: apns",
      `    topic: ${app.topic}`,
      `    teamId: ${app.teamId}`,
      `    keyId: ${app.keyId}`,
      `    privateKeyFile: ${app.privateKeyFile}`,
      `    endpoint: ${app.endpoint}`,
      ...(app.pushType ? [`    pushType: ${app.pushType}`] : []),
    );
  }
  lines.push(`dataDir: ${o.dataDir}`);
  if (o.rateLimitWindow) lines.push("rateLimit:", `  window: ${o.rateLimitWindow}`);
  lines.push(
    "http:",
    ...(o.http.host ? [`  host: ${o.http.host}`] : []),
    `  port: ${o.http.port}`,
    "",
  );
  return lines.join("\n");
}
