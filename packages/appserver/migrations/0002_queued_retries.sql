ALTER TABLE `queued_pushes` ADD `retries` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `queued_pushes` ADD `expires_at` integer;