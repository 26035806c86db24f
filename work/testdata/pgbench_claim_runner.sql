-- The runner's own transaction, statement for statement and in as many
-- round trips (BenchmarkPgbench notify=none-runner-pipeline; the runner's
-- handler inserts its follow-up with Enqueue): pgbench_claim_quiet.sql plus
-- the runner's SET LOCAL timeouts, its savepoint and the fence anti-join of
-- its claim, in two round trips. The runner sends an item's COMMIT in one
-- pipeline with its next claim and then the follow-up's INSERT; pgbench ends
-- every transaction within its script, so here the INSERT goes with the
-- COMMIT: the same statements, the same two round trips.
\startpipeline
BEGIN;
SELECT set_config('statement_timeout', '30000', true), set_config('idle_in_transaction_session_timeout', '10000', true);
DELETE FROM work WHERE id = (
	SELECT id FROM work w WHERE NOT parked AND run_after <= now() AND NOT EXISTS (SELECT 1 FROM work_fence f
		WHERE f.key = w.key AND f.item <> w.id AND f.until > now())
	ORDER BY run_after, id FOR UPDATE SKIP LOCKED LIMIT 1)
RETURNING id, time, kind, key, spec, attempts, pg_current_xact_id()::text;
SAVEPOINT work_handler;
\endpipeline
\startpipeline
WITH ins AS (
	INSERT INTO work (kind, key, spec, run_after)
	VALUES ('noop', '', '{}', now())
	RETURNING id, kind
)
SELECT ins.id FROM ins;
COMMIT;
\endpipeline
