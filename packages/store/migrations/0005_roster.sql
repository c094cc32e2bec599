CREATE TABLE `roster_items` (
	`account_id` text NOT NULL,
	`jid` text NOT NULL,
	`name` text,
	`subscription` text NOT NULL,
	`ask` text,
	`groups` text DEFAULT '[]' NOT NULL,
	`approved` integer DEFAULT false NOT NULL,
	`updated_at` integer NOT NULL,
	PRIMARY KEY(`account_id`, `jid`),
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `rosters` (
	`account_id` text PRIMARY KEY NOT NULL,
	`version` text,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `subscription_requests` (
	`account_id` text NOT NULL,
	`jid` text NOT NULL,
	`status` text,
	`received_at` integer NOT NULL,
	PRIMARY KEY(`account_id`, `jid`),
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
