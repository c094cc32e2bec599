// xmpp.js 0.14 ships no types; the test peers use @xmpp/client untyped. Referenced from the kit's
// index.d.ts, so every test program that imports the kit has it (no per-package copies).
declare module "@xmpp/client";
