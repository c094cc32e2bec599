-- lichen-push on Prosody 0.12 (mod_cloud_notify from prosody-modules; Debian: prosody-modules).
-- Three parts, each to paste where its marker line says. The tests' own Prosody is configured with
-- exactly these lines (packages/appserver/test/e2e-*.test.ts; its own copies of them are left
-- out), so they are known to work. Replace push.example.org and change-me.

-- ==== Part 1 of 3: the global section (before any VirtualHost) ====
-- the port lichen-push connects to (XEP-0114); the link is plaintext: keep it on loopback
component_ports = { 5347 }
component_interface = "127.0.0.1"

-- ==== Part 2 of 3: under each VirtualHost whose users get push ====
-- A VirtualHost's modules_enabled adds to the global one; if yours has one, add these two to it.
-- smacks keeps a dropped client's session (hibernated), cloud_notify pushes for it and offline.
modules_enabled = { "smacks"; "cloud_notify" }
push_notification_with_body = false -- lichen-push never needs the message text
push_notification_with_sender = false -- nor the sender

-- ==== Part 3 of 3: a component section of its own (after the VirtualHosts) ====
-- Clients enable push with <enable xmlns='urn:xmpp:push:0' jid='push.example.org' node='TOKEN'/>.
Component "push.example.org"
  component_secret = "change-me"
