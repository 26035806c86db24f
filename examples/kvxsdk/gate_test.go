package kvxsdk_test

import (
	"context"
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

// The SDK reference passes the gate a team runs: every family, zero
// violations.
func TestReferencePassesTheGate(t *testing.T) {
	scenarios.Verify(t, kvxsdk.New(kvxsdk.Options{}), scenarios.Options{
		Name:   "kvxsdk",
		Server: pgenvtest.Server(t),
		Budget: scenarios.Budget{Checks: 4},
	})
}

// Each SDK-only mutant is caught, with a violation of the invariant it
// breaks.
func TestSDKMutantsAreCaught(t *testing.T) {
	for _, m := range kvxsdk.Mutants() {
		t.Run(m.Name, func(t *testing.T) {
			opts := scenarios.Options{
				System:   m.New(),
				Name:     "kvxsdk-" + m.Name,
				Server:   pgenvtest.Server(t),
				Families: []string{m.Family},
				Budget:   scenarios.Budget{Checks: 8, Settle: 5 * time.Second, ShrinkTime: time.Second},
			}
			if m.CaughtBy != "" {
				opts.Only = regexp.MustCompile("^" + regexp.QuoteMeta(m.CaughtBy) + "$")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			res, err := scenarios.Run(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			if res.Verdict != check.Invalid {
				t.Fatalf("%s not caught by the %s family: %s", m.Name, m.Family, res.Verdict)
			}
			f := res.Families[0].Failure
			var broke []check.Invariant
			for _, v := range f.Violations {
				broke = append(broke, v.Invariant)
			}
			if !slices.Contains(broke, m.Breaks) {
				t.Errorf("%s broke %v, want %s", m.Name, broke, m.Breaks)
			}
			t.Logf("%s caught by %s %s in %v, breaking %v; first: %v", m.Name, f.Family, f.Name, f.Detect, slices.Compact(slices.Sorted(slices.Values(broke))), f.Violations[0])
		})
	}
}
