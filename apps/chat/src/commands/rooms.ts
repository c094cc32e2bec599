// Group chats (XEP-0045) as the main app: join and leave (foreground, act, background: the stream
// stays resumable, so pushes for the room reach the NSE), and the room list from the database.
import {
  AppController,
  acceptInvitation,
  declineInvitation,
  joinRoom,
  leaveRoom,
  type DurableSession,
  type RoomLeftEvent,
} from "@lichen/engine";
import { listRoomInvitations, listRooms } from "@lichen/store";
import { type CliContext, foregroundOrExplain, openAccount } from "../context.js";
import { CliError } from "../errors.js";
import { table } from "../format.js";
import { parseBareJid } from "../settings.js";

function roomJid(room: string): string {
  const { local, domain } = parseBareJid(room);
  return `${local}@${domain}`;
}

/** Runs `start` (which sends the join) and waits for the room's answer: joined, or an error. */
async function joinAndWait(
  ctx: CliContext,
  session: DurableSession,
  jid: string,
  timeoutMs: number,
  start: () => void,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const outcome = new Promise<string>((resolve, reject) => {
    session.on("room-joined", (r) => {
      if (r === jid) resolve(r);
    });
    session.on("room-left", (e: RoomLeftEvent) => {
      if (e.room === jid) reject(new CliError(`${jid} refused the join: ${e.detail ?? e.reason}`));
    });
    session.on("room-nick-conflict", (e) => {
      if (e.room === jid) ctx.status(`nick ${e.tried} is taken in ${jid}: trying ${e.next}`);
    });
    timer = setTimeout(
      () => reject(new CliError(`${jid} did not answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  start();
  try {
    await outcome;
  } finally {
    clearTimeout(timer);
  }
}

/** Joins a room (bookmarked with autojoin) and waits for the room's answer; prints the nick. */
export async function join(
  ctx: CliContext,
  room: string,
  opts: { nick?: string; timeoutMs: number },
): Promise<void> {
  const jid = roomJid(room);
  const { settings, store, config } = openAccount(ctx, "main");
  const app = new AppController(store, config);
  try {
    await foregroundOrExplain(app, settings);
    const session = app.session!;
    const nick = opts.nick ?? settings.jid.split("@")[0]!;
    await joinAndWait(ctx, session, jid, opts.timeoutMs, () =>
      session.write((c) => joinRoom(c, jid, nick)),
    );
    const joined = listRooms(store, settings.accountId).find((r) => r.jid === jid);
    ctx.out(`joined ${jid} as ${joined?.nick ?? nick}`);
  } finally {
    await app.close();
    store.close();
  }
}

/** Pending room invitations (database only). */
export function invitations(ctx: CliContext, opts: { json?: boolean }): void {
  const { settings, store } = openAccount(ctx, "main");
  try {
    const list = listRoomInvitations(store, settings.accountId);
    if (opts.json) return ctx.out(JSON.stringify(list, null, 2));
    if (list.length === 0) return ctx.out("no invitations");
    ctx.out(
      table([
        ["ROOM", "FROM", "KIND", "RECEIVED", "REASON"],
        ...list.map((i) => [
          i.room,
          i.from,
          i.kind,
          new Date(i.receivedAt).toISOString(),
          i.reason ?? "",
        ]),
      ]),
    );
  } finally {
    store.close();
  }
}

/** The stored invitation to `jid`, or a clear error (before going online). */
function pendingInvitation(
  store: Parameters<typeof listRoomInvitations>[0],
  accountId: string,
  jid: string,
) {
  const inv = listRoomInvitations(store, accountId).find((i) => i.room === jid);
  if (!inv) throw new CliError(`no invitation to ${jid} (lichen-chat invitations lists them)`);
  return inv;
}

/** Accepts an invitation: joins the room (with its password, if any) and waits for the answer. */
export async function acceptInvitationCommand(
  ctx: CliContext,
  room: string,
  opts: { nick?: string; timeoutMs: number },
): Promise<void> {
  const jid = roomJid(room);
  const { settings, store, config } = openAccount(ctx, "main");
  const app = new AppController(store, config);
  try {
    pendingInvitation(store, settings.accountId, jid);
    await foregroundOrExplain(app, settings);
    const session = app.session!;
    const nick = opts.nick ?? settings.jid.split("@")[0]!;
    await joinAndWait(ctx, session, jid, opts.timeoutMs, () => {
      // Another process may have taken it meanwhile: then there is nothing to join.
      if (!session.write((c) => acceptInvitation(c, jid, nick)))
        throw new CliError(`no invitation to ${jid} any more`);
    });
    const joined = listRooms(store, settings.accountId).find((r) => r.jid === jid);
    ctx.out(`joined ${jid} as ${joined?.nick ?? nick}`);
  } finally {
    await app.close();
    store.close();
  }
}

/** Declines an invitation (a mediated one through the room, so the inviter learns it). */
export async function declineInvitationCommand(
  ctx: CliContext,
  room: string,
  opts: { reason?: string },
): Promise<void> {
  const jid = roomJid(room);
  const { settings, store, config } = openAccount(ctx, "main");
  const app = new AppController(store, config);
  try {
    pendingInvitation(store, settings.accountId, jid);
    await foregroundOrExplain(app, settings);
    const session = app.session!;
    if (!session.write((c) => declineInvitation(c, jid, opts.reason)))
      throw new CliError(`no invitation to ${jid} any more`);
    await session.syncBarrier(); // the decline reached the server
    ctx.out(`declined ${jid}`);
  } finally {
    await app.close();
    store.close();
  }
}

/** Leaves a room (autojoin off in its bookmark); its messages stay. */
export async function leave(ctx: CliContext, room: string): Promise<void> {
  const jid = roomJid(room);
  const { settings, store, config } = openAccount(ctx, "main");
  const known = listRooms(store, settings.accountId).find((r) => r.jid === jid);
  if (!known?.nick) {
    store.close();
    throw new CliError(`not in ${jid}: nothing to leave`);
  }
  const app = new AppController(store, config);
  try {
    await foregroundOrExplain(app, settings);
    app.session!.write((c) => leaveRoom(c, jid));
    await app.session!.syncBarrier(); // the server has our unavailable presence
    ctx.out(`left ${jid}`);
  } finally {
    await app.close();
    store.close();
  }
}

/** The account's rooms: status, our nick, occupants, subject (database only). */
export function rooms(ctx: CliContext, opts: { json?: boolean }): void {
  const { settings, store } = openAccount(ctx, "main");
  try {
    const list = listRooms(store, settings.accountId);
    if (opts.json) return ctx.out(JSON.stringify(list, null, 2));
    if (list.length === 0) return ctx.out("no rooms (lichen-chat join <room>)");
    ctx.out(
      table([
        ["ROOM", "STATUS", "NICK", "OCCUPANTS", "SUBJECT"],
        ...list.map((r) => [
          r.jid,
          r.status ?? "-",
          r.nick ?? "-",
          String(r.occupants.length),
          r.subject ?? "",
        ]),
      ]),
    );
  } finally {
    store.close();
  }
}
