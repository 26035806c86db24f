package scenarios_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/kvx"
	"github.com/workproof/workproof/kvx/mutants"
	"github.com/workproof/workproof/scenarios"
	"github.com/workproof/workproof/sim"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/pgenv/pgenvtest"
)

func TestMain(m *testing.M) {
	flag.Parse()
	// A named scenario mostly waits (on faults, and a mutant that never
	// settles waits out the whole liveness bound), so more of them run at
	// once than there are CPUs, unless -test.parallel says otherwise.
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		_ = flag.Set("test.parallel", strconv.Itoa(max(6, runtime.GOMAXPROCS(0))))
	}
	// In CI an interrupted rapid run must not leave a junk fail file in
	// testdata (DEPENDENCIES.md); locally a failure's fail file is kept so
	// the next run replays it first.
	if os.Getenv("CI") != "" {
		_ = flag.Set("rapid.nofailfile", "true")
	}
	pgenvtest.Main(m)
}

func runNamed(t *testing.T, sc scenarios.Named, sys contract.System, seed uint64) sim.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	res, err := scenarios.RunNamed(ctx, sc, sim.Options{
		System: sys,
		Server: pgenvtest.Server(t),
		Seed:   seed,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("%s: %v", sc.Name, err)
	}
	return res
}

func named(t *testing.T, name string) scenarios.Named {
	t.Helper()
	for _, sc := range scenarios.NamedScenarios() {
		if sc.Name == name {
			return sc
		}
	}
	t.Fatalf("no scenario %q", name)
	return scenarios.Named{}
}

// Every named scenario passes on the reference system: valid, converged,
// and zero violations.
func TestNamedScenariosPassOnReference(t *testing.T) {
	t.Parallel()
	for _, sc := range scenarios.NamedScenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			t.Parallel()
			res := runNamed(t, sc, kvx.New(kvx.Options{}), 1)
			for _, v := range res.Violations {
				t.Errorf("violation: %s", v)
			}
			if res.Verdict != check.Valid {
				t.Errorf("verdict %s (%s), want valid", res.Verdict, res.Reason)
			}
		})
	}
}

// Each broken variant is caught by the scenario aimed at it, with a
// violation of the invariant it breaks.
func TestNamedScenariosCatchMutants(t *testing.T) {
	t.Parallel()
	for _, m := range mutants.All() {
		scName := m.CaughtBy
		if scName == "" {
			continue // no scenario was written for it
		}
		t.Run(m.Name, func(t *testing.T) {
			t.Parallel()
			sc := named(t, scName)
			// A race needs the interleaving to happen; try a few seeds,
			// until one shows a violation of the invariant the mutant
			// breaks.
			breaks := func(res sim.Result) bool {
				return slices.ContainsFunc(res.Violations, func(v check.Violation) bool { return v.Invariant == m.Breaks })
			}
			var res sim.Result
			for seed := uint64(1); seed <= 5; seed++ {
				res = runNamed(t, sc, m.New(), seed)
				if breaks(res) {
					if seed > 1 {
						t.Logf("caught on seed %d", seed)
					}
					break
				}
			}
			for _, v := range res.Violations {
				t.Logf("violation: %s", v)
			}
			if !breaks(res) {
				t.Errorf("%s not caught by %s: verdict %s, no %s violation among %d", m.Name, scName, res.Verdict, m.Breaks, len(res.Violations))
			}
		})
	}
}

func TestScenarioNotReachedIsAnError(t *testing.T) {
	sc := scenarios.Named{Name: "never", Run: func(ctx context.Context, e *sim.Env) error {
		return scenarios.ErrNotReached
	}}
	_, err := scenarios.RunNamed(context.Background(), sc, sim.Options{System: kvx.New(kvx.Options{}), Server: pgenvtest.Server(t)})
	if !errors.Is(err, scenarios.ErrNotReached) || !strings.Contains(err.Error(), "never") {
		t.Fatalf("err = %v", err)
	}
}

func simOpts(tb testing.TB, o scenarios.Options) sim.Options {
	return sim.Options{System: o.System, Server: o.Server, Workers: o.Workers, Logger: slog.New(slog.DiscardHandler)}
}

// A correct variant that makes its deployment with POST (and PUT on 409)
// never meets the faults aimed at Apply: those scenarios say so
// (inconclusive), never pass for it.
func TestScenarioWhoseFaultNeverFiresIsInconclusive(t *testing.T) {
	postThenPut := kvx.New(kvx.Options{Steps: kvx.Steps{ApplyDeployment: func(ctx context.Context, e *kvx.Env, c kvx.Change) error {
		return e.Call(ctx, "create or update deployment", func(ctx context.Context) error {
			d := fakes.Deployment{Name: kvx.DeploymentName(c.ID), Owner: c.ID, Size: c.Size, Replicas: kvx.Replicas}
			_, err := e.Kube.Create(ctx, d)
			if fakes.IsConflict(err) {
				_, err = e.Kube.Update(ctx, d)
			}
			return err
		})
	}}})
	ex, err := scenarios.RunScenario(context.Background(), scenarios.Options{System: postThenPut, Server: pgenvtest.Server(t)}, named(t, "transient-outage"))
	if err != nil {
		t.Fatal(err)
	}
	if ex.Verdict != check.Unknown || !strings.Contains(ex.Result.Reason, "no provider fault") {
		t.Fatalf("verdict %s (%s), want unknown: the scenario's fault never met a request", ex.Verdict, ex.Result.Reason)
	}
}

// A system too slow for a scenario's step is no harness error: the run
// still ends with its checks, and says why it could not decide.
func TestSlowSystemIsInconclusiveNotAnError(t *testing.T) {
	sc := scenarios.Named{Name: "slow", Run: func(ctx context.Context, e *sim.Env) error {
		return fmt.Errorf("%w: pretend the instance never got idle", scenarios.ErrSlow)
	}}
	ex, err := scenarios.RunScenario(context.Background(), scenarios.Options{System: kvx.New(kvx.Options{}), Server: pgenvtest.Server(t)}, sc)
	if err != nil {
		t.Fatalf("a slow system made a harness error: %v", err)
	}
	if ex.Verdict != check.Unknown || !strings.Contains(ex.Result.Reason, "never got idle") {
		t.Fatalf("verdict %s (%s), want unknown with the reason", ex.Verdict, ex.Result.Reason)
	}
}

// The unscripted mutants are what their name says: no named scenario
// catches any of them (only systematic exploration is meant to), unless a
// slow machine alone exposes the bug (Mutant.Slowness): that catch is true,
// and logged.
func TestNoNamedScenarioCatchesUnscriptedMutants(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every named scenario on seven systems")
	}
	t.Parallel()
	for _, m := range mutants.All() {
		if m.CaughtBy != "" {
			continue
		}
		t.Run(m.Name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			res, err := scenarios.Run(ctx, scenarios.Options{System: m.New(), Name: m.Name, Server: pgenvtest.Server(t),
				Families: []string{scenarios.FamilyNamed}, Parallel: 2})
			if err != nil {
				t.Fatal(err)
			}
			if f := res.Families[0].Failure; f != nil && m.Slowness != "" {
				t.Logf("named scenario %s caught %s, as a slow machine may (%s): %v", f.Name, m.Name, m.Slowness, f.Violations)
			} else if f != nil {
				t.Errorf("named scenario %s catches %s, which is meant to be unscripted: %v", f.Name, m.Name, f.Violations)
			}
		})
	}
}

// slowCreate is kvx with a create that answers only when its request
// times out: a system too slow for a loaded machine's step.
type slowCreate struct{ contract.System }

func (s slowCreate) Serve(ctx context.Context, db *pgxpool.Pool, req contract.Request) (contract.Response, error) {
	if req.Op == contract.OpCreate {
		<-ctx.Done()
		return contract.Response{}, ctx.Err()
	}
	return s.System.Serve(ctx, db, req)
}

// A scenario's create that times out is the system being slow (seen on a
// loaded machine: "create i1: ... context deadline exceeded" was a harness
// error that failed the whole gate), not a harness error.
func TestTimedOutCreateIsInconclusiveNotAnError(t *testing.T) {
	var sc scenarios.Named
	for _, n := range scenarios.NamedScenarios() {
		if n.Name == "crash-mid-delete" {
			sc = n
		}
	}
	ex, err := scenarios.RunScenario(context.Background(), scenarios.Options{System: slowCreate{kvx.New(kvx.Options{})}, Server: pgenvtest.Server(t)}, sc)
	if err != nil {
		t.Fatalf("a timed-out create made a harness error: %v", err)
	}
	if ex.Verdict != check.Unknown || !strings.Contains(ex.Result.Reason, "create i1") {
		t.Fatalf("verdict %s (%s), want unknown, naming the create", ex.Verdict, ex.Result.Reason)
	}
}
