#!/usr/bin/env node
/**
 * lichen-store: look inside a Lichen database.
 *   lichen-store --db ~/lichen.db accounts
 *   LICHEN_DB=~/lichen.db lichen-store messages --tail 20 --json
 */
import fs from "node:fs";
import { Command, CommanderError } from "commander";
import {
  DatabaseCorruptError,
  migrationStatus,
  openStore,
  readDamageMarker,
  recoverDatabase,
  type Store,
} from "@lichen/store";
import {
  accountState,
  accounts,
  chatList,
  exportAll,
  handlers,
  integrity,
  ipc,
  locks,
  messages,
  openForInspection,
  outbox,
  quarantined,
  queue,
  rosterList,
  unopenableReport,
  type IntegrityReport,
} from "./inspect.js";
import { table, time } from "./format.js";

interface GlobalOptions {
  db?: string;
  json?: boolean;
}

/** The package version, for --version (package.json is one level above src/ and dist/ alike). */
const VERSION = (
  JSON.parse(fs.readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
    version: string;
  }
).version;

/** Thrown for problems found (integrity) or missing things (unknown account): exit code 1. */
class Finding extends Error {}

/** Bad input to a command (the output of recover exists, ...): exit code 2 like usage errors. */
class BadInput extends Error {}

function dbPath(program: Command): string {
  const opts = program.opts<GlobalOptions>();
  const p = opts.db ?? process.env.LICHEN_DB;
  if (!p) throw new Error("no database given: use --db PATH or set LICHEN_DB");
  return p;
}

function print(text: string): void {
  process.stdout.write(text.endsWith("\n") ? text : text + "\n");
}

export function buildProgram(): Command {
  const program = new Command("lichen-store")
    .description(
      "Look inside a Lichen database: accounts and their stream-management state, unacked queue, pending IQ handlers, lock, IPC, messages, outbox; check integrity; export; migrate.",
    )
    .option("--db <path>", "database file (default: $LICHEN_DB)")
    .option("--json", "print JSON instead of tables (for scripts)")
    .version(VERSION, "-V, --version", "print the version")
    .configureOutput({
      outputError: (str, write) => write(`lichen-store: ${str.replace(/^error: /, "")}`),
    })
    .showHelpAfterError()
    .exitOverride();

  const run = (fn: (store: Store, json: boolean, now: number) => void) => () => {
    const store = openForInspection(dbPath(program));
    try {
      fn(store, program.opts<GlobalOptions>().json === true, Date.now());
    } finally {
      store.close();
    }
  };
  const out = (json: boolean, rows: Record<string, unknown>[], render: () => string) =>
    print(json ? JSON.stringify(rows, null, 2) : render());

  program
    .command("accounts")
    .description(
      "accounts with their stream-management state (stream id, h counters, unacked stanzas)",
    )
    .action(
      run((store, json, now) =>
        out(json, accounts(store), () =>
          table(accounts(store), [
            { key: "id" },
            { key: "jid" },
            { key: "enabled" },
            { key: "streamId", title: "stream", max: 16 },
            { key: "inboundH", title: "in h" },
            { key: "outboundSent", title: "out sent" },
            { key: "outboundAcked", title: "out acked" },
            { key: "unacked" },
            { key: "stateOk", title: "state ok" },
            { key: "invalidatedAt", title: "invalidated", format: time(now) },
            { key: "updatedAt", title: "updated", format: time(now) },
          ]),
        ),
      ),
    );

  program
    .command("state <account>")
    .description("the stored account state (JSON), with validation result")
    .action((account: string) =>
      run((store, json, now) => {
        const view = accountState(store, account);
        if (!view) throw new Finding(`no stored state for account "${account}"`);
        if (json) print(JSON.stringify(view, null, 2));
        else {
          print(
            [
              `account:     ${view.accountId}`,
              `version:     ${view.version}`,
              `updated:     ${time(now)(view.updatedAt)}`,
              `invalidated: ${time(now)(view.invalidatedAt)}`,
              `valid:       ${view.problem ? `NO — ${view.problem}` : "yes"}`,
              "",
              view.state === null ? view.raw : JSON.stringify(view.state, null, 2),
            ].join("\n"),
          );
        }
        if (view.problem)
          throw new Finding(`account state of "${account}" is invalid: ${view.problem}`);
      })(),
    );

  program
    .command("queue")
    .description("XEP-0198 unacked outbound queue")
    .option("--account <id>", "only this account")
    .action((o: { account?: string }) =>
      run((store, json, now) => {
        const rows = queue(store, o.account);
        out(json, rows, () =>
          table(rows, [
            { key: "account" },
            { key: "stream" },
            { key: "seq" },
            { key: "important" },
            { key: "createdAt", title: "queued", format: time(now) },
            { key: "stanza", max: 70 },
          ]),
        );
      })(),
    );

  program
    .command("handlers")
    .description("pending IQ handlers and idle timers (timeouts in ticks of connected time)")
    .action(
      run((store, json, now) => {
        const rows = handlers(store);
        out(json, rows, () =>
          table(rows, [
            { key: "kind" },
            { key: "account" },
            { key: "id" },
            { key: "handler" },
            { key: "invalidation" },
            { key: "ticks", title: "ticks left" },
            { key: "peer", title: "answer from" },
            { key: "stream" },
            { key: "invalidatedAt", title: "invalidated", format: time(now) },
            { key: "createdAt", title: "created", format: time(now) },
          ]),
        );
      }),
    );

  program
    .command("lock")
    .description("process lock holders, leases and generations")
    .action(
      run((store, json, now) => {
        const rows = locks(store, now);
        out(json, rows, () =>
          table(rows, [
            { key: "key" },
            { key: "holder" },
            { key: "status" },
            { key: "leaseExpiresAt", title: "lease until", format: time(now) },
            { key: "generation" },
            { key: "acquiredAt", title: "acquired", format: time(now) },
          ]),
        );
      }),
    );

  program
    .command("ipc")
    .description("pending IPC messages")
    .action(
      run((store, json, now) => {
        const rows = ipc(store);
        out(json, rows, () =>
          table(rows, [
            { key: "seq" },
            { key: "type" },
            { key: "source", title: "from" },
            { key: "destination", title: "to" },
            { key: "responseTo", title: "answers", max: 12 },
            { key: "deliveredTo", title: "delivered to" },
            { key: "expiresAt", title: "expires", format: time(now) },
            { key: "data", max: 50 },
            { key: "id", max: 12 },
          ]),
        );
      }),
    );

  program
    .command("chats")
    .description("chats with unread counts, last activity and last message (the SDK's read API)")
    .option("--account <id>", "only this account")
    .action((o: { account?: string }) =>
      run((store, json, now) => {
        const rows = chatList(store, o.account ? { accountId: o.account } : {});
        out(json, rows, () =>
          table(rows, [
            { key: "account" },
            { key: "chat" },
            { key: "kind" },
            { key: "unread" },
            { key: "lastActivityAt", title: "last activity", format: time(now) },
            { key: "lastMessage", title: "last message", max: 50 },
          ]),
        );
      })(),
    );

  program
    .command("roster")
    .description("the stored roster with subscription states (the SDK's read API)")
    .option("--account <id>", "only this account")
    .action(async (o: { account?: string }) => {
      const store = openForInspection(dbPath(program));
      try {
        const rows = await rosterList(store, o.account ? { accountId: o.account } : {});
        out(program.opts<GlobalOptions>().json === true, rows, () =>
          table(
            rows.map((r) => ({ ...r, groups: (r.groups as string[]).join(", ") })),
            [
              { key: "account" },
              { key: "jid" },
              { key: "name" },
              { key: "subscription" },
              { key: "ask" },
              { key: "approved" },
              { key: "groups", max: 40 },
            ],
          ),
        );
      } finally {
        store.close();
      }
    });

  program
    .command("messages")
    .description("the newest stored messages, oldest first, in time order (the SDK's read API)")
    .option("--tail <n>", "how many", "20")
    .option("--account <id>", "only this account")
    .option("--chat <jid>", "only this chat")
    .action((o: { tail: string; account?: string; chat?: string }) =>
      run((store, json, now) => {
        const tail = Number(o.tail);
        if (!Number.isInteger(tail) || tail < 1)
          throw new Error(`--tail must be a positive integer, got "${o.tail}"`);
        const rows = messages(store, {
          tail,
          ...(o.account ? { accountId: o.account } : {}),
          ...(o.chat ? { chat: o.chat } : {}),
        });
        out(json, rows, () =>
          table(rows, [
            { key: "id" },
            { key: "sentAt", title: "sent", format: time(now) },
            { key: "account" },
            { key: "chat" },
            { key: "direction", title: "dir" },
            { key: "from", max: 30 },
            { key: "state" },
            { key: "body", max: 60 },
          ]),
        );
      })(),
    );

  program
    .command("outbox")
    .description("share-extension outbox")
    .action(
      run((store, json, now) => {
        const rows = outbox(store);
        out(json, rows, () =>
          table(rows, [
            { key: "id" },
            { key: "account" },
            { key: "to" },
            { key: "kind" },
            { key: "state" },
            { key: "error", max: 40 },
            { key: "createdAt", title: "created", format: time(now) },
          ]),
        );
      }),
    );

  program
    .command("quarantine")
    .description("rows set aside because they failed validation (kept verbatim, with the error)")
    .action(
      run((store, json, now) => {
        const rows = quarantined(store);
        out(json, rows, () =>
          table(rows, [
            { key: "id" },
            { key: "table" },
            { key: "row", max: 30 },
            { key: "at", format: time(now) },
            { key: "error", max: 70 },
            { key: "raw", max: 40 },
          ]),
        );
      }),
    );

  program
    .command("integrity")
    .description(
      "PRAGMA integrity_check (damage named by table, index and page), foreign keys, migrations and schema validation of every JSON column (exit 1 on problems)",
    )
    .action(() => {
      const path = dbPath(program);
      const json = program.opts<GlobalOptions>().json === true;
      let report: IntegrityReport;
      let store: Store | null = null;
      const marker = readDamageMarker(path);
      try {
        store = openForInspection(path);
      } catch (e) {
        // A header SQLite cannot open at all is a finding too, reported like the others.
        if (!(e instanceof DatabaseCorruptError)) throw e;
        report = unopenableReport(path, e, marker);
      }
      try {
        if (store) report = integrity(store, marker);
      } finally {
        store?.close();
      }
      printIntegrity(report!, json);
      if (!report!.ok) {
        const hint = report!.damage
          ? `; copy out what is readable: lichen-store recover ${path} <new-file>`
          : "";
        throw new Finding(`${report!.problems.length} problem(s) found${hint}`);
      }
    });

  program
    .command("recover <damaged> <output>")
    .description(
      "copy every readable row of a damaged database into a new, migrated database (table by table, skipping unreadable pages); the damaged file is only read. Exit 0 when the copy is sound (rows may still be lost: see the report), 1 when it is not",
    )
    .action((damaged: string, output: string) => {
      if (!fs.existsSync(damaged)) throw new BadInput(`no database at ${damaged}`);
      if (fs.existsSync(output))
        throw new BadInput(
          `${output} already exists: recover writes a new file, choose another name`,
        );
      const report = recoverDatabase(damaged, output);
      if (program.opts<GlobalOptions>().json) print(JSON.stringify(report, null, 2));
      else {
        const rows = report.tables
          .filter((t) => t.copied > 0 || t.lost !== 0 || t.orphaned > 0 || t.errors.length > 0)
          .map((t) => ({
            table: t.table,
            copied: t.copied,
            lost: t.lost === null ? "unknown" : t.lost,
            orphaned: t.orphaned,
            detached: t.fromDetachedPages,
            skipped: t.skippedRowids
              .map(([a, b]) => (a === b ? `${a}` : `${end(a)}..${end(b)}`))
              .join(", "),
          }));
        print(
          [
            `${output}: ${report.copied} row(s) copied, ${report.lost} lost${report.headerRebuilt ? ` (header rebuilt, page size ${report.pageSize})` : ""}`,
            "",
            table(rows, [
              { key: "table" },
              { key: "copied" },
              { key: "lost" },
              { key: "orphaned" },
              { key: "detached", title: "from detached pages" },
              { key: "skipped", title: "unreadable rowids" },
            ]),
            "",
            report.ok
              ? "the copy passes integrity_check and foreign_key_check; to use it, stop every process " +
                `using ${damaged}, move ${damaged}, ${damaged}-wal and ${damaged}-shm aside, then move ${output} to ${damaged}`
              : "THE COPY DOES NOT PASS integrity_check: do not use it",
          ].join("\n"),
        );
      }
      if (!report.ok) throw new Finding(`${output} failed its integrity check`);
    });

  program
    .command("export")
    .description("every table with every row as JSON")
    .option("--json", "JSON output (the only format; accepted for clarity)")
    .option("--out <file>", "write to a file instead of stdout")
    .action((o: { out?: string }) =>
      run((store) => {
        const text = JSON.stringify({ exportedAt: Date.now(), tables: exportAll(store) }, null, 2);
        if (o.out) fs.writeFileSync(o.out, text + "\n");
        else print(text);
      })(),
    );

  program
    .command("migrate")
    .description(
      "create the database if needed and apply pending migrations (as the main app would)",
    )
    .action(() => {
      const path = dbPath(program);
      const events: { event: string; applied?: number }[] = [];
      const store = openStore({ path, role: "main", logger: (e) => events.push(e) });
      try {
        const applied = events.find((e) => e.event === "store.migrated")?.applied ?? 0;
        const status = migrationStatus(store.sqlite);
        const result = { path, applied, total: status.applied, bundled: status.bundled };
        print(
          program.opts<GlobalOptions>().json
            ? JSON.stringify(result)
            : `${path}: applied ${applied} migration(s); ${status.applied} of ${status.bundled} now applied`,
        );
      } finally {
        store.close();
      }
    });

  return program;
}

/** A rowid range end: the search bounds read as "min"/"max". */
function end(rowid: number): string {
  if (rowid <= Number.MIN_SAFE_INTEGER) return "min";
  if (rowid >= Number.MAX_SAFE_INTEGER) return "max";
  return String(rowid);
}

function printIntegrity(report: IntegrityReport, json: boolean): void {
  if (json) return print(JSON.stringify(report, null, 2));
  const damaged = report.damage;
  print(
    [
      `sqlite integrity_check: ${report.sqlite.join("; ")}`,
      ...(damaged
        ? [
            `damaged tables: ${damaged.tables.join(", ") || "(not known)"}` +
              (damaged.indexes.length ? `; indexes: ${damaged.indexes.join(", ")}` : "") +
              (damaged.pages.length ? `; pages: ${damaged.pages.join(", ")}` : ""),
          ]
        : []),
      `foreign key violations: ${report.foreignKeys}`,
      `migrations: ${report.migrations.applied} applied of ${report.migrations.bundled} bundled${report.migrations.pending ? ` (${report.migrations.pending} pending)` : ""}`,
      `JSON values checked: ${report.checkedJson}`,
      `quarantined rows: ${report.quarantined}${report.quarantined ? ' (see "quarantine")' : ""}`,
      "",
      report.ok
        ? "OK: no problems found"
        : table(report.problems as unknown as Record<string, unknown>[], [
            { key: "table" },
            { key: "row" },
            ...(damaged ? [{ key: "object", title: "b-tree" }, { key: "page" }] : []),
            { key: "problem" },
          ]),
    ].join("\n"),
  );
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and version are not errors; commander already printed its message.
      // Anything else commander throws is a usage error (a missing argument is its exit 1).
      return e.code === "commander.helpDisplayed" ||
        e.code === "commander.version" ||
        e.exitCode === 0
        ? 0
        : 2;
    }
    process.stderr.write(`lichen-store: ${(e as Error).message}\n`);
    // Damage met while inspecting is a finding about the file, like a failed integrity check.
    return e instanceof Finding || e instanceof DatabaseCorruptError ? 1 : 2;
  }
}

process.exitCode = await main(process.argv);
