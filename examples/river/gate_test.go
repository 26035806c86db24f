package riverkvx_test

import (
	"context"
	"flag"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/workproof/workproof/contract"
	riverkvx "github.com/workproof/workproof/examples/river"
	"github.com/workproof/workproof/scenarios"
	"github.com/workproof/workproof/sim"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/pgenv/pgenvtest"
)

func TestMain(m *testing.M) { pgenvtest.Main(m) }

var checks = flag.Int("river.checks", 4, "programs each property family draws for the River system's gate")

// The River system passes the gate a team runs, unchanged: every family,
// zero violations, held to the bounds it declares. In CI the explore family
// runs one shard ($WORKPROOF_EXPLORE_SHARD); the whole exploration was run
// and valid when this was written (README.md).
func TestReferencePassesTheGate(t *testing.T) {
	t.Parallel() // beside the mutants: both mostly wait out River's rescuer
	scenarios.Verify(t, riverkvx.New(riverkvx.Options{}), scenarios.Options{
		Name:    "river",
		Command: "go run ./cmd/simrun",
		Server:  pgenvtest.Server(t),
		Budget:  scenarios.Budget{Checks: *checks},
	})
}

// The promise is derived from the default Tuning and River's own fixed
// intervals, and every mutant keeps it, whatever it tunes: RiverDefaults
// must be held to the tuned system's bounds, or it would pass.
func TestPromise(t *testing.T) {
	tune := riverkvx.New(riverkvx.Options{}).Tuning()
	if tune.RescueStuckJobsAfter <= tune.JobTimeout {
		t.Errorf("RescueStuckJobsAfter %v must exceed JobTimeout %v", tune.RescueStuckJobsAfter, tune.JobTimeout)
	}
	p := riverkvx.Promise()
	want := tune.RescueStuckJobsAfter + 30*time.Second + 5*time.Second + tune.JobTimeout
	if p.Takeover != want || p.Settle <= p.Takeover || p.Claim != contract.ClaimRow {
		t.Errorf("promise %+v: want takeover %v (rescue after + rescuer interval + scheduler interval + a job), settle above it, a row claim", p, want)
	}
	for _, m := range riverkvx.Mutants() {
		if got := contract.LivenessOf(m.New()); got != contract.LivenessOf(riverkvx.New(riverkvx.Options{})) {
			t.Errorf("%s declares %+v, want the reference's promise", m.Name, got)
		}
	}
}

// Each River mutant is caught by the named scenario aimed at its failure,
// in every run, with a violation of the invariant it breaks. A race needs
// its interleaving: when a run shows the mutant's damage another way (the
// stale change parked), a few more seeds are tried for the race itself.
func TestMutantsAreCaught(t *testing.T) {
	t.Parallel()
	for _, m := range riverkvx.Mutants() {
		t.Run(m.Name, func(t *testing.T) {
			t.Parallel()
			var f scenarios.FamilyResult
			var broke []check.Invariant
			for seed := uint64(1); seed <= 3 && !slices.Contains(broke, m.Breaks); seed++ {
				f, broke = catch(t, m, seed)
				if seed > 1 {
					t.Logf("seed %d: broke %v", seed, slices.Compact(slices.Sorted(slices.Values(broke))))
				}
			}
			for _, v := range f.Failure.Violations[:min(5, len(f.Failure.Violations))] {
				t.Logf("violation: %s", v)
			}
			if !slices.Contains(broke, m.Breaks) {
				t.Errorf("%s broke %v, want %s", m.Name, slices.Compact(slices.Sorted(slices.Values(broke))), m.Breaks)
			}
			if m.Name == "RiverDefaults" {
				// The hour-long stuck job: the liveness phase says the
				// promise was broken, in its own words.
				i := slices.IndexFunc(f.Failure.Violations, func(v check.Violation) bool { return v.Rule == sim.RuleSettleBound })
				if i < 0 || !strings.Contains(f.Failure.Violations[i].Message, "promised to settle within "+riverkvx.Promise().Settle.String()) {
					t.Errorf("RiverDefaults: no %s violation naming the promise among %v", sim.RuleSettleBound, f.Failure.Violations)
				}
			}
		})
	}
}

// catch runs m's named scenario once and fails t unless it is caught; it
// returns the family and the invariants broken.
func catch(t *testing.T, m riverkvx.Mutant, seed uint64) (scenarios.FamilyResult, []check.Invariant) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := scenarios.Run(ctx, scenarios.Options{
		System:   m.New(),
		Name:     m.Name,
		Seed:     seed,
		Server:   pgenvtest.Server(t),
		Families: []string{scenarios.FamilyNamed},
		Only:     regexp.MustCompile("^" + regexp.QuoteMeta(m.CaughtBy) + "$"),
	})
	if err != nil {
		t.Fatal(err)
	}
	f := res.Families[0]
	if f.Examples != 1 {
		t.Fatalf("%d examples ran for %s, want 1", f.Examples, m.CaughtBy)
	}
	if f.Failure == nil {
		t.Fatalf("%s not caught by %s (seed %d): %s %v", m.Name, m.CaughtBy, seed, f.Verdict, f.Unknown)
	}
	var broke []check.Invariant
	for _, v := range f.Failure.Violations {
		broke = append(broke, v.Invariant)
	}
	return f, broke
}
