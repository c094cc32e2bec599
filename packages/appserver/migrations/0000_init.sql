CREATE TABLE `domain_blacklist` (
	`domain` text PRIMARY KEY NOT NULL,
	`until` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `domain_events` (
	`domain` text NOT NULL,
	`token_hash` text NOT NULL,
	`at` integer NOT NULL,
	PRIMARY KEY(`domain`, `token_hash`)
);
--> statement-breakpoint
CREATE TABLE `queued_pushes` (
	`token_hash` text PRIMARY KEY NOT NULL,
	`sealed_token` text NOT NULL,
	`app` text NOT NULL,
	`domain` text NOT NULL,
	`important` integer NOT NULL,
	`due` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `token_blacklist` (
	`hash` text PRIMARY KEY NOT NULL,
	`until` integer NOT NULL,
	`strikes` integer NOT NULL,
	`updated_at` integer NOT NULL
);
