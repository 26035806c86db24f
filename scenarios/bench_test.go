package scenarios_test

import (
	"context"
	"testing"

	"github.com/workproof/workproof/kvx"
	"github.com/workproof/workproof/scenarios"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/pgenv/pgenvtest"
)

// BenchmarkExample measures one scenario example end to end on the
// reference: a fresh database clone, a drawn ~30-action chaos program,
// convergence and every check. Target: median ≤ 1 s.
func BenchmarkExample(b *testing.B) {
	opts := scenarios.Options{System: kvx.New(kvx.Options{}), Server: pgenvtest.Server(b), Workers: 2}
	gen := scenarios.ProgramGen(scenarios.FamilyChaos, 2, 30, 0)
	// Programs of exactly 30 actions: draw until one is that long.
	var progs []scenarios.Program
	for seed := 0; len(progs) < 8; seed++ {
		if p := gen.Example(seed); len(p.Actions) >= 25 {
			progs = append(progs, p)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ex, err := scenarios.RunProgram(context.Background(), opts, progs[i%len(progs)])
		if err != nil {
			b.Fatal(err)
		}
		if ex.Verdict != check.Valid {
			b.Fatalf("reference run %s: %v", ex.Verdict, ex.Result.Violations)
		}
	}
}

// BenchmarkNamedScenario measures one named scenario run (the cheapest kind
// of example).
func BenchmarkNamedScenario(b *testing.B) {
	opts := scenarios.Options{System: kvx.New(kvx.Options{}), Server: pgenvtest.Server(b)}
	sc := scenarios.NamedScenarios()[0]
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := scenarios.RunNamed(context.Background(), sc, simOpts(b, opts)); err != nil {
			b.Fatal(err)
		}
	}
}
