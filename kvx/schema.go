package kvx

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/workproof/workproof/work"
)

// schema is the instances table. Columns, and why they exist:
//
//   - uid: drawn at create; every client token and idempotency key derives
//     from it, so keys of an id that was deleted and re-created never collide.
//   - generation: of the last accepted change, from the kvx_generation
//     sequence (unique database-wide, so billable event names stay unique
//     across re-creation); created_gen: the create's generation (its VM's
//     client token).
//   - desired_size NULL ⇔ deleting: a delete was accepted and not finished.
//   - has_active_work: set with every accepted change, cleared by the work
//     that carries it out, in the transaction that completes that work.
//   - vm_id, observed_size, observed_gen: what the last completed work
//     observed.
const schema = `
CREATE SEQUENCE IF NOT EXISTS kvx_generation;

CREATE TABLE IF NOT EXISTS instances (
	id              text        PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),
	uid             uuid        NOT NULL UNIQUE DEFAULT gen_random_uuid(),
	customer        text        NOT NULL,
	generation      bigint      NOT NULL,
	created_gen     bigint      NOT NULL,
	desired_size    text        CHECK (desired_size IN ('small', 'medium', 'large')),
	deleting        boolean     NOT NULL DEFAULT false,
	state           text        NOT NULL,
	has_active_work boolean     NOT NULL,
	vm_id           text        NOT NULL DEFAULT '',
	observed_size   text        NOT NULL DEFAULT '',
	observed_gen    bigint      NOT NULL DEFAULT 0,
	created_at      timestamptz NOT NULL DEFAULT now(),
	CHECK (deleting = (desired_size IS NULL))
);
`

// States an instance is in (contract.Instance.State).
const (
	StateProvisioning = "provisioning" // create accepted, provision work pending
	StateReady        = "ready"        // the last change's work completed
	StateResizing     = "resizing"     // resize accepted, resize work pending
	StateDeleting     = "deleting"     // delete accepted; the row goes when it completes
)

// Migrate creates the work table and the instances table. It is idempotent.
func Migrate(ctx context.Context, db *pgxpool.Pool) error {
	if err := work.Migrate(ctx, db); err != nil {
		return fmt.Errorf("kvx: migrate work table: %w", err)
	}
	return MigrateInstances(ctx, db)
}

// MigrateInstances creates the instances table alone, for a system that
// keeps its work elsewhere (a third-party queue). It is idempotent.
func MigrateInstances(ctx context.Context, db *pgxpool.Pool) error {
	if err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, schema)
		return err
	}); err != nil {
		return fmt.Errorf("kvx: migrate instances: %w", err)
	}
	return nil
}
