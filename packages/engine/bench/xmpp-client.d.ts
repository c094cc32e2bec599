// @xmpp/client 0.14 ships no type declarations; the benchmark's peers and baseline use it untyped.
declare module "@xmpp/client";
