// xmpp.js ships no types; the tests only need a few calls.
declare module "@xmpp/component";
