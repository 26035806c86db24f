-- The runner's own transaction, statement for statement and in as many
-- round trips (BenchmarkPgbench notify=none-runner-pipeline; the runner's
-- handler inserts its follow-up with Enqueue): pgbench_claim_quiet.sql plus
-- the runner's transaction-local timeouts (set in the claim's RETURNING), its savepoint and the fence anti-join of
-- its claim, in two round trips. The runner sends an item's COMMIT in one
-- pipeline with its next claim and then the follow-up's INSERT; pgbench ends
-- every transaction within its script, so here the INSERT goes with the
-- COMMIT: the same statements, the same two round trips, but for COMMIT and
-- BEGIN where the runner sends one COMMIT AND CHAIN (pgbench refuses a
-- script that leaves a transaction open).
-- The claim looks from a floor, as the runner's does (work.floor): the due
-- time of the client's last item less 100ms, kept in the session (pgbench
-- cannot carry a result into the next transaction in a pipeline); one
-- claim in 32 on average looks from the head of the queue instead. (The
-- runner also looks from the head right after a claim from its floor found
-- nothing; on this steady queue none does.)
\set head random(1, 32)
\startpipeline
BEGIN;
\if :head = 1
DELETE FROM work WHERE id = (
	SELECT id FROM work w WHERE NOT parked AND run_after <= now() AND (w.key = '' OR NOT EXISTS (SELECT 1 FROM work_fence f
		WHERE f.key = w.key AND f.item <> w.id AND f.until > now()))
	ORDER BY run_after, id FOR UPDATE SKIP LOCKED LIMIT 1)
RETURNING id, time, kind, key, spec, attempts, pg_current_xact_id()::text, run_after,
	set_config('statement_timeout', '30000', true), set_config('idle_in_transaction_session_timeout', '10000', true),
	set_config('bench.floor', (run_after - interval '100 ms')::text, false);
\else
DELETE FROM work WHERE id = (
	SELECT id FROM work w WHERE NOT parked AND run_after <= now()
		AND run_after >= coalesce(nullif(current_setting('bench.floor', true), '')::timestamptz, '-infinity') AND (w.key = '' OR NOT EXISTS (SELECT 1 FROM work_fence f
		WHERE f.key = w.key AND f.item <> w.id AND f.until > now()))
	ORDER BY run_after, id FOR UPDATE SKIP LOCKED LIMIT 1)
RETURNING id, time, kind, key, spec, attempts, pg_current_xact_id()::text, run_after,
	set_config('statement_timeout', '30000', true), set_config('idle_in_transaction_session_timeout', '10000', true),
	set_config('bench.floor', (run_after - interval '100 ms')::text, false);
\endif
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
