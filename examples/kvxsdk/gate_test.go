package kvxsdk_test

import (
	"context"
	"flag"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/workproof/workproof/examples/kvxsdk"
	"github.com/workproof/workproof/scenarios"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/pgenv/pgenvtest"
)

func TestMain(m *testing.M) { pgenvtest.Main(m) }

var checks = flag.Int("kvxsdk.checks", 4, "programs each property family draws for the SDK reference's gate")

// The SDK reference passes the gate a team runs: every family, zero
// violations; and kvxsdk's own named scenarios.
func TestReferencePassesTheGate(t *testing.T) {
	srv := pgenvtest.Server(t)
	opts := scenarios.Options{
		Name:   "kvxsdk",
		Server: srv,
		Budget: scenarios.Budget{Checks: *checks},
	}
	scenarios.Verify(t, kvxsdk.New(kvxsdk.Options{}), opts)
	for _, sc := range kvxsdk.Scenarios() {
		t.Run("kvxsdk/"+sc.Name, func(t *testing.T) {
			opts.System = kvxsdk.New(kvxsdk.Options{})
			ex, err := scenarios.RunScenario(context.Background(), opts, sc)
			if err != nil {
				t.Fatal(err)
			}
			if ex.Verdict != check.Valid {
				t.Errorf("%s: %s %s %v", sc.Name, ex.Verdict, ex.Result.Reason, ex.Result.Violations)
			}
		})
	}
}

// Each SDK-only mutant is caught by the named scenario aimed at its
// failure, with a violation of the invariant it breaks.
func TestSDKMutantsAreCaught(t *testing.T) {
	for _, m := range kvxsdk.Mutants() {
		t.Run(m.Name, func(t *testing.T) {
			opts := scenarios.Options{
				System: m.New(),
				Name:   "kvxsdk-" + m.Name,
				Server: pgenvtest.Server(t),
				Budget: scenarios.Budget{Settle: 5 * time.Second},
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var ex scenarios.Example
			if i := slices.IndexFunc(kvxsdk.Scenarios(), func(sc scenarios.Named) bool { return sc.Name == m.CaughtBy }); i >= 0 {
				var err error
				if ex, err = scenarios.RunScenario(ctx, opts, kvxsdk.Scenarios()[i]); err != nil {
					t.Fatal(err)
				}
			} else {
				opts.Families = []string{scenarios.FamilyNamed}
				opts.Only = regexp.MustCompile("^" + regexp.QuoteMeta(m.CaughtBy) + "$")
				res, err := scenarios.Run(ctx, opts)
				if err != nil {
					t.Fatal(err)
				}
				if f := res.Families[0]; f.Failure != nil {
					ex = f.Failure.Example
				} else if f.Examples != 1 {
					t.Fatalf("%d examples ran for %s, want 1", f.Examples, m.CaughtBy)
				}
			}
			if ex.Verdict != check.Invalid {
				t.Fatalf("%s not caught by %s: %s %s", m.Name, m.CaughtBy, ex.Verdict, ex.Result.Reason)
			}
			var broke []check.Invariant
			for _, v := range ex.Result.Violations {
				broke = append(broke, v.Invariant)
			}
			if !slices.Contains(broke, m.Breaks) {
				t.Errorf("%s broke %v, want %s", m.Name, broke, m.Breaks)
			}
			t.Logf("%s caught by %s, breaking %v; first: %v", m.Name, m.CaughtBy,
				slices.Compact(slices.Sorted(slices.Values(broke))), ex.Result.Violations[0])
		})
	}
}
