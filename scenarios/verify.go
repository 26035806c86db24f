package scenarios

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/reports"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/pgenv"
)

// Verify checks a team's system from its own _test.go, in the spirit of
// testing/fstest.TestFS: one subtest per family and, inside it, one per
// example (a named scenario, a drawn program's seed), one line per
// violation, the seed, the counterexample, the command that replays it, and
// where the report with the evidence was written.
//
//	func TestWorkers(t *testing.T) {
//		scenarios.Verify(t, mysystem.New(), scenarios.Options{})
//	}
//
// Verify runs the same families through the same runner as Run (and simrun
// gate), at once as Run does, and returns when all have ended: a failing
// program is shrunk by deleting actions and printed with its seed, and —
// unless $CI is set — saved under testdata/workproof/<Test>/ (a fail file),
// which the next run replays first, until it passes. Reports go to the
// test's artifact directory (t.ArtifactDir: kept with go test -artifacts,
// else removed with the test). Without opts.Server, Verify starts a
// private Postgres (WORKPROOF_DATABASE_URL, else an ephemeral cluster) and
// stops it at the end.
//
// Like nettest, Verify can miss a bug a longer run would find: run it with
// -race, and raise the budget (Options.Budget.Checks, or simrun gate
// -checks) or run simrun soak before a release.
func Verify(t *testing.T, sys contract.System, opts Options) {
	t.Helper()
	opts.System = sys
	if v := os.Getenv(EnvExploreShard); v != "" && opts.Shard.Count == 0 {
		sh, err := ParseShard(v)
		if err != nil {
			t.Fatalf("workproof: $%s: %v", EnvExploreShard, err)
		}
		opts.Shard = sh
	}
	opts = opts.withDefaults()
	if err := opts.checkFamilies(); err != nil {
		t.Fatalf("workproof: %v", err)
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
	failDir := filepath.Join("testdata", "workproof", unsafeName.ReplaceAllString(t.Name(), "_"))
	// The families run at once, as in Run, sharing one bound of
	// environments; Verify still returns only when every one has ended.
	opts.adm = opts.admission()
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, f := range opts.Families {
		wg.Go(func() {
			t.Run(f, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), opts.Budget.Time+10*opts.liveness().Settle+opts.Budget.ShrinkTime)
				defer cancel()
				if isPropertyFamily(f) && replayFailFile(ctx, t, opts, filepath.Join(failDir, f+".json")) {
					return
				}
				fo := opts
				fo.Progress = func(ex Example) {
					t.Run(ex.Name, func(t *testing.T) {
						switch ex.Verdict {
						case check.Unknown:
							t.Skipf("workproof: inconclusive: %s", ex.Result.Reason)
						case check.Invalid:
							t.Errorf("workproof: %s %s is invalid (shrinking it; the family's failure follows)", ex.Family, ex.Name)
						}
					})
					if opts.Progress != nil {
						opts.Progress(ex)
					}
				}
				fr, err := runFamily(ctx, fo, f)
				if err != nil {
					t.Fatalf("workproof: harness error: %v", err)
				}
				if fr.Failure == nil {
					return
				}
				msg := failureText(t, opts.Name, fr.Failure.Example, fr.Failure.Replay)
				if fr.Failure.Program != nil && os.Getenv("CI") == "" {
					path := filepath.Join(failDir, f+".json")
					if err := writeFailFile(path, *fr.Failure.Program); err != nil {
						msg += fmt.Sprintf("fail file not written: %v\n", err)
					} else {
						msg += fmt.Sprintf("fail file (replayed first next time): %s\n", path)
					}
				}
				t.Error(msg)
			})
		})
	}
}

// EnvExploreShard, "i/n", makes Verify run only shard i of n of the explore
// family's experiments (when Options.Shard is zero): a CI job matrix splits
// the exploration across jobs.
const EnvExploreShard = "WORKPROOF_EXPLORE_SHARD"

// replayFailFile runs a counterexample a previous run saved. It reports
// whether it still fails (and then fails t); a program that passes now is
// removed, and the family runs as usual.
func replayFailFile(ctx context.Context, t *testing.T, opts Options, path string) bool {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	if err != nil {
		t.Fatalf("workproof: fail file: %v", err)
	}
	var p Program
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("workproof: fail file %s: %v (remove it)", path, err)
	}
	ex, err := RunProgram(ctx, opts, p)
	if err != nil {
		t.Fatalf("workproof: fail file %s: %v", path, err)
	}
	if ex.Verdict == check.Invalid {
		ex.Name = "fail file " + path
		t.Error(failureText(t, opts.Name, ex, fmt.Sprintf("%s replay -system %s -program %s -expect %s", opts.Command, opts.Name, path, ex.Result.Violations[0].Invariant)))
		return true
	}
	t.Logf("workproof: the saved counterexample %s passes now (%s): removed", path, ex.Verdict)
	_ = os.Remove(path)
	return false
}

func writeFailFile(path string, p Program) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// failureText is what a failing example prints: the violation lines, the
// program, the replay command and where the full report (with the
// evidence) was written.
func failureText(t *testing.T, system string, ex Example, replay string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "workproof: %d violation(s) in %s %s:\n", len(ex.Result.Violations), ex.Family, ex.Name)
	for _, v := range ex.Result.Violations {
		fmt.Fprintf(&b, "  %s\n", v)
	}
	if ex.Program != nil {
		b.WriteString(ex.Program.String())
	}
	fmt.Fprintf(&b, "replay: %s\n", replay)
	if path, err := writeReport(t.ArtifactDir(), system, ex, replay); err == nil {
		fmt.Fprintf(&b, "report (summary.md, report.html, evidence): %s (kept with go test -artifacts)\n", path)
	} else {
		fmt.Fprintf(&b, "report not written: %v\n", err)
	}
	return b.String()
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// writeReport writes the failing example's report directory (summary,
// HTML, evidence slices, the program) in dir, the test's artifact
// directory, and returns its summary's path.
func writeReport(dir, system string, ex Example, replay string) (string, error) {
	r := reports.NewExample(ex.Result)
	r.Family, r.Name, r.Seed, r.Duration, r.Replay = ex.Family, ex.Name, ex.Seed, reports.Duration(ex.Duration), replay
	r.Verdict, r.Settled = ex.Verdict, ex.Settled
	if ex.Program != nil {
		r.ProgramText, r.Actions = ex.Program.String(), len(ex.Program.Actions)
		if b, err := json.Marshal(ex.Program); err == nil {
			r.Program = b
		}
	}
	files, err := reports.WriteExample(dir, system, ex.Seed, r)
	if err != nil {
		return "", err
	}
	return files.Markdown, nil
}
