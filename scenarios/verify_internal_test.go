package scenarios

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/workproof/workproof/kvx/mutants"
	"github.com/workproof/workproof/reports"
	"github.com/workproof/workproof/sim/pgenv/pgenvtest"
)

// What Verify keeps of a failure is a report directory a person can read:
// the summary naming the violation and the replay, the page, the evidence.
func TestVerifyWritesAReportOfAFailure(t *testing.T) {
	x, err := ParseExperiment("create|item=1.1@cloud:CreateVM#1|ambiguous-500")
	if err != nil {
		t.Fatal(err)
	}
	ex, err := RunExperiment(context.Background(), Options{System: mutants.FreshTokenPerAttempt(), Server: pgenvtest.Server(t)}, x)
	if err != nil || len(ex.Result.Violations) == 0 {
		t.Fatalf("experiment: %v, violations %v", err, ex.Result.Violations)
	}
	dir := t.TempDir()
	summary, err := writeReport(dir, "FreshTokenPerAttempt", ex, "go run ./cmd/simrun replay -experiment '"+ex.Name+"'")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(summary)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "orphan") || !strings.Contains(string(b), "replay -experiment") {
		t.Errorf("summary lacks the violation or the replay:\n%s", b)
	}
	if _, err := os.Stat(filepath.Join(dir, reports.HTMLFile)); err != nil {
		t.Error(err)
	}
}
