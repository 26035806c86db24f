package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/workproof/workproof/reports"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/pgenv/pgenvtest"
)

// asMain makes the test binary act as simrun itself when the tests run it
// as a subprocess: the real main, with its own exit code, signals and
// files, without a second build.
const asMain = "WORKPROOF_SIMRUN_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMain) == "1" {
		main()
		return
	}
	pgenvtest.Main(m)
}

// simrun starts simrun with args; wait for it with finish.
func simrun(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), asMain+"=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	return cmd, &stdout, &stderr
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("simrun did not run: %v", err)
	return -1
}

func TestUsageErrorsExit2(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	for _, c := range []struct {
		args []string
		want string // on stderr
	}{
		{nil, "Usage:"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"replay"}, "give exactly one of -scenario, -family (with -seed), -program or -experiment"},
		{[]string{"replay", "-family", "crash"}, "-family needs the program's -seed"},
		{[]string{"replay", "-scenario", "nope"}, `no named scenario "nope"`},
		{[]string{"gate", "-families", "crash,bogus"}, `unknown family "bogus"`},
		{[]string{"bench", "-runs", "0"}, "-runs must be positive"},
		{[]string{"gate", "-instances", "0"}, "-instances 0 outside [1, 64]"},
		{[]string{"replay", "-family", "crash", "-seed", "1", "-instances", "65"}, "-instances 65 outside [1, 64]"},
		{[]string{"replay", "-family", "crash", "-seed", "1", "-workers", "100000"}, "-workers 100000 or -steps 20 outside"},
		{[]string{"soak", "-bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"soak", "-workers", "0"}, "-workers 0: must be at least 1"},
		{[]string{"soak", "-rate", "-3"}, "-rate -3: must be positive"},
		{[]string{"soak", "-duration", "0s"}, "-duration 0s: must be positive"},
		{[]string{"soak", "-faults", "hurricane"}, `unknown -faults "hurricane" (want one of none, mild, chaos)`},
		{[]string{"soak", "-system", "Nope"}, "FreshTokenPerAttempt"},
		{[]string{"soak", "leftover"}, `unexpected arguments ["leftover"]`},
		{[]string{"gate", "-system", "Nope"}, `unknown -system "Nope"`},
		{[]string{"gate", "-run", "no-such-scenario"}, `no scenario matches -run "no-such-scenario"`},
		{[]string{"soak", "-dsn", "postgres://nobody@127.0.0.1:1/x?connect_timeout=2", "-duration", "1s", "-out", out}, "no Postgres"},
	} {
		cmd, _, stderr := simrun(t, c.args...)
		code := exitCode(t, cmd.Run())
		if code != 2 {
			t.Errorf("simrun %q: exit %d, want 2; stderr:\n%s", c.args, code, stderr)
		}
		if !strings.Contains(stderr.String(), c.want) {
			t.Errorf("simrun %q: stderr lacks %q:\n%s", c.args, c.want, stderr)
		}
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("a run that never started left %v in -out", entries)
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	cmd, stdout, _ := simrun(t, "soak", "-h")
	if code := exitCode(t, cmd.Run()); code != 0 {
		t.Errorf("soak -h: exit %d", code)
	}
	for _, s := range []string{"-duration", "-check-every", "-keep-going", "Exit codes:", "Examples:", "chaos", "CheckThenAct", "$WORKPROOF_DATABASE_URL"} {
		if !strings.Contains(stdout.String(), s) {
			t.Errorf("soak -h lacks %q", s)
		}
	}
}

// A 3-second soak of the reference system ends valid (exit 0), writes its
// report (and, with -heap-profiles, the heap profile of its one checkpoint),
// and prints where and how to replay it.
func TestSoakWritesReport(t *testing.T) {
	t.Parallel()
	dsn := pgenvtest.Server(t).DSN()
	out := filepath.Join(t.TempDir(), "soak")
	cmd, stdout, stderr := simrun(t, "soak", "-duration", "3s", "-check-every", "3s", "-seed", "5", "-rate", "30", "-heap-profiles", "-dsn", dsn, "-out", out)
	if code := exitCode(t, cmd.Run()); code != 0 {
		t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	replay := "go run ./cmd/simrun soak -seed 5 -duration 3s -workers 3 -rate 30 -instances 8 -faults mild -system kvx -check-every 3s"
	out = latest(t, out)
	for _, s := range []string{"verdict: valid (exit 0)", "report: " + filepath.Join(out, "summary.md"), "replay: " + replay} {
		if !strings.Contains(stdout.String(), s) {
			t.Errorf("stdout lacks %q:\n%s", s, stdout)
		}
	}
	md, err := os.ReadFile(filepath.Join(out, reports.MarkdownFile))
	if err != nil || !strings.Contains(string(md), replay) {
		t.Errorf("summary.md: %v; lacks the replay command", err)
	}
	rep := readReport(t, out)
	if rep.Verdict != check.Valid || rep.Requests.Accepted == 0 || rep.Seed != 5 || rep.Postgres.Kind != "dsn" {
		t.Errorf("report: verdict %s, requests %+v, seed %d, postgres %+v", rep.Verdict, rep.Requests, rep.Seed, rep.Postgres)
	}
	if _, err := os.Stat(filepath.Join(out, reports.EvidenceFile)); !os.IsNotExist(err) {
		t.Errorf("evidence.json written for a valid run (%v)", err)
	}
	// A pprof profile is gzipped protobuf.
	if b, err := os.ReadFile(filepath.Join(out, "heap-first.pprof")); err != nil || len(b) < 100 || b[0] != 0x1f || b[1] != 0x8b {
		t.Errorf("heap-first.pprof: %d bytes, %v; want a gzipped profile", len(b), err)
	}
}

// soak -process-workers runs every worker as this binary's worker command:
// the intervals the children report make up the history, the run is valid,
// and no worker process outlives the soak.
func TestSoakProcessWorkers(t *testing.T) {
	t.Parallel()
	dsn := pgenvtest.Server(t).DSN()
	out := filepath.Join(t.TempDir(), "soak")
	cmd, stdout, stderr := simrun(t, "soak", "-process-workers", "-faults", "chaos", "-duration", "5s", "-check-every", "5s", "-seed", "1", "-dsn", dsn, "-out", out)
	if code := exitCode(t, cmd.Run()); code != 0 {
		t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout.String(), " -process-workers\n") {
		t.Errorf("the replay command lacks -process-workers:\n%s", stdout)
	}
	rep := readReport(t, latest(t, out))
	if rep.Verdict != check.Valid || !rep.Settings.ProcessWorkers || rep.Work.Done == 0 {
		t.Errorf("report: verdict %s, process workers %v, work %+v", rep.Verdict, rep.Settings.ProcessWorkers, rep.Work)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.HasPrefix(string(b), os.Args[0]+"\x00worker\x00") {
			t.Errorf("a worker process outlived the soak: %s %q", p, b)
		}
	}
}

// Ctrl-C stops a soak cleanly: the report is still written, with an
// unknown verdict, and the exit code is 2.
func TestSoakInterrupted(t *testing.T) {
	t.Parallel()
	dsn := pgenvtest.Server(t).DSN()
	out := filepath.Join(t.TempDir(), "soak")
	cmd := exec.Command(os.Args[0], "soak", "-duration", "1m", "-seed", "9", "-dsn", dsn, "-out", out)
	cmd.Env = append(os.Environ(), asMain+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	var stdout strings.Builder
	sc := bufio.NewScanner(pipe)
	for sc.Scan() {
		stdout.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), "postgres:") {
			break
		}
	}
	time.Sleep(2 * time.Second) // some traffic
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
		stdout.WriteString(sc.Text() + "\n")
	}
	if code := exitCode(t, cmd.Wait()); code != 2 {
		t.Fatalf("exit %d, want 2\nstdout:\n%s\nstderr:\n%s", code, &stdout, &stderr)
	}
	out = latest(t, out)
	rep := readReport(t, out)
	if rep.Ended != reports.EndInterrupted || rep.Verdict != check.Unknown {
		t.Errorf("report: ended %s, verdict %s", rep.Ended, rep.Verdict)
	}
	if _, err := os.Stat(filepath.Join(out, reports.EvidenceFile)); err != nil {
		t.Errorf("no evidence for an unknown verdict: %v", err)
	}
	if !strings.Contains(stdout.String(), "verdict: unknown (exit 2)") {
		t.Errorf("stdout:\n%s", &stdout)
	}
}

// The gate exits by verdict: 0 when the reference passes a scenario, 1
// when a mutant fails the scenario aimed at it, with the violation line.
func TestGateExitsByVerdict(t *testing.T) {
	t.Parallel()
	dsn := pgenvtest.Server(t).DSN()
	for _, c := range []struct {
		system string
		want   int
		line   string
	}{
		{"kvx", 0, "gate: valid on kvx"},
		{"EmailInTx", 1, "at-most-once: instance i1"},
	} {
		out := t.TempDir()
		cmd, stdout, stderr := simrun(t, "gate", "-system", c.system, "-run", "^crash-after-email-before-commit$", "-dsn", dsn, "-out", out)
		if code := exitCode(t, cmd.Run()); code != c.want {
			t.Errorf("gate %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", c.system, code, c.want, stdout, stderr)
		}
		if !strings.Contains(stdout.String(), c.line) {
			t.Errorf("gate %s: stdout lacks %q:\n%s", c.system, c.line, stdout)
		}
		if _, err := os.Stat(filepath.Join(latest(t, out), reports.JSONFile)); err != nil {
			t.Errorf("gate %s: no report: %v", c.system, err)
		}
	}
}

// A property-family failure is shrunk, saved, and its saved program
// replays: replay says whether it reproduced the violation.
// A failure the explore family found replays on its first attempt: an
// experiment names the very point its fault hits, whichever worker gets
// there.
func TestGateExperimentReplays(t *testing.T) {
	t.Parallel()
	dsn := pgenvtest.Server(t).DSN()
	cmd, stdout, stderr := simrun(t, "gate", "-system", "FreshTokenPerAttempt", "-families", "explore", "-dsn", dsn, "-out", t.TempDir())
	if code := exitCode(t, cmd.Run()); code != 1 {
		t.Fatalf("gate: exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	m := regexp.MustCompile(`replay -system FreshTokenPerAttempt -experiment '([^']+)' -seed 1 -expect (\S+)`).FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("gate printed no replay command for an experiment:\n%s", stdout)
	}
	cmd, stdout, stderr = simrun(t, "replay", "-system", "FreshTokenPerAttempt", "-experiment", m[1], "-seed", "1", "-expect", m[2],
		"-attempts", "1", "-dsn", dsn, "-out", t.TempDir())
	if code := exitCode(t, cmd.Run()); code != 1 || !strings.Contains(stdout.String(), "reproduced: "+m[2]+" on attempt 1") {
		t.Fatalf("replay exit %d, want 1 and reproduced on attempt 1:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}

// A drawn program's counterexample is saved where the gate says, and its
// replay command runs and says what happened: reproduced (exit 1) or
// diverged (exit 3) — never a silent 0.
//
// One worker slot: with two, a drawn crash names a worker, and which worker
// claims the item is a real race, so 30 programs missed the mutant now and
// then (CI, stop 17). With one, the worker the crash names is the one that
// runs the item; about every second program of seed 1 fails, and 30 all
// passing has not been seen.
func TestGateCounterexampleReplays(t *testing.T) {
	t.Parallel()
	dsn := pgenvtest.Server(t).DSN()
	out := t.TempDir()
	cmd, stdout, stderr := simrun(t, "gate", "-system", "FreshTokenPerAttempt", "-families", "crash", "-checks", "30", "-workers", "1", "-dsn", dsn, "-out", out)
	if code := exitCode(t, cmd.Run()); code != 1 {
		t.Fatalf("gate: exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	prog := programFile(t, latest(t, out), "crash")
	if !strings.Contains(stdout.String(), "-program "+prog) {
		t.Fatalf("gate does not print the replay command for %s:\n%s", prog, stdout)
	}
	cmd, stdout, stderr = simrun(t, "replay", "-system", "FreshTokenPerAttempt", "-program", prog, "-expect", "orphan", "-attempts", "3", "-dsn", dsn, "-out", t.TempDir())
	switch code := exitCode(t, cmd.Run()); {
	case code == 1 && strings.Contains(stdout.String(), "reproduced: orphan"):
	case code == 3 && strings.Contains(stdout.String(), "diverged: no orphan violation"):
	default:
		t.Fatalf("replay exit %d, want 1 (reproduced) or 3 (diverged):\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}

// latest is the newest run directory under out (out/latest, resolved).
func latest(t *testing.T, out string) string {
	t.Helper()
	target, err := os.Readlink(filepath.Join(out, reports.LatestLink))
	if err != nil {
		t.Fatalf("no report directory under %s: %v", out, err)
	}
	return filepath.Join(out, target)
}

// programFile is the saved program of the family's failure in a gate's
// report directory.
func programFile(t *testing.T, dir, family string) string {
	t.Helper()
	rep := readReport(t, dir)
	for _, f := range rep.Families {
		if f.Name == family && f.Failure != nil && len(f.Failure.Program) > 0 {
			return filepath.Join(dir, f.Failure.Dir, reports.ProgramFile)
		}
	}
	t.Fatalf("%s: no saved program of family %s", dir, family)
	return ""
}

func readReport(t *testing.T, dir string) reports.Report {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, reports.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := reports.ReadJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}
