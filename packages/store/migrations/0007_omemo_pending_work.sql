CREATE TABLE `omemo_pending_work` (
	`account_id` text NOT NULL,
	`key` text NOT NULL,
	`handler` text NOT NULL,
	`created_at` integer NOT NULL,
	PRIMARY KEY(`account_id`, `key`),
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
