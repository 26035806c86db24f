package contract_test

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/workproof/workproof/contract"
)

// A system under test is four methods. This skeleton shows where each part
// of a work-table control plane goes; package kvx is a complete one, built
// on package work.
type mySystem struct{}

var _ contract.System = mySystem{}

// Migrate creates the instances and work tables in a fresh database.
func (mySystem) Migrate(ctx context.Context, db *pgxpool.Pool) error { return nil }

// Serve records desired state, the work row and has_active_work in one
// transaction, with one atomic statement deciding busy:
//
//	UPDATE instances SET generation = generation + 1, desired_size = $2, has_active_work = true
//	 WHERE id = $1 AND NOT has_active_work RETURNING generation
func (mySystem) Serve(ctx context.Context, db *pgxpool.Pool, req contract.Request) (contract.Response, error) {
	return contract.Response{}, fmt.Errorf("%w: instance %s", contract.ErrBusy, req.Instance)
}

// Work claims items in a transaction and calls the providers of
// deps.Services (each a base URL and an *http.Client to build a client on)
// with keys derived from the instance and its generation, so a crash at any
// point and a redo never doubles an effect. Billable events are named by
// contract.BillableEvent.
func (mySystem) Work(ctx context.Context, db *pgxpool.Pool, deps contract.Deps) error {
	<-ctx.Done()
	return nil
}

// Inspect reads instances and pending work in one snapshot.
func (mySystem) Inspect(ctx context.Context, db *pgxpool.Pool) (contract.Snapshot, error) {
	return contract.Snapshot{}, nil
}

func Example() {
	var sys contract.System = mySystem{}
	_, err := sys.Serve(context.Background(), nil, contract.Request{Op: contract.OpResize, Instance: "i1", Size: "large"})
	fmt.Println(contract.IsBusy(err))
	// Output: true
}
