import { readFileSync } from "node:fs";
import { Command, CommanderError, InvalidArgumentError } from "commander";
// push registers its own subcommands (their actions need the engine anyway).
import { registerPushCommand } from "./commands/push.js";
import { makeContext, type CliContext } from "./context.js";
import { CliError, describeError, UsageError } from "./errors.js";

type ShareOptions = Parameters<typeof import("./commands/share.js").share>[2];

export const DEFAULT_DB = "./lichen-chat.db";

// Set by scripts/bundle.mjs in the bundle (dist/bundle/), which is not next to package.json.
declare const LICHEN_CHAT_VERSION: string | undefined;

/** The package version, for --version (package.json is one level above src/ and dist/ alike). */
const VERSION =
  typeof LICHEN_CHAT_VERSION === "string"
    ? LICHEN_CHAT_VERSION
    : (
        JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
          version: string;
        }
      ).version;

// Each command's module (and what only it uses) is loaded when that command runs: a process
// loads only its own path (the NSE, started per push, has a time and memory budget).
const commands = {
  account: () => import("./commands/account.js"),
  app: () => import("./commands/app.js"),
  background: () => import("./commands/background.js"),
  history: () => import("./commands/history.js"),
  login: () => import("./commands/login.js"),
  nse: () => import("./commands/nse.js"),
  nseExtension: () => import("./commands/nse-extension.js"),
  rooms: () => import("./commands/rooms.js"),
  send: () => import("./commands/send.js"),
  media: () => import("./commands/media.js"),
  share: () => import("./commands/share.js"),
};

function positiveInt(what: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n <= 0)
      throw new InvalidArgumentError(`${what} must be a positive integer.`);
    return n;
  };
}

export function buildProgram(): Command {
  const program = new Command("lichen-chat")
    .description(
      "A small XMPP chat client that is honest about the iOS process model: a main app (app, send), a notification service extension (nse) and a share extension (share) sharing one database.",
    )
    .option(
      "--db <path>",
      "database file; account settings live in <path>.account.json",
      DEFAULT_DB,
    )
    .option(
      "--account <jid>",
      "with several accounts: the one send, chats, tail and share use, and app sends from (default: the first, login's)",
    )
    .option("--verbose", "logs on stderr: readable lines on a terminal, JSON lines otherwise")
    .version(VERSION, "-V, --version", "print the version")
    .exitOverride()
    .configureOutput({
      outputError: (str, write) => write(`lichen-chat: ${str.replace(/^error: /, "")}`),
    });

  const context = (): CliContext =>
    makeContext(program.opts<{ db: string; verbose?: boolean; account?: string }>());

  program
    .command("login")
    .description(
      "store the account, connect once (log in, or resume the stored stream) and suspend the stream so the next process can resume it",
    )
    .requiredOption("--jid <jid>", "bare JID, e.g. alice@localhost")
    .requiredOption(
      "--password <password>",
      "account password (stored in <db>.account.json, mode 0600)",
    )
    .option("--service <url>", "server address, xmpp://HOST:PORT (default: xmpp://<domain>:5222)")
    .option("--resource <resource>", "resource to bind (default: the server picks)")
    .action((opts: { jid: string; password: string; service?: string; resource?: string }) =>
      commands.login().then((c) => c.login(context(), opts)),
    );

  const account = program
    .command("account")
    .description(
      "several accounts in one database: app and nse drive all of them; send, chats, tail and share use the first (login's)",
    );
  account
    .command("add")
    .description(
      "add an account to a database that has one (login first): connect once, store it, suspend the stream",
    )
    .requiredOption("--jid <jid>", "bare JID, e.g. dave@example.org")
    .requiredOption(
      "--password <password>",
      "account password (stored in <db>.account.json, mode 0600)",
    )
    .option("--service <url>", "server address, xmpp://HOST:PORT (default: xmpp://<domain>:5222)")
    .option("--resource <resource>", "resource to bind (default: the server picks)")
    .action((opts: { jid: string; password: string; service?: string; resource?: string }) =>
      commands.account().then((c) => c.accountAdd(context(), opts)),
    );
  account
    .command("list")
    .description("list the accounts of the database (no network)")
    .option("--json", "print JSON")
    .action((opts: { json?: boolean }) =>
      commands.account().then((c) => c.accountList(context(), opts)),
    );

  program
    .command("send")
    .description(
      "send one message as the main app (foreground, wait for the server's ack, background); prints its origin-id. With --file: upload the file (XEP-0363, progress on stderr) and send its URL",
    )
    .argument("<jid>", "bare JID of the contact")
    .argument("[text...]", "message text (not with --file)")
    .option(
      "--timeout-ms <ms>",
      "how long to wait for the server's ack (with --file: for the upload)",
      positiveInt("--timeout-ms"),
      30_000,
    )
    .option("--file <path>", "send a file: copied to <db>.attachments, uploaded, its URL sent")
    .option("--mime <type>", "MIME type of the file (default application/octet-stream)")
    .option("--caption <text>", "caption of an image (with --file)")
    .option("--aesgcm", "encrypt the file (XEP-0454 aesgcm:// URL; the service sees ciphertext)")
    .action(
      (
        jid: string,
        text: string[],
        opts: {
          timeoutMs: number;
          file?: string;
          mime?: string;
          caption?: string;
          aesgcm?: boolean;
        },
      ) => {
        if (opts.file === undefined) {
          if (opts.mime || opts.caption || opts.aesgcm)
            throw new UsageError("--mime, --caption and --aesgcm only go with --file");
          return commands.send().then((c) => c.send(context(), jid, text, opts));
        }
        if (text.length > 0) throw new UsageError("give either a text or --file, not both");
        return commands
          .media()
          .then((c) => c.sendFile(context(), jid, { ...opts, file: opts.file! }));
      },
    );

  program
    .command("download")
    .description(
      "download the file of a received message (id from tail --json) into <db>.attachments/in/; progress on stderr, prints the path (HTTP only, no XMPP)",
    )
    .argument("<message-id>", "the message's row id")
    .option("--max-bytes <n>", "refuse larger files", positiveInt("--max-bytes"), 100 * 1024 * 1024)
    .option(
      "--accept <types>",
      "accepted content types, comma-separated (e.g. image/*,application/pdf)",
    )
    .action((id: string, opts: { maxBytes: number; accept?: string }) =>
      commands.media().then((c) => c.download(context(), id, opts)),
    );

  program
    .command("chats")
    .description("list chats with unread counts and last activity (database only, no network)")
    .option("--json", "print JSON")
    .action((opts: { json?: boolean }) => commands.history().then((c) => c.chats(context(), opts)));

  program
    .command("tail")
    .description("print the last messages of a chat (database only, no network)")
    .argument("<jid>", "bare JID of the chat")
    .option("-n, --lines <count>", "number of messages", positiveInt("--lines"), 20)
    .option("--json", "print JSON")
    .action((jid: string, opts: { lines: number; json?: boolean }) =>
      commands.history().then((c) => c.tail(context(), jid, opts)),
    );

  program
    .command("rooms")
    .description("list group chats: status, nick, occupants, subject (database only, no network)")
    .option("--json", "print JSON (with the occupants)")
    .action((opts: { json?: boolean }) => commands.rooms().then((c) => c.rooms(context(), opts)));

  program
    .command("join")
    .description(
      "join a group chat as the main app (bookmarked with autojoin, re-joined on every new stream); waits for the room's answer",
    )
    .argument("<room>", "bare JID of the room, e.g. lounge@conference.example.org")
    .option("--nick <nick>", "nickname in the room (default: the account's local part)")
    .option(
      "--timeout-ms <ms>",
      "how long to wait for the room",
      positiveInt("--timeout-ms"),
      30_000,
    )
    .action((room: string, opts: { nick?: string; timeoutMs: number }) =>
      commands.rooms().then((c) => c.join(context(), room, opts)),
    );

  const invitations = program
    .command("invitations")
    .description(
      "list pending room invitations (XEP-0249 direct, XEP-0045 mediated; database only, no network)",
    )
    .option("--json", "print JSON")
    .action((opts: { json?: boolean }) =>
      commands.rooms().then((c) => c.invitations(context(), opts)),
    );
  invitations
    .command("accept")
    .description(
      "accept an invitation: join the room (its password, if any, is used) and wait for its answer",
    )
    .argument("<room>", "bare JID of the room")
    .option("--nick <nick>", "nickname in the room (default: the account's local part)")
    .option(
      "--timeout-ms <ms>",
      "how long to wait for the room",
      positiveInt("--timeout-ms"),
      30_000,
    )
    .action((room: string, opts: { nick?: string; timeoutMs: number }) =>
      commands.rooms().then((c) => c.acceptInvitationCommand(context(), room, opts)),
    );
  invitations
    .command("decline")
    .description("decline an invitation (a mediated one is declined through the room)")
    .argument("<room>", "bare JID of the room")
    .option("--reason <text>", "why (sent with a mediated decline)")
    .action((room: string, opts: { reason?: string }) =>
      commands.rooms().then((c) => c.declineInvitationCommand(context(), room, opts)),
    );

  program
    .command("leave")
    .description("leave a group chat (autojoin off in its bookmark; its messages stay)")
    .argument("<room>", "bare JID of the room")
    .action((room: string) => commands.rooms().then((c) => c.leave(context(), room)));

  program
    .command("app")
    .description(
      "interactive main app: prints messages as they are stored, sends stdin lines (/to JID, /bg, /fg, /quit, /help), sends the share outbox",
    )
    .option("--to <jid>", "start chatting with this contact")
    .option("--json", "print messages as JSON lines")
    .action((opts: { to?: string; json?: boolean }) =>
      commands.app().then((c) => c.app(context(), opts)),
    );

  program
    .command("nse")
    .description(
      "notification service extension: handle one push — sync every account at once (resume or log in + MAM) — and print the push's one notification and a summary as JSON; while one lingers, a second nse hands its push to it (outcome handed-over)",
    )
    .option(
      "--deadline-ms <ms>",
      "disconnect this long after start at the latest",
      positiveInt("--deadline-ms"),
      25_000,
    )
    .option(
      "--linger-ms <ms>",
      "wait this long for another push after syncing",
      nonNegativeInt,
      1500,
    )
    .option(
      "--stdin",
      "stay one process for further pushes: each stdin line is a push id (iOS calling didReceive again); one JSON line per push on stdout",
    )
    .option("--push-id <id>", "the first push's id in --stdin output", "first")
    .option(
      "--sync-warning-delay-ms <ms>",
      'delay of the "could not synchronize" notification scheduled when the NSE cannot finish',
      positiveInt("--sync-warning-delay-ms"),
      60_000,
    )
    .action(
      (opts: {
        deadlineMs: number;
        lingerMs: number;
        stdin?: boolean;
        pushId: string;
        syncWarningDelayMs: number;
      }) =>
        opts.stdin
          ? commands.nseExtension().then((c) => c.nseExtension(context(), opts))
          : commands.nse().then((c) => c.nse(context(), opts)),
    );

  program
    .command("background")
    .description(
      "the main app woken in the background (silent push, background task): resume, sync, send what is unsent, suspend before the deadline; prints the result as JSON",
    )
    .option(
      "--deadline-ms <ms>",
      "the OS's budget (30000 for a silent push, up to 300000 for a background task)",
      positiveInt("--deadline-ms"),
      30_000,
    )
    .action((opts: { deadlineMs: number }) =>
      commands.background().then((c) => c.background(context(), opts)),
    );

  program
    .command("share")
    .description(
      "share extension: queue a text, link, location or file for the main app to send; never connects; prints the outbox item",
    )
    .argument("<jid>", "bare JID of the recipient")
    .option("--text <text>", "share a text")
    .option("--url <url>", "share a link")
    .option("--title <title>", "title of the link (with --url)")
    .option("--geo <lat,lon>", "share a location, e.g. 48.85,2.35")
    .option("--file <path>", "share a file (copied to <db>.attachments)")
    .option("--mime <type>", "MIME type of the file (with --file)")
    .option("--caption <text>", "caption of an image (with --file and an image/* type)")
    .option("--contact <name>", "share a contact by its display name")
    .option("--contact-jid <jid>", "the contact's XMPP address (with --contact)")
    .option("--vcard <path>", "the contact's vCard file, sent as a .vcf file (with --contact)")
    .action((jid: string, opts: ShareOptions) =>
      commands.share().then((c) => c.share(context(), jid, opts)),
    );

  registerPushCommand(program, context);

  return program;
}

function nonNegativeInt(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError("must be a non-negative integer.");
  return Number(value);
}

/**
 * Runs the CLI; returns the exit code: 0 ok (and --help), 2 bad usage, 1 anything else
 * (bad config, unreachable server, ...), always with one clear line on stderr.
 */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander already printed its message (or the help).
      if (err.code === "commander.helpDisplayed" || err.code === "commander.version") return 0;
      if (err.code === "commander.help") return 0;
      return err.exitCode === 0 ? 0 : 2;
    }
    process.stderr.write(`lichen-chat: ${describeError(err)}\n`);
    if (!(err instanceof CliError) && program.opts<{ verbose?: boolean }>().verbose)
      process.stderr.write(`${(err as Error).stack ?? ""}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
}
