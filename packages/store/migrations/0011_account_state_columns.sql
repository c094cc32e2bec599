ALTER TABLE `account_state` ADD `sm_inbound_h` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `account_state` ADD `sm_outbound_sent` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `account_state` ADD `sm_outbound_acked` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `account_state` ADD `mam_synced_at` integer;--> statement-breakpoint
ALTER TABLE `account_state` ADD `mam_last_stanza_id` text;--> statement-breakpoint
ALTER TABLE `account_state` ADD `mam_last_timestamp` integer;--> statement-breakpoint
-- Hand-written: move the per-stanza fields out of the JSON blob into the columns above. A value of
-- the wrong JSON type is kept as is or as text ('true', an object's JSON), a missing or null
-- counter becomes -1, so loading still finds the counters corrupt (and opens a MAM gap) as it did
-- before the move; a blob that is not JSON is left alone (loading quarantines it).
UPDATE `account_state` SET
	`sm_inbound_h` = coalesce(CASE json_type(`state`, '$.sm.inboundH') WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE json_extract(`state`, '$.sm.inboundH') END, -1),
	`sm_outbound_sent` = coalesce(CASE json_type(`state`, '$.sm.outboundSent') WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE json_extract(`state`, '$.sm.outboundSent') END, -1),
	`sm_outbound_acked` = coalesce(CASE json_type(`state`, '$.sm.outboundAcked') WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE json_extract(`state`, '$.sm.outboundAcked') END, -1),
	`mam_synced_at` = CASE json_type(`state`, '$.mam.syncedAt') WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE json_extract(`state`, '$.mam.syncedAt') END,
	`mam_last_stanza_id` = CASE json_type(`state`, '$.mam.lastStanzaId') WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE json_extract(`state`, '$.mam.lastStanzaId') END,
	`mam_last_timestamp` = CASE json_type(`state`, '$.mam.lastTimestamp') WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE json_extract(`state`, '$.mam.lastTimestamp') END,
	`state` = json_remove(`state`, '$.sm.inboundH', '$.sm.outboundSent', '$.sm.outboundAcked', '$.mam.syncedAt', '$.mam.lastStanzaId', '$.mam.lastTimestamp')
WHERE json_valid(`state`);
