-- How many queued forced-reset requests a forced reset answered: the workflow runs the requests waiting together as
-- one reset, and the first one's id keys it. When the workflow task that ran it is retried (its worker died after
-- the commit, before Temporal recorded the result), more requests may have arrived meanwhile, and the retry sees
-- them in the same batch; it finds the committed reset by the first id, and this count tells it which requests that
-- reset answered. The rest arrived after the commit and get a reset of their own. NULL for scheduled resets and
-- those of earlier releases.
ALTER TABLE budget_lifecycle.reset_log ADD COLUMN request_count integer;
