package mutants

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/kvx"
)

// Invariants a mutant breaks (Mutant.Breaks), named as the checkers in
// sim/check name them in their violation lines.
const (
	InvNoOrphans       = "orphan"         // no VM or deployment outlives its instance; a live instance owns exactly what it asks for
	InvNoDoubleBilling = "double-billing" // every billable event charged exactly once
	InvNoRaces         = "race"           // no two workers in one item or instance; no change accepted during active work
	InvLostWork        = "lost-work"      // every accepted change completes
	InvConvergence     = "convergence"    // once faults stop and fixes deploy, all accepted work completes
	InvAtMostOnce      = "at-most-once"   // an at-most-once effect (the welcome email) happens at most once
)

// Mutant is one broken variant of kvx.
type Mutant struct {
	Name   string                 // Go-identifier-like, stable: used in reports and flags
	Breaks string                 // the invariant it breaks: one of the Inv… constants
	Doc    string                 // the bug, and the fault or interleaving that exposes it
	New    func() contract.System // a fresh system
}

// All returns every mutant, in a stable order.
func All() []Mutant {
	return []Mutant{
		{
			Name:   "FreshTokenPerAttempt",
			Breaks: InvNoOrphans,
			Doc: "The VM's client token is drawn from the worker's random stream on every attempt instead of " +
				"derived from the instance uid and generation. An attempt that created the VM and then failed " +
				"before its commit (a crash, an ambiguous CreateVM answer, any later transient error) is retried " +
				"with a new token, so the cloud creates a second VM: the instance owns two running VMs, one " +
				"of them on no record.",
			New: FreshTokenPerAttempt,
		},
		{
			Name:   "CheckThenAct",
			Breaks: InvNoRaces,
			Doc: "Resize and delete read has_active_work in one statement and set it in another transaction " +
				"with no guard. Two concurrent changes that both read it before either sets it are both " +
				"accepted: two work items for one instance, run by two workers at once.",
			New: CheckThenAct,
		},
		{
			Name:   "EmailInTx",
			Breaks: InvAtMostOnce,
			Doc: "The welcome email is sent inside the claiming transaction, before the commit. When anything " +
				"fails after the send — an ambiguous Send answer, a crash, a lost COMMIT — the item is retried " +
				"and the email (which has no idempotency) is sent again.",
			New: EmailInTx,
		},
		{
			Name:   "DeleteRowFirst",
			Breaks: InvNoOrphans,
			Doc: "Delete removes the instance row first, committed on its own, and then terminates the VM and " +
				"deletes the deployment; a retry that finds no row thinks the delete is done. A crash or any " +
				"error between the two leaves a running VM and a deployment whose instance no longer exists.",
			New: DeleteRowFirst,
		},
	}
}

// FreshTokenPerAttempt is kvx with a client token drawn per attempt.
func FreshTokenPerAttempt() contract.System {
	return kvx.New(kvx.Options{Steps: kvx.Steps{
		VMToken: func(e *kvx.Env, c kvx.Change) string {
			return fmt.Sprintf("kvx-%s-%016x", c.UID, e.Deps.Rand.Uint64())
		},
	}})
}

// CheckThenAct is kvx whose resize and delete check has_active_work, then
// act in a separate transaction.
func CheckThenAct() contract.System {
	return kvx.New(kvx.Options{Accept: checkThenAct})
}

func checkThenAct(ctx context.Context, db *pgxpool.Pool, req contract.Request) (contract.Response, error) {
	if req.Op == contract.OpCreate {
		return kvx.Accept(ctx, db, req)
	}
	// Check …
	var active bool
	err := db.QueryRow(ctx, `SELECT has_active_work FROM instances WHERE id = $1`, req.Instance).Scan(&active)
	if errors.Is(err, pgx.ErrNoRows) {
		return contract.Response{}, fmt.Errorf("check-then-act: %q: %w", req.Instance, contract.ErrNotFound)
	}
	if err != nil {
		return contract.Response{}, fmt.Errorf("check-then-act: %q: %w", req.Instance, err)
	}
	if active {
		return contract.Response{}, fmt.Errorf("check-then-act: %q: %w", req.Instance, contract.ErrBusy)
	}
	// … then act, trusting the check.
	var c kvx.Change
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		size, deleting, state := any(req.Size), false, kvx.StateResizing
		if req.Op == contract.OpDelete {
			size, deleting, state = nil, true, kvx.StateDeleting
		}
		c = kvx.Change{Op: req.Op, ID: req.Instance}
		err := tx.QueryRow(ctx, `
			UPDATE instances
			SET desired_size = $2, deleting = $3, generation = nextval('kvx_generation'), has_active_work = true, state = $4
			WHERE id = $1
			RETURNING uid::text, generation, customer, coalesce(desired_size, '')`,
			req.Instance, size, deleting, state).Scan(&c.UID, &c.Generation, &c.Customer, &c.Size)
		if err != nil {
			return err
		}
		_, err = kvx.EnqueueChange(ctx, tx, c)
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return contract.Response{}, fmt.Errorf("check-then-act: %q: %w", req.Instance, contract.ErrNotFound)
	}
	if err != nil {
		return contract.Response{}, fmt.Errorf("check-then-act: %q: %w", req.Instance, err)
	}
	return contract.Response{Instance: c.ID, Generation: c.Generation, Size: c.Size, State: stateOf(c.Op), HasActiveWork: true}, nil
}

func stateOf(op contract.Op) string {
	if op == contract.OpDelete {
		return kvx.StateDeleting
	}
	return kvx.StateResizing
}

// EmailInTx is kvx that sends the welcome email before its commit.
func EmailInTx() contract.System {
	return kvx.New(kvx.Options{Steps: kvx.Steps{
		SendWelcome: func(ctx context.Context, e *kvx.Env, c kvx.Change) error {
			return e.Call(ctx, "send welcome", func(ctx context.Context) error {
				_, err := e.Deps.Email.Send(ctx, kvx.WelcomeEmail(c))
				return err
			})
		},
	}})
}

// DeleteRowFirst is kvx whose delete removes the instance row first, in its
// own transaction.
func DeleteRowFirst() contract.System {
	return kvx.New(kvx.Options{Steps: kvx.Steps{Delete: deleteRowFirst}})
}

func deleteRowFirst(ctx context.Context, e *kvx.Env, c kvx.Change) error {
	in := kvx.Instance{CreatedGen: c.Generation}
	in.ID, in.UID, in.Customer = c.ID, c.UID, c.Customer
	err := e.DB.QueryRow(ctx, `DELETE FROM instances WHERE id = $1 AND uid = $2 RETURNING vm_id, created_gen`,
		c.ID, c.UID).Scan(&in.VMID, &in.CreatedGen)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // "already deleted": the bug's second half
	}
	if err != nil {
		return fmt.Errorf("delete %s: remove instance: %w", c.ID, err)
	}
	if err := e.Steps.TerminateVMs(ctx, e, c, in); err != nil {
		return err
	}
	return e.Steps.DeleteDeployment(ctx, e, c)
}
