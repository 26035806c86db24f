package reports_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/reports"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/crash"
	"github.com/workproof/workproof/sim/history"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func d(s string) reports.Duration {
	v, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return reports.Duration(v)
}

// validReport is a completed soak of the reference system.
func validReport() reports.Report {
	return reports.Report{
		Schema:      reports.Schema,
		Kind:        reports.KindSoak,
		System:      "kvx",
		Seed:        42,
		Replay:      "go run ./cmd/simrun soak -seed 42 -duration 2m0s -workers 3 -rate 20 -instances 8 -faults mild -system kvx -check-every 30s",
		Started:     time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC),
		Elapsed:     d("2m3.456s"),
		TrafficTime: d("2m0.012s"),
		Ended:       reports.EndCompleted,
		Verdict:     check.Valid,
		Settings: reports.Settings{
			Duration: d("2m"), Workers: 3, Rate: 20, Instances: 8, Clients: 8, Faults: "mild",
			CheckEvery: d("30s"), ConvergeTimeout: d("30s"),
		},
		Postgres: reports.Postgres{Kind: "ephemeral", Version: "15.18", Settings: map[string]string{
			"fsync": "off", "synchronous_commit": "on", "full_page_writes": "off", "wal_level": "minimal",
		}},
		Requests:     reports.Requests{Sent: 2390, Changes: 1800, Accepted: 700, Busy: 950, Rejected: 150, Gets: 590},
		Work:         reports.Work{Entered: 900, Done: 820, Retried: 60, Parked: 4, Errored: 2, Cut: 14},
		Throughput:   reports.Throughput{RequestsPerS: 19.9, ChangesPerS: 5.83, WorkPerS: 6.83},
		Faults:       []reports.Count{{Name: "crash-armed", Count: 8}, {Name: "link-latency", Count: 30}, {Name: "provider-transient", Count: 22}, {Name: "restart", Count: 8}},
		CrashPoints:  []reports.Count{{Name: "cloud:CreateVM:done", Count: 3}, {Name: "sql:commit", Count: 5}},
		PointsPassed: 31,
		Reached:      []string{check.PathBusy, check.PathProviderFault, check.PathWorkerCrash, check.PathNetworkFault},
		Unreached:    []string{check.PathDeployFix, check.PathRefunded},
		Checkpoints: []reports.Checkpoint{
			{Index: 0, At: d("30.001s"), Elapsed: d("31.2s"), Settled: true, Verdict: check.Valid, Took: d("420ms")},
			{Index: 1, At: d("1m0.004s"), Elapsed: d("1m1.7s"), Settled: true, Verdict: check.Valid, Took: d("380ms")},
			{Index: 2, At: d("2m0.012s"), Elapsed: d("2m3.1s"), Final: true, Settled: true, Verdict: check.Valid, Took: d("512ms")},
		},
		Samples: []reports.Sample{
			{Elapsed: d("1s"), Traffic: d("1s"), Phase: reports.PhaseTraffic, Requests: 20, Changes: 8, WorkDone: 5, QueueDepth: 3, ActiveFaults: 1},
		},
		Events: []reports.Event{{Elapsed: d("1.5s"), Kind: "link-latency", Target: "w1.1/postgres", Detail: "latency(120ms,down)"}},
	}
}

// invalidReport is a soak of a mutant that a checkpoint caught, on a DSN
// server, with violations found by two checkpoints (-keep-going).
func invalidReport() reports.Report {
	r := validReport()
	r.System = "FreshTokenPerAttempt"
	r.Seed = 7
	r.Replay = "go run ./cmd/simrun soak -seed 7 -duration 1m0s -workers 3 -rate 20 -instances 8 -faults chaos -system FreshTokenPerAttempt -check-every 10s -keep-going"
	r.Settings.Faults, r.Settings.KeepGoing, r.Settings.CheckEvery, r.Settings.Duration = "chaos", true, d("10s"), d("1m")
	r.Postgres = reports.Postgres{Kind: "dsn", Version: "15.4"}
	r.Ended = reports.EndCompleted
	r.Verdict = check.Invalid
	r.Checkpoints = []reports.Checkpoint{
		{Index: 0, At: d("10s"), Elapsed: d("11s"), Settled: true, Verdict: check.Invalid, Violations: 1, New: 1, Took: d("1.2s")},
		{Index: 1, At: d("20s"), Elapsed: d("22s"), Final: true, Settled: false, Verdict: check.Invalid, Violations: 3, New: 2, Took: d("30.5s")},
	}
	vs := []check.Violation{{
		Invariant: check.InvOrphan, Rule: "extra-vm", Instance: "i3", Keys: []string{"kvx-a-1", "kvx-a-2"}, Ops: []int{12},
		Message: "2 running VMs (vm-4 token=kvx-a-1, vm-7 token=kvx-a-2), the system owns vm-7 | vm-4 on no record",
	}}
	r.Merge(r.Checkpoints[0], vs)
	r.Merge(r.Checkpoints[1], append(vs,
		check.Violation{Invariant: check.InvLostWork, Rule: "not-done", Instance: "i5", Ops: []int{40}, Message: "accepted op 40 resize large never completed"},
		check.Violation{Invariant: check.InvConvergence, Rule: "active-work", Instance: "i5", Message: "has_active_work still set"},
	))
	return r
}

// interruptedReport is a soak cut short by Ctrl-C.
func interruptedReport() reports.Report {
	r := validReport()
	r.Ended = reports.EndInterrupted
	r.Verdict = check.Unknown
	r.Reason = "interrupted before the final checkpoint: safety was checked on what was recorded, liveness (lost work, convergence) was not"
	r.TrafficTime = d("41.5s")
	r.Elapsed = d("43s")
	r.Checkpoints = []reports.Checkpoint{
		{Index: 0, At: d("30s"), Elapsed: d("31.2s"), Settled: true, Verdict: check.Valid, Took: d("420ms")},
		{Index: 1, At: d("41.5s"), Elapsed: d("42.9s"), Final: true, Verdict: check.Unknown, Took: d("15ms")},
	}
	r.Faults, r.CrashPoints, r.PointsPassed = nil, nil, 0
	return r
}

// errorReport is a soak whose checkpoint failed for the harness's reasons.
func errorReport() reports.Report {
	r := interruptedReport()
	r.Ended = reports.EndError
	r.Reason = "the final checkpoint did not run to its end"
	r.Error = "checkpoint 1: check: sim: inspect: connection refused"
	r.Checkpoints[1].Error = "check: sim: inspect:\nconnection refused"
	return r
}

func TestMarkdownGolden(t *testing.T) {
	for name, r := range map[string]reports.Report{
		"valid":       validReport(),
		"invalid":     invalidReport(),
		"interrupted": interruptedReport(),
		"error":       errorReport(),
	} {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			if err := reports.WriteMarkdown(&b, &r); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", name+".md")
			if *update {
				if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), b.String()); diff != "" {
				t.Errorf("%s differs (-want +got; run with -update to accept):\n%s", path, diff)
			}
		})
	}
}

// Every violation line, the replay command and the settings used appear
// in the summary; a violation line with a "|" stays whole.
func TestMarkdownNamesEverything(t *testing.T) {
	r := invalidReport()
	var b bytes.Buffer
	if err := reports.WriteMarkdown(&b, &r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, v := range r.Violations {
		if !strings.Contains(out, v.Line+"\n") {
			t.Errorf("violation line missing: %s", v.Line)
		}
	}
	for _, s := range []string{r.Replay, "**Verdict: INVALID** (exit 1)", "| seed | 7 |", "the server's own", "| keep going after a violation | yes |"} {
		if !strings.Contains(out, s) {
			t.Errorf("summary lacks %q", s)
		}
	}
}

func TestJSONRoundTrip(t *testing.T) {
	r := invalidReport()
	r.Evidence = &check.Input{Healed: true}
	var b bytes.Buffer
	if err := reports.WriteJSON(&b, &r); err != nil {
		t.Fatal(err)
	}
	got, err := reports.ReadJSON(&b)
	if err != nil {
		t.Fatal(err)
	}
	r.Evidence = nil // not part of the model's JSON
	if diff := cmp.Diff(r, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

// The JSON field names are the model's contract with other tools.
func TestJSONFieldNames(t *testing.T) {
	r := invalidReport()
	var b bytes.Buffer
	if err := reports.WriteJSON(&b, &r); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"schema", "kind", "system", "seed", "replay", "started", "elapsed_ms", "traffic_time_ms", "ended",
		"verdict", "settings", "postgres", "requests", "work", "throughput", "faults", "crash_points", "points_passed",
		"reached", "unreached", "checkpoints", "violations", "samples", "events"} {
		if _, ok := m[k]; !ok {
			t.Errorf("no field %q", k)
		}
	}
	if _, ok := m["Evidence"]; ok {
		t.Error("evidence is in report.json")
	}
	v := m["violations"].([]any)[0].(map[string]any)
	for _, k := range []string{"invariant", "rule", "instance", "keys", "ops", "message", "line", "checkpoint", "at_ms"} {
		if _, ok := v[k]; !ok {
			t.Errorf("violation has no field %q: %v", k, v)
		}
	}
	if m["elapsed_ms"] != 123456.0 {
		t.Errorf("elapsed_ms %v, want 123456 (milliseconds, a number)", m["elapsed_ms"])
	}
	// One key style: every key of the document is snake_case.
	var walk func(any)
	walk = func(x any) {
		switch x := x.(type) {
		case map[string]any:
			for k, v := range x {
				if k != strings.ToLower(k) || strings.ContainsAny(k, " -") {
					t.Errorf("key %q is not snake_case", k)
				}
				walk(v)
			}
		case []any:
			for _, v := range x {
				walk(v)
			}
		}
	}
	walk(m)
}

func TestReadJSONRejectsNewerSchema(t *testing.T) {
	if _, err := reports.ReadJSON(strings.NewReader(`{"schema": 999}`)); err == nil {
		t.Error("no error for a newer schema")
	}
	if _, err := reports.ReadJSON(strings.NewReader(`{"elapsed_ms": "soon"}`)); err == nil {
		t.Error("no error for a bad duration")
	}
	r, err := reports.ReadJSON(strings.NewReader(`{"schema": 2, "elapsed_ms": 1500.25}`))
	if err != nil || r.Elapsed.D() != 1500250*time.Microsecond {
		t.Errorf("milliseconds: %v, %v", r.Elapsed, err)
	}
}

func TestMergeKeepsFirstCheckpoint(t *testing.T) {
	var r reports.Report
	v1 := check.Violation{Invariant: check.InvOrphan, Instance: "i1", Message: "a"}
	v2 := check.Violation{Invariant: check.InvRace, Instance: "i2", Message: "b"}
	if n := r.Merge(reports.Checkpoint{Index: 0, At: d("10s")}, []check.Violation{v1}); n != 1 {
		t.Errorf("first merge: %d new", n)
	}
	if n := r.Merge(reports.Checkpoint{Index: 1, At: d("20s")}, []check.Violation{v1, v2, v2}); n != 1 {
		t.Errorf("second merge: %d new, want 1", n)
	}
	if len(r.Violations) != 2 || r.Violations[0].Checkpoint != 0 || r.Violations[1].Checkpoint != 1 || r.Violations[1].At != d("20s") {
		t.Errorf("violations %+v", r.Violations)
	}
}

func TestExitCode(t *testing.T) {
	for _, c := range []struct {
		verdict check.Verdict
		ended   string
		want    int
	}{
		{check.Valid, reports.EndCompleted, 0},
		{check.Invalid, reports.EndViolation, 1},
		{check.Invalid, reports.EndError, 1},
		{check.Unknown, reports.EndInterrupted, 2},
		{check.Unknown, reports.EndError, 2},
		{"", "", 2},
	} {
		r := reports.Report{Verdict: c.verdict, Ended: c.ended}
		if got := r.ExitCode(); got != c.want {
			t.Errorf("%s/%s: exit %d, want %d", c.verdict, c.ended, got, c.want)
		}
	}
}

func TestCounts(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := history.Snapshot{
		Ops: []history.Op{
			{Request: contract.Request{Op: contract.OpCreate}, Outcome: history.OK},
			{Request: contract.Request{Op: contract.OpResize}, Outcome: history.Fail, ErrKind: history.ErrKindBusy},
			{Request: contract.Request{Op: contract.OpDelete}, Outcome: history.Fail, ErrKind: history.ErrKindNotFound},
			{Request: contract.Request{Op: contract.OpResize}, Outcome: history.Info},
			{Request: contract.Request{Op: contract.OpResize}}, // pending
			{Request: contract.Request{Op: contract.OpGet}, Outcome: history.OK},
			{Request: contract.Request{Op: contract.OpResume}, Outcome: history.OK},
		},
		Intervals: []history.Interval{
			{Outcome: "done", End: at}, {Outcome: "done", End: at}, {Outcome: "retry", End: at}, {Outcome: "parked", End: at},
			{Outcome: "error", End: at}, {Outcome: history.IntervalCrashed, End: at}, {Outcome: history.IntervalLeaseLost, End: at}, {},
		},
	}
	if got, want := reports.CountRequests(h), (reports.Requests{Sent: 6, Changes: 5, Accepted: 1, Busy: 1, Rejected: 1, Unknown: 2, Gets: 1}); got != want {
		t.Errorf("requests %+v, want %+v", got, want)
	}
	if got, want := reports.CountWork(h), (reports.Work{Entered: 8, Done: 2, Retried: 1, Parked: 1, Errored: 1, Cut: 2}); got != want {
		t.Errorf("work %+v, want %+v", got, want)
	}
	hits := []crash.Hit{{Point: "sql:commit", Rule: "at sql:commit"}, {Point: "sql:commit", Rule: "at sql:"}, {Point: "(killed)", Rule: "kill"}, {Point: "cloud:CreateVM:done"}}
	if diff := cmp.Diff([]reports.Count{{Name: "cloud:CreateVM:done", Count: 1}, {Name: "sql:commit", Count: 2}}, reports.CrashPoints(hits)); diff != "" {
		t.Errorf("crash points (-want +got):\n%s", diff)
	}
	if got := reports.Unreached(check.Paths()[1:]); len(got) != 1 || got[0] != check.Paths()[0] {
		t.Errorf("unreached %v", got)
	}
	tp := reports.ThroughputOf(reports.Requests{Sent: 20, Accepted: 10}, reports.Work{Done: 5}, 10*time.Second)
	if tp != (reports.Throughput{RequestsPerS: 2, ChangesPerS: 1, WorkPerS: 0.5}) {
		t.Errorf("throughput %+v", tp)
	}
	if tp := reports.ThroughputOf(reports.Requests{Sent: 1}, reports.Work{}, 0); tp != (reports.Throughput{}) {
		t.Errorf("throughput over no time: %+v", tp)
	}
}

func TestWriteDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "soak-7")
	r := invalidReport()
	r.Evidence = &check.Input{Healed: true}
	files, err := reports.WriteDir(dir, &r)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{files.JSON, files.Markdown, files.HTML, files.Evidence} {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			t.Errorf("%s: %v (%d bytes)", p, err, len(b))
		}
	}
	if files.JUnit != "" {
		t.Errorf("a soak wrote %s", files.JUnit)
	}
	var names []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{"evidence.json", "report.html", "report.json", "summary.md", "violation-1-orphan.json", "violation-2-lost-work.json", "violation-3-convergence.json"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("files in %s (-want +got; no temporaries left):\n%s", dir, diff)
	}
	f, err := os.Open(files.JSON)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := reports.ReadJSON(f)
	if err != nil || got.Verdict != check.Invalid || len(got.Violations) != 3 {
		t.Errorf("read back: %v, %+v", err, got.Violations)
	}

	r.Evidence = nil
	files, err = reports.WriteDir(t.TempDir(), &r)
	if err != nil || files.Evidence != "" {
		t.Errorf("without evidence: %+v, %v", files, err)
	}
}
