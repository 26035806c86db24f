package nemesis_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/kvx"
	"github.com/workproof/workproof/sim"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/nemesis"
	"github.com/workproof/workproof/sim/pgenv/pgenvtest"
)

func TestMain(m *testing.M) { pgenvtest.Main(m) }

func TestCatalogueIsConsistent(t *testing.T) {
	seen := map[string]bool{}
	classes := map[nemesis.Class]bool{}
	for _, c := range nemesis.Classes() {
		classes[c] = true
	}
	for _, k := range nemesis.Catalogue() {
		if seen[k.Name()] || k.Doc() == "" || !classes[k.Class()] {
			t.Errorf("kind %q: repeated, undocumented or of unknown class %q", k.Name(), k.Class())
		}
		seen[k.Name()] = true
		if got, ok := nemesis.KindNamed(k.Name()); !ok || got.Name() != k.Name() {
			t.Errorf("KindNamed(%q) = %v, %v", k.Name(), got, ok)
		}
	}
}

// Every draw of every kind is a fault its own Check accepts, and one seed
// draws one fault.
func TestDrawsAreValidAndSeeded(t *testing.T) {
	s := nemesis.NewSpace(2)
	s.Reached = []string{"cloud:CreateVM", "sql:commit"}
	for _, k := range nemesis.Catalogue() {
		for seed := range uint64(50) {
			a := k.Draw(nemesis.RandDrawer{R: rand.New(rand.NewPCG(seed, 1))}, s)
			b := k.Draw(nemesis.RandDrawer{R: rand.New(rand.NewPCG(seed, 1))}, s)
			if a != b {
				t.Fatalf("%s seed %d drew %v and %v", k.Name(), seed, a, b)
			}
			if a.Kind != k.Name() {
				t.Fatalf("%s drew a fault of kind %q", k.Name(), a.Kind)
			}
			if err := nemesis.Check(a, s); err != nil {
				t.Errorf("%s seed %d drew %v, which Check refuses: %v", k.Name(), seed, a, err)
			}
		}
	}
}

func TestCheckRefusesBadFaults(t *testing.T) {
	s := nemesis.NewSpace(2)
	for _, f := range []nemesis.Fault{
		{Kind: "galactic"},
		{Kind: nemesis.KindCrash, Worker: "w9", Target: "any"},
		{Kind: nemesis.KindCrash, Worker: "w1", Target: "nowhere"},
		{Kind: nemesis.KindCrash, Worker: "w1", Target: "at:sql:commit#0"},
		{Kind: nemesis.KindLinkLatency, Worker: "w1", Target: "postgres", Param: "down", N: -100},
		{Kind: nemesis.KindLinkCut, Worker: "*", Target: "dns", Param: "up"},
		{Kind: nemesis.KindProviderTransient, Target: "cloud:Teleport", Param: "503", N: 1},
		{Kind: nemesis.KindProviderAmbiguous, Target: "billing:CreateCharge", Param: "418", N: 1},
		{Kind: nemesis.KindDeployBug, Target: "cloud"},
		{Kind: nemesis.KindSQLError, Worker: "w1", Param: "99999", N: 1},
	} {
		if err := nemesis.Check(f, s); err == nil {
			t.Errorf("Check(%v) accepted it", f)
		}
	}
}

func TestRuleNames(t *testing.T) {
	s := nemesis.NewSpace(1)
	for name, want := range map[string]string{
		"after:cloud:CreateVM:then-commit": "at sql:commit after cloud:CreateVM:done",
		"before:kube:Apply":                "at kube:Apply",
		"at:sql:insert work#3":             "at sql:insert work (#3)",
		"any":                              "at any point",
	} {
		r, err := nemesis.Rule(s, name)
		if err != nil || r.String() != want {
			t.Errorf("Rule(%q) = %v, %v; want %s", name, r, err, want)
		}
	}
}

// Every kind injects on the reference system, and the run still ends
// valid: the catalogue's faults are survivable by a correct system, and
// Finish heals every one of them.
func TestEveryKindInjectsAndHeals(t *testing.T) {
	for _, k := range nemesis.Catalogue() {
		t.Run(k.Name(), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			e, err := sim.New(ctx, sim.Options{System: kvx.New(kvx.Options{}), Server: pgenvtest.Server(t), Workers: 2,
				Seed: 7, PrivateServer: k.Name() == nemesis.KindPostgresRestart})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			if _, err := e.Serve(ctx, "u", contract.Request{Op: contract.OpCreate, Instance: "i1", Size: "small"}); err != nil {
				t.Fatal(err)
			}
			s := nemesis.NewSpace(2)
			for seed := range uint64(3) {
				f := k.Draw(nemesis.RandDrawer{R: rand.New(rand.NewPCG(seed, 9))}, s)
				if err := nemesis.Inject(ctx, e, f); err != nil {
					t.Fatalf("inject %v: %v", f, err)
				}
				_, _ = e.Serve(ctx, "u", contract.Request{Op: contract.OpCreate, Instance: fmt.Sprintf("j%d", seed), Size: "medium"})
			}
			time.Sleep(100 * time.Millisecond)
			for _, c := range nemesis.Classes() {
				if err := nemesis.Heal(ctx, e, c); err != nil {
					t.Fatalf("heal %s: %v", c, err)
				}
			}
			res, err := e.Finish(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if res.Verdict != check.Valid {
				t.Fatalf("verdict %s after %s: %v (%s)", res.Verdict, k.Name(), res.Violations, res.Reason)
			}
		})
	}
}

// A Postgres restart on a shared server is reported unavailable.
func TestRestartUnavailableOnSharedServer(t *testing.T) {
	ctx := context.Background()
	e, err := sim.New(ctx, sim.Options{System: kvx.New(kvx.Options{}), Server: pgenvtest.Server(t), Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	err = nemesis.Inject(ctx, e, nemesis.Fault{Kind: nemesis.KindPostgresRestart})
	if !errors.Is(err, sim.ErrUnavailable) {
		t.Fatalf("err = %v, want sim.ErrUnavailable", err)
	}
}
