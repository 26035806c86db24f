package mutants_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/kvx"
	"github.com/workproof/workproof/kvx/internal/kvxtest"
	"github.com/workproof/workproof/kvx/mutants"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/pgenv/pgenvtest"
)

func TestMain(m *testing.M) { pgenvtest.Main(m) }

// exposure is a small scenario that makes a mutant's bug visible: it runs
// the system and returns the violations it saw of the mutant's invariant.
// The reference must show none; the mutant at least one. Exposures are
// quick self-checks for some mutants; the authority is package scenarios,
// whose TestNamedScenariosCatchMutants requires a named scenario catching
// every mutant with a violation of the invariant it breaks.
type exposure func(t *testing.T, e *kvxtest.Env) []string

var exposures = map[string]exposure{
	"FreshTokenPerAttempt": func(t *testing.T, e *kvxtest.Env) []string {
		// The first CreateVM takes effect and answers 500: ambiguous.
		addFault(t, e, fakes.Fault{Service: "cloud", Endpoint: "CreateVM", Mode: fakes.ModeFailAfter, Times: 1})
		e.StartWorker("w1", 1)
		createReady(t, e, "i1")
		return orphanVMs(e, "i1")
	},
	"CheckThenAct": func(t *testing.T, e *kvxtest.Env) []string {
		stop := e.StartWorker("w1", 1)
		createReady(t, e, "i1")
		stop()
		accepted := racingResizes(t, e, "i1")
		if accepted > 1 {
			return []string{fmt.Sprintf("%d concurrent changes accepted for one instance", accepted)}
		}
		return nil
	},
	"EmailInTx": func(t *testing.T, e *kvxtest.Env) []string {
		// The first send goes out and answers 500.
		addFault(t, e, fakes.Fault{Service: "email", Endpoint: "Send", Mode: fakes.ModeFailAfter, Times: 1})
		e.StartWorker("w1", 1)
		createReady(t, e, "i1")
		// i2's email is queued after i1's: once it is out, i1's is settled.
		createReady(t, e, "i2")
		if m := kvxtest.Emails(e.World.Snapshot(), "i1"); len(m) > 1 {
			return []string{fmt.Sprintf("%d welcome emails for i1", len(m))}
		}
		return nil
	},
	"DeleteRowFirst": func(t *testing.T, e *kvxtest.Env) []string {
		// The first TerminateVM fails before it acts.
		addFault(t, e, fakes.Fault{Service: "cloud", Endpoint: "TerminateVM", Mode: fakes.ModeFailBefore, Times: 1})
		e.StartWorker("w1", 1)
		createReady(t, e, "i1")
		e.MustServe(contract.Request{Op: contract.OpDelete, Instance: "i1"})
		_, led := e.Wait("delete settled", func(s contract.Snapshot, _ fakes.Snapshot) bool {
			return len(s.Instances) == 0 && len(s.Work) == 0
		})
		var v []string
		for _, vm := range kvxtest.RunningVMs(led, "i1") {
			v = append(v, "VM "+vm.ID+" outlives deleted instance i1")
		}
		for _, d := range kvxtest.Deployments(led, "i1") {
			v = append(v, "deployment "+d.Name+" outlives deleted instance i1")
		}
		return v
	},
}

func TestAll(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range mutants.All() {
		if m.Name == "" || seen[m.Name] {
			t.Errorf("mutant name %q empty or repeated", m.Name)
		}
		seen[m.Name] = true
		if _, ok := check.ParseInvariant(string(m.Breaks)); !ok {
			t.Errorf("%s breaks %q, not a known invariant", m.Name, m.Breaks)
		}
		if m.Doc == "" || m.New == nil || m.New() == nil {
			t.Errorf("%s: missing Doc or New", m.Name)
		}
	}
	for name := range exposures {
		if !seen[name] {
			t.Errorf("exposure for %q, which is no mutant", name)
		}
	}
	if n := len(mutants.All()); n < 14 {
		t.Errorf("%d mutants, want at least 14", n)
	}
}

// Every mutant keeps the reference's liveness promise, whatever timeouts it
// runs with: a variant with day-long deadlines is held to the reference's
// takeover and settle bounds, and caught, instead of declaring day-long
// bounds and passing.
func TestMutantsKeepTheReferencePromise(t *testing.T) {
	want := kvx.Promise()
	if got := contract.LivenessOf(kvx.New(kvx.Options{})); got != want {
		t.Fatalf("reference declares %+v, want its Promise %+v", got, want)
	}
	for _, m := range mutants.All() {
		if got := contract.LivenessOf(m.New()); got != want {
			t.Errorf("%s declares %+v, want the reference's %+v", m.Name, got, want)
		}
	}
}

// TestExposed runs each mutant's exposure against the reference (no
// violation) and the mutant (a violation).
func TestExposed(t *testing.T) {
	t.Parallel()
	for _, m := range mutants.All() {
		expose := exposures[m.Name]
		if expose == nil {
			continue
		}
		t.Run(m.Name, func(t *testing.T) {
			t.Parallel()
			t.Run("reference", func(t *testing.T) {
				t.Parallel()
				if v := expose(t, kvxtest.New(t, kvx.New(kvx.Options{}))); len(v) > 0 {
					t.Errorf("the reference breaks %s: %v", m.Breaks, v)
				}
			})
			t.Run("mutant", func(t *testing.T) {
				t.Parallel()
				if v := expose(t, kvxtest.New(t, m.New())); len(v) == 0 {
					t.Errorf("%s did not break %s in its exposure scenario", m.Name, m.Breaks)
				} else {
					t.Logf("%s broke %s as expected: %v", m.Name, m.Breaks, v)
				}
			})
		})
	}
}

func addFault(t *testing.T, e *kvxtest.Env, f fakes.Fault) {
	t.Helper()
	if err := e.World.AddFault(f); err != nil {
		t.Fatal(err)
	}
}

// createReady creates id and waits until it is ready with its welcome email
// out.
func createReady(t *testing.T, e *kvxtest.Env, id string) {
	t.Helper()
	g := e.MustServe(contract.Request{Op: contract.OpCreate, Instance: id, Size: "small"}).Generation
	e.Wait(id+" ready", func(s contract.Snapshot, l fakes.Snapshot) bool {
		in, ok := kvxtest.Instance(s, id)
		return ok && kvxtest.Settled(s) && in.ObservedGen == g && len(kvxtest.Emails(l, id)) > 0
	})
}

// orphanVMs lists the running VMs of id other than the one it records.
func orphanVMs(e *kvxtest.Env, id string) []string {
	in, _ := kvxtest.Instance(e.Inspect(), id)
	var v []string
	for _, vm := range kvxtest.RunningVMs(e.World.Snapshot(), id) {
		if vm.ID != in.VMID {
			v = append(v, fmt.Sprintf("VM %s (token %s) owned by %s but not on record (%s)", vm.ID, vm.ClientToken, id, in.VMID))
		}
	}
	return v
}

// racingResizes makes two resizes of id race deterministically: a blocker
// holds id's row lock until both requests wait on it (whatever they read
// before), then lets them go. It returns how many were accepted.
func racingResizes(t *testing.T, e *kvxtest.Env, id string) int {
	t.Helper()
	ctx := context.Background()
	side := pgenvtest.Pool(t, e.Database)
	blocker, err := side.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Rollback(ctx)
	if _, err := blocker.Exec(ctx, `SELECT 1 FROM instances WHERE id = $1 FOR UPDATE`, id); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, size := range []string{"medium", "large"} {
		wg.Go(func() {
			_, errs[i] = e.Serve(contract.Request{Op: contract.OpResize, Instance: id, Size: size})
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	// (Or both answered already: the reference gives up on a lock after a
	// second, with busy.)
	e.Wait("two requests waiting on the row lock", func(contract.Snapshot, fakes.Snapshot) bool {
		select {
		case <-done:
			return true
		default:
		}
		var n int
		err := side.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		return err == nil && n == 2
	})
	if err := blocker.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	accepted := 0
	for _, err := range errs {
		switch {
		case err == nil:
			accepted++
		case !contract.IsBusy(err):
			t.Errorf("racing resize: %v", err)
		}
	}
	return accepted
}
