-- pgbench_claim_runner.sql with the follow-up inserted as
-- Tx.EnqueueAtCommit does it (BenchmarkPgbench notify=none-runner-at-commit):
-- one round trip per item. The runner sends an item's INSERT and COMMIT in
-- one pipeline with its next claim; pgbench ends every transaction within
-- its script, so here one pipeline holds the whole transaction: the same
-- statements, the same one round trip.
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
WITH ins AS (
	INSERT INTO work (kind, key, spec, run_after)
	VALUES ('noop', '', '{}', now())
	RETURNING id, kind
)
SELECT ins.id FROM ins;
COMMIT;
\endpipeline
