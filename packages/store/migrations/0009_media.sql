CREATE TABLE `upload_services` (
	`account_id` text PRIMARY KEY NOT NULL,
	`jid` text,
	`max_size` integer,
	`discovered_at` integer NOT NULL,
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
PRAGMA foreign_keys=OFF;--> statement-breakpoint
CREATE TABLE `__new_attachments` (
	`id` text PRIMARY KEY NOT NULL,
	`account_id` text NOT NULL,
	`direction` text DEFAULT 'out' NOT NULL,
	`message_row_id` integer,
	`local_path` text,
	`file_name` text,
	`mime_type` text,
	`size` integer,
	`upload_state` text DEFAULT 'pending' NOT NULL,
	`url` text,
	`put_url` text,
	`put_headers` text,
	`slot_expires_at` integer,
	`aesgcm_key` text,
	`transferred` integer DEFAULT 0 NOT NULL,
	`error` text,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`message_row_id`) REFERENCES `messages`(`id`) ON UPDATE no action ON DELETE set null
);
--> statement-breakpoint
INSERT INTO `__new_attachments`("id", "account_id", "message_row_id", "local_path", "mime_type", "size", "upload_state", "url", "created_at", "updated_at") SELECT "id", "account_id", "message_row_id", "local_path", "mime_type", "size", "upload_state", "url", "created_at", "updated_at" FROM `attachments`;--> statement-breakpoint
DROP TABLE `attachments`;--> statement-breakpoint
ALTER TABLE `__new_attachments` RENAME TO `attachments`;--> statement-breakpoint
PRAGMA foreign_keys=ON;--> statement-breakpoint
CREATE INDEX `attachments_upload` ON `attachments` (`upload_state`);--> statement-breakpoint
CREATE INDEX `attachments_message` ON `attachments` (`message_row_id`);