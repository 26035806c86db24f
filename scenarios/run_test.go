package scenarios_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/workproof/workproof/kvx"
	"github.com/workproof/workproof/kvx/mutants"
	"github.com/workproof/workproof/scenarios"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/pgenv/pgenvtest"
)

// Programs are data drawn from sorted vocabularies: one seed, one program.
func TestProgramGenIsDeterministic(t *testing.T) {
	for _, fam := range []string{scenarios.FamilyCrash, scenarios.FamilyNetwork, scenarios.FamilyProvider, scenarios.FamilyChaos} {
		gen := scenarios.ProgramGen(fam, 2, 20, 0)
		for seed := range 20 {
			a, b := gen.Example(seed), gen.Example(seed)
			if a.String() != b.String() {
				t.Fatalf("%s seed %d drew two programs:\n%s\n%s", fam, seed, a, b)
			}
		}
	}
}

// Budget.Instances widens the ids drawn programs use: i1 to iN, every one
// of them in some program, none beyond.
func TestProgramGenInstances(t *testing.T) {
	seen := map[string]bool{}
	gen := scenarios.ProgramGen(scenarios.FamilyCrash, 2, 20, 10)
	for seed := range 100 {
		for _, a := range gen.Example(seed).Actions {
			if a.Instance != "" {
				seen[a.Instance] = true
			}
		}
	}
	for i := 1; i <= 10; i++ {
		if !seen[fmt.Sprintf("i%d", i)] {
			t.Errorf("no program of 100 used i%d (seen %v)", i, seen)
		}
	}
	if len(seen) != 10 {
		t.Errorf("ids used: %v, want i1 to i10", seen)
	}
}

// The reference passes the named scenarios and every property family
// across seeds (the explore family has tests of its own:
// TestExploreReferenceShard).
func TestVerifyReference(t *testing.T) {
	t.Parallel()
	var fams []string
	for _, f := range scenarios.Families() {
		if f != scenarios.FamilyExplore {
			fams = append(fams, f)
		}
	}
	scenarios.Verify(t, kvx.New(kvx.Options{}), scenarios.Options{
		Server:   pgenvtest.Server(t),
		Families: fams,
		Budget:   scenarios.Budget{Checks: 4},
	})
}

// Run finds a seeded bug, shrinks it and tells how to replay it. One
// worker slot: with two, which worker claims the item a drawn crash names is
// a race, and 30 programs can miss the mutant (cmd/simrun's
// TestGateCounterexampleReplays did, in CI).
func TestRunCatchesMutantAndShrinks(t *testing.T) {
	t.Parallel()
	var m mutants.Mutant
	for _, x := range mutants.All() {
		if x.Name == "FreshTokenPerAttempt" {
			m = x
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := scenarios.Run(ctx, scenarios.Options{
		System:   m.New(),
		Name:     m.Name,
		Server:   pgenvtest.Server(t),
		Families: []string{scenarios.FamilyCrash},
		Workers:  1,
		Seed:     1,
		Budget:   scenarios.Budget{Checks: 30, ShrinkTime: 30 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict != check.Invalid {
		t.Fatalf("verdict %s, want invalid", res.Verdict)
	}
	f := res.Families[0].Failure
	t.Logf("caught after %d examples in %v; counterexample (%d → %d actions):\n%s%s",
		res.Families[0].Examples, f.Detect, len(f.Original.Actions), len(f.Program.Actions), f.Program, f.Violations)
	if len(f.Program.Actions) > len(f.Original.Actions) {
		t.Errorf("shrunk program is longer than the original")
	}
	if !strings.Contains(f.Replay, "-seed") || !check.HasInvariant(f.Violations, m.Breaks) {
		t.Errorf("replay %q / violations %v", f.Replay, f.Violations)
	}
}
