CREATE TABLE `tls_sessions` (
	`account_id` text NOT NULL,
	`endpoint` text NOT NULL,
	`session` blob NOT NULL,
	`updated_at` integer NOT NULL,
	PRIMARY KEY(`account_id`, `endpoint`),
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade
);
