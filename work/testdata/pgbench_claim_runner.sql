-- The runner's own transaction, statement for statement and in as many
-- round trips (BenchmarkPgbench notify=none-runner-pipeline; the runner's
-- handler inserts its follow-up with Enqueue): pgbench_claim_quiet.sql plus
-- the runner's transaction-local timeouts (set in the claim's RETURNING), its savepoint and the fence anti-join of
-- its claim, in two round trips. The runner sends an item's COMMIT in one
-- pipeline with its next claim and then the follow-up's INSERT; pgbench ends
-- every transaction within its script, so here the INSERT goes with the
-- COMMIT: the same statements, the same two round trips.
-- The claim looks from a floor first, as the runner's does (work.floor):
-- the due time of the client's last item less 100ms, kept in the session
-- (pgbench cannot carry a result into the next transaction in a pipeline),
-- and from the head of the queue in one claim out of 32 on average and
-- whenever nothing is claimable from the floor on.
\set head random(1, 32)
\startpipeline
BEGIN;
DELETE FROM work WHERE id = coalesce((
	SELECT id FROM work w WHERE NOT parked
		AND run_after >= CASE WHEN :head = 1 THEN NULL ELSE nullif(current_setting('bench.floor', true), '')::timestamptz END
		AND run_after <= now() AND NOT EXISTS (SELECT 1 FROM work_fence f
		WHERE f.key = w.key AND f.item <> w.id AND f.until > now())
	ORDER BY run_after, id FOR UPDATE SKIP LOCKED LIMIT 1), (
	SELECT id FROM work w WHERE NOT parked AND run_after <= now() AND NOT EXISTS (SELECT 1 FROM work_fence f
		WHERE f.key = w.key AND f.item <> w.id AND f.until > now())
	ORDER BY run_after, id FOR UPDATE SKIP LOCKED LIMIT 1))
RETURNING id, time, kind, key, spec, attempts, pg_current_xact_id()::text, run_after,
	set_config('statement_timeout', '30000', true), set_config('idle_in_transaction_session_timeout', '10000', true),
	set_config('bench.floor', (run_after - interval '100 ms')::text, false);
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
