CREATE TABLE `token_deliveries` (
	`hash` text PRIMARY KEY NOT NULL,
	`domain` text NOT NULL,
	`at` integer NOT NULL
);
