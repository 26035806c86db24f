package scenarios_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/kvx"
	"github.com/workproof/workproof/kvx/mutants"
	"github.com/workproof/workproof/scenarios"
	"github.com/workproof/workproof/sim"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/pgenv/pgenvtest"
)

func TestMain(m *testing.M) { pgenvtest.Main(m) }

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
	catches := map[string]string{
		"FreshTokenPerAttempt": "crash-after-vm-before-commit",
		"CheckThenAct":         "concurrent-resizes",
		"EmailInTx":            "crash-after-email-before-commit",
		"DeleteRowFirst":       "crash-mid-delete",
	}
	for _, m := range mutants.All() {
		scName, ok := catches[m.Name]
		if !ok {
			continue
		}
		t.Run(m.Name, func(t *testing.T) {
			t.Parallel()
			sc := named(t, scName)
			// A race needs the interleaving to happen; try a few seeds.
			var res sim.Result
			for seed := uint64(1); seed <= 5; seed++ {
				res = runNamed(t, sc, m.New(), seed)
				if res.Verdict == check.Invalid {
					break
				}
			}
			if res.Verdict != check.Invalid {
				t.Fatalf("%s not caught by %s: verdict %s", m.Name, scName, res.Verdict)
			}
			found := false
			for _, v := range res.Violations {
				t.Logf("violation: %s", v)
				found = found || v.Invariant == m.Breaks
			}
			if !found {
				t.Errorf("no %s violation among %d", m.Breaks, len(res.Violations))
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
