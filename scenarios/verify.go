package scenarios

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/pgenv"
)

// Verify checks a team's system from its own _test.go, in the spirit of
// testing/fstest.TestFS: one subtest per family (and per named scenario),
// one line per violation, the seed, the counterexample and where its report
// was written.
//
//	func TestWorkers(t *testing.T) {
//		scenarios.Verify(t, mysystem.New(), scenarios.Options{})
//	}
//
// Property families run under rapid: a failure is shrunk, saved as a fail
// file under testdata/rapid/ (replayed first on the next run) and printed
// with its -rapid.seed. Unless given on the command line, rapid's
// -rapid.checks and -rapid.shrinktime are set from opts.Budget (rapid reads
// only its flags). Without opts.Server, Verify starts a private Postgres
// (WORKPROOF_DATABASE_URL, else an ephemeral cluster) and stops it at the
// end.
//
// Like nettest, Verify can miss a bug a longer run would find: run it with
// -race, and raise the budget (or run simrun soak) before a release.
func Verify(t *testing.T, sys contract.System, opts Options) {
	t.Helper()
	opts.System = sys
	opts.Budget = opts.Budget.withDefaults()
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	if opts.Server == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		srv, err := pgenv.Start(ctx, pgenv.Options{Logger: opts.Logger})
		cancel()
		if err != nil {
			t.Fatalf("workproof: no Postgres for Verify: %v", err)
		}
		t.Cleanup(func() { _ = srv.Close() })
		opts.Server = srv
	}
	setRapidDefault("rapid.checks", strconv.Itoa(opts.Budget.Checks))
	setRapidDefault("rapid.shrinktime", opts.Budget.ShrinkTime.String())
	fams := opts.Families
	if len(fams) == 0 {
		fams = Families()
	}
	for _, f := range fams {
		t.Run(f, func(t *testing.T) {
			if f == FamilyNamed {
				verifyNamed(t, opts)
				return
			}
			if _, ok := familyKinds[f]; !ok {
				t.Fatalf("workproof: unknown family %q (want one of %v)", f, Families())
			}
			gen := ProgramGen(f, opts.Workers, opts.Budget.Steps)
			rapid.Check(t, func(rt *rapid.T) {
				p := gen.Draw(rt, "program")
				ctx, cancel := context.WithTimeout(context.Background(), 2*opts.Budget.Settle+time.Minute)
				defer cancel()
				ex, err := RunProgram(ctx, opts, p)
				if err != nil {
					rt.Fatalf("workproof: harness error: %v", err)
				}
				if ex.Verdict == check.Invalid {
					rt.Fatalf("%s", failureText(t, ex))
				}
			})
		})
	}
}

// setRapidDefault sets one of rapid's flags unless the command line did.
func setRapidDefault(name, value string) {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	if !set && flag.Lookup(name) != nil {
		_ = flag.Set(name, value)
	}
}

func verifyNamed(t *testing.T, opts Options) {
	for _, sc := range NamedScenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*opts.Budget.Settle+time.Minute)
			defer cancel()
			ex, err := runNamedExample(ctx, opts, sc)
			if errors.Is(err, ErrNotReached) {
				t.Skipf("workproof: inconclusive, the scenario does not fit this system: %v", err)
			}
			if err != nil {
				t.Fatalf("workproof: %v", err)
			}
			switch ex.Verdict {
			case check.Invalid:
				t.Errorf("%s", failureText(t, ex))
			case check.Unknown:
				t.Errorf("workproof: inconclusive: %s", ex.Result.Reason)
			}
		})
	}
}

// failureText is what a failing example prints: the violation lines, the
// program and where the full report (with the evidence) was written.
func failureText(t *testing.T, ex Example) string {
	var b strings.Builder
	fmt.Fprintf(&b, "workproof: %d violation(s) in %s %s:\n", len(ex.Result.Violations), ex.Family, ex.Name)
	for _, v := range ex.Result.Violations {
		fmt.Fprintf(&b, "  %s\n", v)
	}
	if ex.Program != nil {
		b.WriteString(ex.Program.String())
	}
	if path, err := writeReport(t.Name(), ex); err == nil {
		fmt.Fprintf(&b, "report (history, ledgers, state): %s\n", path)
	} else {
		fmt.Fprintf(&b, "report not written: %v\n", err)
	}
	return b.String()
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// writeReport saves the failing example with its evidence as JSON under the
// temp dir (never the module: a green CI run leaves nothing behind).
func writeReport(test string, ex Example) (string, error) {
	dir := filepath.Join(os.TempDir(), "workproof-reports")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	name := fmt.Sprintf("%s-%s.json", unsafeName.ReplaceAllString(test, "_"), time.Now().Format("20060102-150405.000"))
	body, err := json.MarshalIndent(struct {
		Example
		Result any `json:"result"`
	}{ex, ex.Result}, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	return path, os.WriteFile(path, body, 0o644)
}
