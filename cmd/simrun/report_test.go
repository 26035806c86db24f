package main

import (
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/workproof/workproof/reports"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/pgenv/pgenvtest"
)

// The scenario that catches FreshTokenPerAttempt at once: a crash after the
// VM was created and before the commit, so the retry creates a second VM.
const quickScenario = "^crash-after-vm-before-commit$"

// Two gates in a row leave two report directories; the failing one's
// junit.xml parses and names the violation, its summary, HTML and evidence
// slice are there, and the replay command its report gives works as
// written.
func TestGateReportDirectories(t *testing.T) {
	t.Parallel()
	dsn := pgenvtest.Server(t).DSN()
	out := t.TempDir()
	for _, c := range []struct {
		system string
		want   int
	}{{"kvx", 0}, {"FreshTokenPerAttempt", 1}} {
		cmd, stdout, stderr := simrun(t, "gate", "-system", c.system, "-run", quickScenario, "-dsn", dsn, "-out", out)
		if code := exitCode(t, cmd.Run()); code != c.want {
			t.Fatalf("gate %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", c.system, code, c.want, stdout, stderr)
		}
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	if len(dirs) != 2 || !strings.HasPrefix(dirs[0], "gate-FreshTokenPerAttempt-") || !strings.HasPrefix(dirs[1], "gate-kvx-") {
		t.Fatalf("report directories %v, want one gate-kvx-… and one gate-FreshTokenPerAttempt-…", dirs)
	}
	dir := latest(t, out)
	if filepath.Base(dir) != dirs[0] {
		t.Errorf("latest is %s, want the second gate's %s", dir, dirs[0])
	}
	for _, f := range []string{reports.JSONFile, reports.MarkdownFile, reports.HTMLFile, reports.JUnitFile} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	rep := readReport(t, dir)
	if rep.Kind != reports.KindGate || rep.Verdict != check.Invalid || len(rep.Families) != 1 || rep.Families[0].Failure == nil {
		t.Fatalf("report: kind %s, verdict %s, families %+v", rep.Kind, rep.Verdict, rep.Families)
	}
	fail := rep.Families[0].Failure
	if len(fail.Violations) == 0 || fail.Violations[0].Evidence == "" || fail.Violations[0].BlastRadius == nil || fail.Violations[0].BlastRadius.LeakedVMs < 1 {
		t.Fatalf("failure's violations: %+v", fail.Violations)
	}
	if _, err := os.Stat(filepath.Join(dir, fail.Violations[0].Evidence)); err != nil {
		t.Errorf("evidence slice: %v", err)
	}

	b, err := os.ReadFile(filepath.Join(dir, reports.JUnitFile))
	if err != nil {
		t.Fatal(err)
	}
	var suites struct {
		Failures int `xml:"failures,attr"`
		Suites   []struct {
			Cases []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
					Text    string `xml:",chardata"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &suites); err != nil {
		t.Fatalf("junit.xml does not parse: %v", err)
	}
	named := false
	for _, s := range suites.Suites {
		for _, c := range s.Cases {
			if c.Name == "crash-after-vm-before-commit" && c.Failure != nil && strings.Contains(c.Failure.Text, fail.Violations[0].Line) {
				named = true
			}
		}
	}
	if !named || suites.Failures == 0 {
		t.Errorf("junit.xml names no failing testcase with the violation line %q:\n%s", fail.Violations[0].Line, b)
	}
	if xmllint, err := exec.LookPath("xmllint"); err == nil {
		if out, err := exec.Command(xmllint, "--noout", filepath.Join(dir, reports.JUnitFile)).CombinedOutput(); err != nil {
			t.Errorf("xmllint: %v\n%s", err, out)
		}
	} else {
		t.Log("xmllint not installed (Debian: libxml2-utils): parsed with encoding/xml only")
	}

	// The replay command, as written in the report, minus "go run ./cmd/simrun".
	args := strings.Fields(strings.TrimPrefix(rep.Replay, "go run ./cmd/simrun "))
	if len(args) == 0 || args[0] != "replay" {
		t.Fatalf("replay command %q", rep.Replay)
	}
	cmd, stdout, stderr := simrun(t, append(args, "-dsn", dsn, "-out", t.TempDir())...)
	if code := exitCode(t, cmd.Run()); code != 1 || !strings.Contains(stdout.String(), "reproduced: orphan") {
		t.Errorf("%s: exit %d, want 1 and reproduced\nstdout:\n%s\nstderr:\n%s", rep.Replay, code, stdout, stderr)
	}
}

// An -out that cannot be written fails every command before it starts,
// with a message naming -out.
func TestOutNotWritableFailsFast(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(file, "reports") // under a regular file: never a directory, even for root
	for _, args := range [][]string{
		{"gate", "-run", quickScenario},
		{"soak", "-duration", "1m"},
		{"bench", "-systems", "kvx", "-runs", "1"},
		{"replay", "-scenario", "crash-after-vm-before-commit"},
	} {
		cmd, stdout, stderr := simrun(t, append(args, "-out", bad, "-dsn", "postgres://nobody@127.0.0.1:1/x?connect_timeout=1")...)
		code := exitCode(t, cmd.Run())
		if code != 2 || !strings.Contains(stderr.String(), "-out "+bad) {
			t.Errorf("%v: exit %d, want 2 and a message naming -out\nstdout:\n%s\nstderr:\n%s", args, code, stdout, stderr)
		}
		if strings.Contains(stderr.String(), "no Postgres") {
			t.Errorf("%v: started before checking -out:\n%s", args, stderr)
		}
	}
}

// With GITHUB_STEP_SUMMARY set, the gate appends its summary there.
func TestGateAppendsStepSummary(t *testing.T) {
	t.Parallel()
	dsn := pgenvtest.Server(t).DSN()
	summary := filepath.Join(t.TempDir(), "step-summary.md")
	if err := os.WriteFile(summary, []byte("earlier step\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd, stdout, stderr := simrun(t, "gate", "-system", "kvx", "-run", quickScenario, "-dsn", dsn, "-out", t.TempDir())
	cmd.Env = append(cmd.Env, "GITHUB_STEP_SUMMARY="+summary)
	if code := exitCode(t, cmd.Run()); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	b, err := os.ReadFile(summary)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "earlier step\n") || !strings.Contains(string(b), "# workproof gate of kvx: valid") {
		t.Errorf("step summary:\n%s", b)
	}
}
