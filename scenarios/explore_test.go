package scenarios_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/kvx"
	"github.com/workproof/workproof/kvx/mutants"
	"github.com/workproof/workproof/scenarios"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/nemesis"
	"github.com/workproof/workproof/sim/pgenv/pgenvtest"
)

func TestExperimentIDsRoundTrip(t *testing.T) {
	for _, x := range []scenarios.Experiment{
		{Workload: "create", Fault: "baseline"},
		{Workload: "create", Spot: scenarios.Spot{Item: "1", Entry: 1, Point: "cloud:CreateVM:done", Nth: 1}, Fault: "crash"},
		{Workload: "create-resize", Spot: scenarios.Spot{Client: "u2", Point: "sql:insert work", Nth: 2}, Fault: "cut-answer"},
		{Workload: "recreate", Spot: scenarios.Spot{Item: "4", Entry: 2, Point: "billing:CreateCharge", Nth: 1}, Fault: "timeout-over",
			With: []nemesis.Fault{{Kind: nemesis.KindProviderLag, Target: "cloud", N: 2000}}},
	} {
		got, err := scenarios.ParseExperiment(x.ID())
		if err != nil {
			t.Fatalf("ParseExperiment(%q): %v", x.ID(), err)
		}
		if d := cmp.Diff(x, got); d != "" {
			t.Errorf("%s round trip (-want +got):\n%s", x.ID(), d)
		}
	}
	for _, bad := range []string{
		"", "nowhere|baseline", "create|item=1.1@cloud:CreateVM#1", "create|item=1@cloud:CreateVM#1|crash",
		"create|item=1.1@cloud:CreateVM#0|crash", "create|item=1.1@cloud:CreateVM:done#1|teleport",
		"create|item=1.1@sql:select work#1|sql-40001", "create|baseline|with=provider-lag:cloud:-5",
	} {
		if _, err := scenarios.ParseExperiment(bad); err == nil {
			t.Errorf("ParseExperiment(%q) accepted it", bad)
		}
	}
}

// Every experiment id lands in exactly one shard of n, whatever n.
func TestShardsPartitionTheExperiments(t *testing.T) {
	ids := []string{"create|baseline", "create|item=1.1@cloud:CreateVM:done#1|crash", "recreate|api=u3@sql:commit#1|crash"}
	for n := 1; n <= 5; n++ {
		for _, id := range ids {
			hits := 0
			for i := 1; i <= n; i++ {
				sh, err := scenarios.ParseShard(strings.Join([]string{itoa(i), itoa(n)}, "/"))
				if err != nil {
					t.Fatal(err)
				}
				if x, _ := scenarios.ParseExperiment(id); sh.String() != "" && inShard(sh, x) {
					hits++
				}
			}
			if hits != 1 {
				t.Errorf("%s is in %d of %d shards", id, hits, n)
			}
		}
	}
	for _, bad := range []string{"0/3", "4/3", "1/0", "a/b", "2"} {
		if _, err := scenarios.ParseShard(bad); err == nil {
			t.Errorf("ParseShard(%q) accepted it", bad)
		}
	}
}

func itoa(i int) string { return string(rune('0' + i)) }

func inShard(sh scenarios.Shard, x scenarios.Experiment) bool { return sh.Has(x.ID()) }

// Bugs no named scenario was written for, each exposed by the one
// experiment that aims at it — deterministically: every run of the
// experiment shows the violation on the mutant (but for one that Postgres
// itself makes a matter of timing, below), and none on the reference.
// Not parallel with the other tests: SynchronousCommitOff's loss is by
// chance (below), and seen less often while the whole package runs at once.
func TestExperimentsExposeUnscriptedMutants(t *testing.T) {
	for _, c := range []struct {
		mutant, experiment string
	}{
		{"AcceptInTwoTx", "create|api=u1@sql:begin#2|crash"},
		{"TimeoutMeansNotCharged", "create|item=1.1@billing:CreateCharge#1|timeout-over"},
		{"SettleChargeByOwner", "create-resize|item=3.1@billing:CreateCharge#1|transient-hang"},
		{"ListSettlesAmbiguousCreate", "create|item=1.1@cloud:CreateVM#1|ambiguous-500|with=provider-lag:cloud:2000"},
		{"TransientDBErrorParks", "create|item=1.1@sql:update instances#1|sql-40001"},
		{"SynchronousCommitOff", "create|item=2.1@email:Send:done#1|restart"},
		{"LeaseShorterThanCall", "create|item=1.1@cloud:CreateVM#1|timeout-under"},
		{"GiveUpAfterRetries", "create|item=1.1@kube:Apply#1|outage"},
	} {
		t.Run(c.mutant, func(t *testing.T) {
			t.Parallel()
			m := mutantNamed(t, c.mutant)
			x, err := scenarios.ParseExperiment(c.experiment)
			if err != nil {
				t.Fatal(err)
			}
			run := func(sys contract.System, mustReach bool) scenarios.Example {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				ex, err := scenarios.RunExperiment(ctx, scenarios.Options{System: sys, Server: pgenvtest.Server(t)}, x)
				if err != nil {
					t.Fatal(err)
				}
				if ex.Unreached && mustReach {
					t.Fatalf("%s: the experiment's spot never came", c.experiment)
				}
				return ex
			}
			if c.mutant == "SynchronousCommitOff" {
				// Not deterministic, by Postgres: an asynchronous commit is
				// lost in a crash only if the WAL writer did not flush it
				// first, and its wakeup every wal_writer_delay (10 s, the
				// most it allows) falls at a moment the run does not
				// choose. Under -race on a loaded machine the window from
				// the commit to the restart grows to tenths of a second,
				// so a single run misses it now and then: one of five
				// must show it.
				var last scenarios.Example
				for range 5 {
					if last = run(m.New(), true); check.HasInvariant(last.Result.Violations, m.Breaks) {
						break
					}
				}
				if !check.HasInvariant(last.Result.Violations, m.Breaks) {
					t.Errorf("%s on %s: no %s violation in 5 attempts (last: %s %v)", c.experiment, m.Name, m.Breaks, last.Verdict, last.Result.Violations)
				}
			} else {
				for attempt := 1; attempt <= 2; attempt++ {
					if ex := run(m.New(), true); !check.HasInvariant(ex.Result.Violations, m.Breaks) {
						t.Errorf("attempt %d: %s on %s: verdict %s, no %s violation in %v", attempt, c.experiment, m.Name, ex.Verdict, m.Breaks, ex.Result.Violations)
					}
				}
			}
			// (The reference may not even pass the mutant's point.)
			if ex := run(kvx.New(kvx.Options{}), false); ex.Verdict != check.Valid {
				t.Errorf("%s on the reference: %s %v", c.experiment, ex.Verdict, ex.Result.Violations)
			}
		})
	}
}

func mutantNamed(t *testing.T, name string) mutants.Mutant {
	t.Helper()
	for _, m := range mutants.All() {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("no mutant %q", name)
	return mutants.Mutant{}
}

// One deterministic quarter of the exploration passes on the reference,
// nearly every experiment's spot reached; the whole family runs in simrun
// gate and make falsealarms.
//
// Which points a workload's trace reaches is timing: on a loaded machine a
// user request's transaction may roll back on a lock timeout in the trace
// and not in the experiment, and fewer spots are traced at all (64–95 under
// load 11–16, against 100 and more on a quiet machine). So the coverage
// bounds catch an exploration that does nothing or misses systematically,
// not one that met a loaded machine.
func TestExploreReferenceShard(t *testing.T) {
	if testing.Short() {
		t.Skip("explores for about a minute")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	sh, _ := scenarios.ParseShard("2/4")
	res, err := scenarios.Run(ctx, scenarios.Options{
		System: kvx.New(kvx.Options{}), Server: pgenvtest.Server(t), Families: []string{scenarios.FamilyExplore},
		Shard: sh, Budget: scenarios.Budget{ExploreAll: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	fr := res.Families[0]
	c := fr.Coverage
	t.Logf("%d experiments (%d pairs) in %v; pruned %v", c.Experiments, c.Pairs, fr.Duration.Round(time.Second), c.Pruned)
	if fr.Verdict != check.Valid {
		t.Errorf("verdict %s: failed %v, unknown %v", fr.Verdict, c.Failed, fr.Unknown)
		if fr.Failure != nil {
			for _, v := range fr.Failure.Violations {
				t.Errorf("  %s", v)
			}
		}
	}
	if len(c.Unreached) > 0 {
		t.Logf("%d experiments did not reach their spot: %v", len(c.Unreached), c.Unreached)
	}
	if 5*len(c.Unreached) > c.Experiments {
		t.Errorf("%d of %d experiments did not reach their spot (more than a fifth)", len(c.Unreached), c.Experiments)
	}
	if c.Workloads != len(scenarios.Workloads()) || c.Spots < 50 || c.Experiments < 50 {
		t.Errorf("explored too little: %+v", c)
	}
}
