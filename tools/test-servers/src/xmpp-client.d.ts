// xmpp.js ships no types; the test peer only needs a few calls.
declare module "@xmpp/client";
