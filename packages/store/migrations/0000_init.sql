CREATE TABLE `account_state` (
	`account_id` text PRIMARY KEY NOT NULL,
	`state` text NOT NULL,
	`version` integer NOT NULL,
	`invalidated_at` integer,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `accounts` (
	`id` text PRIMARY KEY NOT NULL,
	`jid` text NOT NULL,
	`resource` text,
	`enabled` integer DEFAULT true NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `accounts_jid_unique` ON `accounts` (`jid`);--> statement-breakpoint
CREATE TABLE `attachments` (
	`id` text PRIMARY KEY NOT NULL,
	`account_id` text NOT NULL,
	`message_row_id` integer,
	`local_path` text NOT NULL,
	`mime_type` text NOT NULL,
	`size` integer NOT NULL,
	`upload_state` text DEFAULT 'pending' NOT NULL,
	`url` text,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`message_row_id`) REFERENCES `messages`(`id`) ON UPDATE no action ON DELETE set null
);
--> statement-breakpoint
CREATE INDEX `attachments_upload` ON `attachments` (`upload_state`);--> statement-breakpoint
CREATE TABLE `chats` (
	`account_id` text NOT NULL,
	`jid` text NOT NULL,
	`kind` text DEFAULT 'chat' NOT NULL,
	`name` text,
	`unread_count` integer DEFAULT 0 NOT NULL,
	`muted` integer DEFAULT false NOT NULL,
	`last_activity_at` integer,
	`created_at` integer NOT NULL,
	PRIMARY KEY(`account_id`, `jid`),
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `idle_timers` (
	`id` text PRIMARY KEY NOT NULL,
	`account_id` text NOT NULL,
	`handler` text NOT NULL,
	`remaining_ticks` integer NOT NULL,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `idle_timers_account` ON `idle_timers` (`account_id`);--> statement-breakpoint
CREATE TABLE `ipc_messages` (
	`seq` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`id` text NOT NULL,
	`name` text NOT NULL,
	`source` text NOT NULL,
	`destination` text NOT NULL,
	`data` text NOT NULL,
	`response_to` text,
	`created_at` integer NOT NULL,
	`expires_at` integer NOT NULL,
	`delivered_to` text DEFAULT ',' NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `ipc_messages_id_unique` ON `ipc_messages` (`id`);--> statement-breakpoint
CREATE INDEX `ipc_messages_destination` ON `ipc_messages` (`destination`,`seq`);--> statement-breakpoint
CREATE INDEX `ipc_messages_expires` ON `ipc_messages` (`expires_at`);--> statement-breakpoint
CREATE TABLE `iq_handlers` (
	`account_id` text NOT NULL,
	`iq_id` text NOT NULL,
	`handler` text NOT NULL,
	`stream_key` text,
	`invalidated_at` integer,
	`remaining_ticks` integer NOT NULL,
	`created_at` integer NOT NULL,
	PRIMARY KEY(`account_id`, `iq_id`),
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `mam_marks` (
	`account_id` text NOT NULL,
	`archive_jid` text NOT NULL,
	`last_archive_id` text,
	`last_timestamp` integer,
	`gap_open` integer DEFAULT false NOT NULL,
	`completed_at` integer,
	`updated_at` integer NOT NULL,
	PRIMARY KEY(`account_id`, `archive_jid`),
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `messages` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`account_id` text NOT NULL,
	`chat_jid` text NOT NULL,
	`direction` text NOT NULL,
	`from_jid` text NOT NULL,
	`to_jid` text,
	`type` text DEFAULT 'chat' NOT NULL,
	`message_id` text,
	`origin_id` text,
	`stanza_id` text,
	`stanza_id_by` text,
	`archive_id` text,
	`body` text,
	`encrypted` integer DEFAULT false NOT NULL,
	`delivery_state` text DEFAULT 'received' NOT NULL,
	`sent_at` integer NOT NULL,
	`stored_at` integer NOT NULL,
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `messages_stanza_id` ON `messages` (`account_id`,`stanza_id_by`,`stanza_id`);--> statement-breakpoint
CREATE UNIQUE INDEX `messages_origin_id` ON `messages` (`account_id`,`origin_id`,`from_jid`);--> statement-breakpoint
CREATE UNIQUE INDEX `messages_archive_id` ON `messages` (`account_id`,`archive_id`);--> statement-breakpoint
CREATE INDEX `messages_chat` ON `messages` (`account_id`,`chat_jid`,`id`);--> statement-breakpoint
CREATE TABLE `omemo_device_lists` (
	`account_id` text NOT NULL,
	`jid` text NOT NULL,
	`device_id` integer NOT NULL,
	`active` integer DEFAULT true NOT NULL,
	`label` text,
	`updated_at` integer NOT NULL,
	PRIMARY KEY(`account_id`, `jid`, `device_id`),
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `omemo_identity` (
	`account_id` text PRIMARY KEY NOT NULL,
	`device_id` integer NOT NULL,
	`registration_id` integer NOT NULL,
	`identity_public_key` text NOT NULL,
	`identity_private_key` text NOT NULL,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `omemo_prekeys` (
	`account_id` text NOT NULL,
	`key_id` integer NOT NULL,
	`public_key` text NOT NULL,
	`private_key` text NOT NULL,
	`consumed_at` integer,
	`created_at` integer NOT NULL,
	PRIMARY KEY(`account_id`, `key_id`),
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `omemo_sessions` (
	`account_id` text NOT NULL,
	`jid` text NOT NULL,
	`device_id` integer NOT NULL,
	`record` text NOT NULL,
	`updated_at` integer NOT NULL,
	PRIMARY KEY(`account_id`, `jid`, `device_id`),
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `omemo_signed_prekeys` (
	`account_id` text NOT NULL,
	`key_id` integer NOT NULL,
	`public_key` text NOT NULL,
	`private_key` text NOT NULL,
	`signature` text NOT NULL,
	`created_at` integer NOT NULL,
	PRIMARY KEY(`account_id`, `key_id`),
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `omemo_trust` (
	`account_id` text NOT NULL,
	`jid` text NOT NULL,
	`device_id` integer NOT NULL,
	`identity_key` text NOT NULL,
	`trust` text DEFAULT 'undecided' NOT NULL,
	`updated_at` integer NOT NULL,
	PRIMARY KEY(`account_id`, `jid`, `device_id`),
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `outbound_queue` (
	`account_id` text NOT NULL,
	`stream_key` text NOT NULL,
	`seq` integer NOT NULL,
	`stanza` text NOT NULL,
	`important` integer DEFAULT false NOT NULL,
	`created_at` integer NOT NULL,
	PRIMARY KEY(`account_id`, `seq`),
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `outbound_queue_stream` ON `outbound_queue` (`account_id`,`stream_key`);--> statement-breakpoint
CREATE TABLE `pending_notifications` (
	`id` text PRIMARY KEY NOT NULL,
	`account_id` text,
	`content` text NOT NULL,
	`deliver_at` integer,
	`delivered_at` integer,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `process_locks` (
	`key` text PRIMARY KEY NOT NULL,
	`holder` text NOT NULL,
	`lease_expires_at` integer NOT NULL,
	`generation` integer DEFAULT 1 NOT NULL,
	`acquired_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `quarantine` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`table_name` text NOT NULL,
	`row_key` text NOT NULL,
	`raw` text NOT NULL,
	`error` text NOT NULL,
	`at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `share_outbox` (
	`id` text PRIMARY KEY NOT NULL,
	`account_id` text NOT NULL,
	`item` text NOT NULL,
	`state` text DEFAULT 'pending' NOT NULL,
	`error` text,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `share_outbox_state` ON `share_outbox` (`state`,`created_at`);--> statement-breakpoint
CREATE TABLE `sync_errors` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`account_id` text NOT NULL,
	`code` text NOT NULL,
	`message` text NOT NULL,
	`created_at` integer NOT NULL,
	`notified_at` integer,
	`resolved_at` integer,
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `sync_errors_account` ON `sync_errors` (`account_id`,`resolved_at`);