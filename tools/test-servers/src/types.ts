export interface XmppTestServer {
  readonly kind: "prosody" | "ejabberd";
  readonly host: "127.0.0.1";
  /** Users are user@localhost. */
  readonly domain: "localhost";
  /** Client port. Plain TCP is allowed; STARTTLS is offered only when started with `tls: true`. */
  readonly c2sPort: number;
  /** XEP-0114 component port. */
  readonly componentPort: number;
  readonly httpPort: number;
  /** The component's domain, default "push.localhost". */
  readonly componentDomain: string;
  readonly componentSecret: string;
  /** MUC service domain ("conference.localhost"). */
  readonly mucDomain: string;
  /** Self-signed certificate for localhost; pass as NODE_EXTRA_CA_CERTS to trust it. */
  readonly caCertPath: string;
  /** Fresh temporary directory of this instance. */
  readonly dataDir: string;
  /** PID of the server process (ejabberd: the Erlang VM). */
  readonly pid: number;
  registerUser(username: string, password: string): Promise<void>;
  /** The server's log so far (for assertions and failure messages). */
  logText(): Promise<string>;
  /** Stops and starts again on the same ports and data. */
  restart(): Promise<void>;
  /** Stops by PID, waits for exit, removes the data dir (unless KEEP_TEST_SERVERS=1). */
  stop(): Promise<void>;
}

export interface XmppServerOptions {
  componentDomain?: string;
  componentSecret?: string;
  /** Offer STARTTLS on c2s (clients must then trust `caCertPath`). Default false. */
  tls?: boolean;
  /**
   * Keep messages for offline users and deliver them at the next initial presence (Prosody's
   * mod_offline, ejabberd's mod_offline). Default true; false leaves the archive (MAM) as the
   * only copy, as on servers that keep no offline store.
   */
  offlineStorage?: boolean;
}

export interface ProsodyOptions extends XmppServerOptions {
  smacksHibernationSeconds?: number;
  /**
   * Enable Prosody's mod_bookmarks (XEP-0402 ⇄ XEP-0048 bridging; the account then advertises
   * `urn:xmpp:bookmarks:1#compat`). Debian's default configuration enables it; default false.
   */
  bookmarks?: boolean;
  /** mod_cloud_notify's push_max_errors (default 16). */
  pushMaxErrors?: number;
  /** Lua appended to the global section of the config. */
  extraConfig?: string;
  /**
   * An operator's push configuration (e.g. lichen-push's Prosody snippet, domain and secret
   * substituted), given the chosen component port: `global` goes into the global section,
   * `virtualHost` under VirtualHost "localhost", `component` replaces the default push component
   * section. The built-in push lines are then left out — "smacks" and "cloud_notify" in the global
   * modules_enabled, push_notification_with_body/sender, component_ports, component_interface —
   * so the server runs on the given configuration's lines alone.
   */
  pushConfig?: (componentPort: number) => {
    global: string;
    virtualHost: string;
    component: string;
  };
}

export interface EjabberdOptions extends XmppServerOptions {
  resumeTimeoutSeconds?: number;
  /**
   * YAML (given the chosen component port) written next to the config and included with
   * include_config_file; it provides the push component's ejabberd_service listener and
   * mod_push / mod_push_keepalive (e.g. an operator snippet), and the built-in ones are left out.
   */
  includeConfig?: (componentPort: number) => string;
}

export interface RedisTestServer {
  readonly host: "127.0.0.1";
  readonly port: number;
  readonly url: string;
  readonly pid: number;
  stop(): Promise<void>;
  /** Stops and starts again on the same port (data is not persisted). */
  restart(): Promise<void>;
}
