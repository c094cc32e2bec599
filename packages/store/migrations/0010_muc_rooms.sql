CREATE TABLE `room_invitations` (
	`account_id` text NOT NULL,
	`room_jid` text NOT NULL,
	`from_jid` text NOT NULL,
	`kind` text NOT NULL,
	`reason` text,
	`password` text,
	`received_at` integer NOT NULL,
	PRIMARY KEY(`account_id`, `room_jid`),
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `room_occupants` (
	`account_id` text NOT NULL,
	`room_jid` text NOT NULL,
	`nick` text NOT NULL,
	`real_jid` text,
	`affiliation` text DEFAULT 'none' NOT NULL,
	`role` text DEFAULT 'none' NOT NULL,
	`updated_at` integer NOT NULL,
	PRIMARY KEY(`account_id`, `room_jid`, `nick`),
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
ALTER TABLE `chats` ADD `subject` text;--> statement-breakpoint
ALTER TABLE `chats` ADD `room_status` text;--> statement-breakpoint
ALTER TABLE `chats` ADD `room_status_detail` text;--> statement-breakpoint
ALTER TABLE `chats` ADD `wanted_nick` text;--> statement-breakpoint
ALTER TABLE `chats` ADD `bookmarked` integer DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE `chats` ADD `autojoin` integer DEFAULT false NOT NULL;