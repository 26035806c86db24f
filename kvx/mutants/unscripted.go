package mutants

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/kvx"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/work"
)

// unscripted are the mutants no named scenario was written for: each is a
// real bug class of a Postgres work queue (ANCHORS.md), and only the
// systematic exploration (the explore family) is meant to find it.
// CaughtBy is empty for all of them.
func unscripted() []Mutant {
	return []Mutant{
		{
			Name:   "AcceptInTwoTx",
			Breaks: check.InvLostWork,
			Doc: "Serve records an accepted change (desired state, generation, has_active_work) in one transaction " +
				"and enqueues its work in a second. A request handler that dies between the two — a crashed API " +
				"process, a lost connection — leaves has_active_work set with no work to clear it: the change is " +
				"lost and the instance refuses every change from then on.",
			New: AcceptInTwoTx,
		},
		{
			Name:   "TimeoutMeansNotCharged",
			Breaks: check.InvDoubleBilling,
			Doc: "A charge whose call timed out is taken for a charge that did not happen, and is made again at " +
				"once under a new idempotency key. When the billing service charged and only its answer was " +
				"late, the event is charged twice.",
			New: TimeoutMeansNotCharged,
		},
		{
			Name:   "SettleChargeByOwner",
			Breaks: check.InvDoubleBilling,
			Doc: "An ambiguous charge (a 5xx, a lost answer, a timeout) is settled from the billing ledger by " +
				"asking whether the instance has any charge at all, not one for this billable event. A resize " +
				"whose charge failed without effect finds the provision's charge, counts itself paid, and is " +
				"never billed.",
			New: SettleChargeByOwner,
		},
		{
			Name:   "ListSettlesAmbiguousCreate",
			Breaks: check.InvOrphan,
			Doc: "An ambiguous CreateVM (a 5xx or a lost answer) is settled by listing the instance's VMs: one " +
				"listed is adopted, none listed means the create failed, and it is made again under a fresh " +
				"client token (the old one \"may be poisoned\"). Right after a create the list lags behind it " +
				"(read-after-write eventual consistency), so an ambiguous create under lag leaks a second VM. " +
				"It takes two faults: the ambiguous answer and the lag.",
			New: ListSettlesAmbiguousCreate,
		},
		{
			Name:   "TransientDBErrorParks",
			Breaks: check.InvConvergence,
			Doc: "A serialization failure or deadlock (SQLSTATE 40001, 40P01) in a worker's writes is treated as " +
				"intransient: the work parks as if a bug had been deployed, and waits for an operator although a " +
				"retry would have succeeded.",
			New: TransientDBErrorParks,
		},
		{
			Name:   "SynchronousCommitOff",
			Breaks: check.InvAtMostOnce,
			Doc: "Workers run their transactions with synchronous_commit=off, a common tuning. A commit is " +
				"acknowledged before it is durable, so a Postgres crash right after it loses it: the work item " +
				"comes back and is done again, and the welcome email, sent after the lost commit, goes out twice.",
			New: SynchronousCommitOff,
		},
		{
			Name:   "LeaseShorterThanCall",
			Breaks: check.InvRace,
			Doc: "The workers' idle-in-transaction timeout (the lease on a claimed item) is 1s while a provider " +
				"call may take up to 2s. A slow call outlives the lease: Postgres ends the session and frees the " +
				"item, another worker claims it and works on it while the first still does.",
			Slowness: "on a loaded machine an item's calls alone can take over 1s",
			New:      LeaseShorterThanCall,
		},
	}
}

// AcceptInTwoTx is kvx whose accept commits the change before its work.
func AcceptInTwoTx() contract.System {
	return kvx.New(kvx.Options{Accept: func(ctx context.Context, db *pgxpool.Pool, req contract.Request) (contract.Response, error) {
		var c kvx.Change
		ok := false
		err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) (err error) {
			c, ok, err = kvx.RecordChange(ctx, tx, req)
			return err
		})
		if err != nil {
			return contract.Response{}, fmt.Errorf("accept in two: %q: %w", req.Instance, err)
		}
		if !ok {
			return kvx.Accept(ctx, db, req) // refused: let the reference say why
		}
		// … and then, in a transaction of its own, the work.
		if err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
			_, err := kvx.EnqueueChange(ctx, tx, c)
			return err
		}); err != nil {
			return contract.Response{}, fmt.Errorf("accept in two: %q: enqueue: %w", req.Instance, err)
		}
		return contract.Response{Instance: c.ID, Generation: c.Generation, Size: c.Size, State: stateOf(c.Op), HasActiveWork: true}, nil
	}})
}

// charge makes the change's charge under key.
func charge(ctx context.Context, e *kvx.Env, c kvx.Change, key string) error {
	return e.Call(ctx, "charge", func(ctx context.Context) error {
		_, err := e.Billing.CreateCharge(ctx, fakes.ChargeRequest{
			Customer: c.Customer, Owner: c.ID, Amount: kvx.Price(c.Size), Event: kvx.BillableEvent(c), IdempotencyKey: key,
		})
		return err
	})
}

// TimeoutMeansNotCharged is kvx that charges again, under a new key, when
// a charge timed out.
func TimeoutMeansNotCharged() contract.System {
	return kvx.New(kvx.Options{Steps: kvx.Steps{Charge: func(ctx context.Context, e *kvx.Env, c kvx.Change) error {
		event := kvx.BillableEvent(c)
		if event == "" {
			return nil
		}
		err := charge(ctx, e, c, e.Steps.ChargeKey(e, c, event))
		te, ok := errors.AsType[*fakes.TransportError](err)
		if ok && (te.Timeout || errors.Is(err, context.DeadlineExceeded)) {
			e.Logger.InfoContext(ctx, "mutant: the charge timed out, so it did not happen: charging again")
			return charge(ctx, e, c, fmt.Sprintf("%s/retry-%016x", e.Steps.ChargeKey(e, c, event), e.Deps.Rand.Uint64()))
		}
		if err == nil || !fakes.IsAmbiguous(err) {
			return err
		}
		return settleFromLedger(ctx, e, c, event, err) // any other ambiguity: as the reference does
	}}})
}

// settleFromLedger is the reference's settlement of an ambiguous charge:
// a charge for this event on the instance means it is paid.
func settleFromLedger(ctx context.Context, e *kvx.Env, c kvx.Change, event string, err error) error {
	var paid bool
	if lerr := e.Call(ctx, "find charge", func(ctx context.Context) error {
		charges, err := e.Billing.ListCharges(ctx, c.ID)
		for _, ch := range charges {
			paid = paid || ch.Event == event
		}
		return err
	}); lerr != nil || !paid {
		return err
	}
	return nil
}

// SettleChargeByOwner is kvx that settles an ambiguous charge by any
// charge of the instance.
func SettleChargeByOwner() contract.System {
	return kvx.New(kvx.Options{Steps: kvx.Steps{Charge: func(ctx context.Context, e *kvx.Env, c kvx.Change) error {
		event := kvx.BillableEvent(c)
		if event == "" {
			return nil
		}
		err := charge(ctx, e, c, e.Steps.ChargeKey(e, c, event))
		if err == nil || !fakes.IsAmbiguous(err) {
			return err
		}
		var paid bool
		if lerr := e.Call(ctx, "find charge", func(ctx context.Context) error {
			charges, err := e.Billing.ListCharges(ctx, c.ID)
			paid = len(charges) > 0 // the bug: any charge of the instance, not this event's
			return err
		}); lerr != nil || !paid {
			return err
		}
		return nil
	}}})
}

// ListSettlesAmbiguousCreate is kvx that settles an ambiguous CreateVM by
// listing, and on a miss creates again under a fresh token.
func ListSettlesAmbiguousCreate() contract.System {
	return kvx.New(kvx.Options{Steps: kvx.Steps{CreateVM: func(ctx context.Context, e *kvx.Env, c kvx.Change) (fakes.VM, error) {
		create := func(token string) (vm fakes.VM, err error) {
			err = e.Call(ctx, "create vm", func(ctx context.Context) (err error) {
				vm, err = e.Cloud.CreateVM(ctx, fakes.CreateVMRequest{Owner: c.ID, Size: c.Size, Region: kvx.Region, ClientToken: token})
				return err
			})
			return vm, err
		}
		vm, err := create(e.Steps.VMToken(e, c))
		if err == nil || !fakes.IsAmbiguous(err) {
			return vm, err
		}
		var listed fakes.VM
		if lerr := e.Call(ctx, "list vms", func(ctx context.Context) error {
			vms, err := e.Cloud.ListVMs(ctx, c.ID)
			for _, v := range vms {
				if v.State == "running" {
					listed = v
				}
			}
			return err
		}); lerr != nil {
			return fakes.VM{}, lerr
		}
		if listed.ID != "" {
			return listed, nil
		}
		return create(fmt.Sprintf("%s-again-%016x", e.Steps.VMToken(e, c), e.Deps.Rand.Uint64()))
	}}})
}

// TransientDBErrorParks is kvx that parks on serialization failures and
// deadlocks in its writes.
func TransientDBErrorParks() contract.System {
	parkOnConflict := func(err error) error {
		pe, ok := errors.AsType[*pgconn.PgError](err)
		if ok && (pe.Code == pgerrcode.SerializationFailure || pe.Code == pgerrcode.DeadlockDetected) {
			return work.Intransient("database conflict (taken for a bug): "+pe.Message, err)
		}
		return err
	}
	return kvx.New(kvx.Options{Steps: kvx.Steps{
		Complete: func(ctx context.Context, e *kvx.Env, c kvx.Change, o kvx.Observed) error {
			return parkOnConflict(kvx.Complete(ctx, e, c, o))
		},
		EnqueueWelcome: func(ctx context.Context, e *kvx.Env, c kvx.Change) error {
			return parkOnConflict(kvx.EnqueueWelcome(ctx, e, c))
		},
		RemoveInstance: func(ctx context.Context, e *kvx.Env, c kvx.Change) error {
			return parkOnConflict(kvx.RemoveInstance(ctx, e, c))
		},
	}})
}

// SynchronousCommitOff is kvx whose workers commit with
// synchronous_commit=off.
func SynchronousCommitOff() contract.System {
	asyncCommit := func(step kvx.Step) kvx.Step {
		return func(ctx context.Context, e *kvx.Env, c kvx.Change) error {
			if _, err := e.Tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
				return err
			}
			return step(ctx, e, c)
		}
	}
	steps := eachChange(asyncCommit)
	steps.Email = asyncCommit(kvx.Email)
	return kvx.New(kvx.Options{Steps: steps})
}

// LeaseShorterThanCall is kvx whose idle-in-transaction timeout is shorter
// than its provider calls may take.
func LeaseShorterThanCall() contract.System {
	// 1s, not just under 2s: the item must be freed, and another worker (polling
	// every 250ms) claim it, while the slow call lasts, also on a loaded machine.
	return kvx.New(kvx.Options{Budget: kvx.Budget{IdleInTx: time.Second}})
}
