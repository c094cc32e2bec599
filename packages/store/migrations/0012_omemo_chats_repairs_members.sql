CREATE TABLE `omemo_repairs` (
	`account_id` text NOT NULL,
	`jid` text NOT NULL,
	`device_id` integer NOT NULL,
	`sent_at` integer NOT NULL,
	PRIMARY KEY(`account_id`, `jid`, `device_id`),
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `room_members` (
	`account_id` text NOT NULL,
	`room_jid` text NOT NULL,
	`jid` text NOT NULL,
	`affiliation` text NOT NULL,
	`updated_at` integer NOT NULL,
	PRIMARY KEY(`account_id`, `room_jid`, `jid`),
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
ALTER TABLE `chats` ADD `omemo` integer DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE `chats` ADD `members_read_at` integer;