CREATE TABLE `caps_cache` (
	`hash` text NOT NULL,
	`ver` text NOT NULL,
	`identities` text NOT NULL,
	`features` text NOT NULL,
	`forms` text DEFAULT '[]' NOT NULL,
	`source` text NOT NULL,
	`verified_at` integer NOT NULL,
	PRIMARY KEY(`hash`, `ver`)
);
--> statement-breakpoint
CREATE TABLE `entity_caps` (
	`account_id` text NOT NULL,
	`jid` text NOT NULL,
	`node` text NOT NULL,
	`hash` text NOT NULL,
	`ver` text NOT NULL,
	`updated_at` integer NOT NULL,
	PRIMARY KEY(`account_id`, `jid`),
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `entity_caps_ver` ON `entity_caps` (`hash`,`ver`);