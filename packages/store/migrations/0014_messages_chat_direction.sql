DROP INDEX `messages_chat`;--> statement-breakpoint
CREATE INDEX `messages_chat` ON `messages` (`account_id`,`chat_jid`,`id`,`direction`);