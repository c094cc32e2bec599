-- lichen-push on Prosody 0.12 (mod_cloud_notify from prosody-modules; Debian: prosody-modules).
-- The tests' own Prosody runs this file (packages/appserver/test/e2e-*.test.ts), so it is known to
-- work. Replace push.example.org and change-me, and mind the global settings below.
--
-- In the global section (before any VirtualHost):
--   modules_enabled = { ...; "smacks"; "cloud_notify"; }
--   push_notification_with_body = false    -- lichen-push never needs the message text
--   push_notification_with_sender = false  -- nor the sender
--   component_ports = { 5347 }
--   component_interface = "127.0.0.1"      -- the component link is plaintext: keep it local
--
-- The component lichen-push connects to (XEP-0114); clients enable push with
-- <enable xmlns='urn:xmpp:push:0' jid='push.example.org' node='DEVICE_TOKEN'/>.
Component "push.example.org"
  component_secret = "change-me"
