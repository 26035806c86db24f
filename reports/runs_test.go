package reports_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/workproof/workproof/reports"
	"github.com/workproof/workproof/sim/check"
)

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got; run with -update to accept):\n%s", path, diff)
	}
}

func orphanViolation(t *testing.T) check.Violation {
	t.Helper()
	for _, v := range check.Check(orphanInput()).Violations {
		if v.Invariant == check.InvOrphan {
			return v
		}
	}
	t.Fatal("fixture has no orphan")
	return check.Violation{}
}

// A slice holds what the violation names and nothing else.
func TestSliceOf(t *testing.T) {
	in := orphanInput()
	v := orphanViolation(t)
	s := reports.SliceOf(in, v)
	if len(s.Ops) != 1 || s.Ops[0].Index != 0 {
		t.Errorf("ops %+v, want op 0 only (the get is not named)", s.Ops)
	}
	if len(s.Intervals) != 2 || len(s.Requests) != 4 || len(s.VMs) != 2 || len(s.Instances) != 1 {
		t.Errorf("intervals %d, requests %d, vms %d, instances %d", len(s.Intervals), len(s.Requests), len(s.VMs), len(s.Instances))
	}
	if len(s.Events) != 1 || s.Events[0].Kind != "crash" {
		t.Errorf("events %+v, want w1.1's crash only (no fault windows)", s.Events)
	}
	other := check.Violation{Invariant: check.InvOrphan, Instance: "i9", Keys: []string{"tok-b"}}
	s = reports.SliceOf(in, other)
	if len(s.Ops)+len(s.Intervals)+len(s.Instances) != 0 || len(s.Requests) != 1 || s.Requests[0].Key != "tok-b" || len(s.VMs) != 1 {
		t.Errorf("slice by key: %+v", s)
	}
	b, err := json.Marshal(reports.EvidenceOf(in))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"desired_size"`, `"vm_id"`, `"op":"create"`, `"has_active_work"`} {
		if !bytes.Contains(b, []byte(k)) {
			t.Errorf("evidence JSON lacks %s", k)
		}
	}
	for _, k := range []string{`"ID"`, `"Instances"`, `"Request"`} {
		if bytes.Contains(b, []byte(k)) {
			t.Errorf("evidence JSON has Go-style key %s", k)
		}
	}
}

func TestBlastOf(t *testing.T) {
	in := orphanInput()
	b := reports.BlastOf(in, orphanViolation(t))
	if b.LeakedVMs != 1 || math.Abs(b.LeakedVMSeconds-0.097) > 1e-9 || !strings.Contains(b.Summary, "1 VM leaked: 0.097 VM-seconds") {
		t.Errorf("orphan: %+v, want vm-1 (not on record) leaked for 97 ms", b)
	}
	in.Ledger.Charges = append(in.Ledger.Charges, in.Ledger.Charges[0])
	in.Ledger.Charges[1].ID, in.Ledger.Charges[1].Amount = "ch_2", 750
	dup := check.Violation{Invariant: check.InvDoubleBilling, Rule: "duplicate-charge", Instance: "i1", Message: "2 charges for event provision:i1:g1 (…)"}
	if b := reports.BlastOf(in, dup); b.Overcharged != 750 || !strings.Contains(b.Summary, "7.50") {
		t.Errorf("duplicate charge: %+v", b)
	}
	in.Ledger.Requests = append(in.Ledger.Requests,
		in.Ledger.Requests[0], in.Ledger.Requests[0])
	for i, n := len(in.Ledger.Requests)-2, 0; i < len(in.Ledger.Requests); i, n = i+1, n+1 {
		r := &in.Ledger.Requests[i]
		r.Service, r.Endpoint, r.Event, r.Key = "email", "Send", "welcome:i1", ""
	}
	email := check.Violation{Invariant: check.InvAtMostOnce, Rule: "duplicate-effect", Instance: "i1", Message: "2 email Send requests took effect for event welcome:i1 (…)"}
	if b := reports.BlastOf(in, email); b.DuplicateEmails != 1 || !strings.Contains(b.Summary, "email") {
		t.Errorf("email: %+v", b)
	}
	gone := check.Violation{Invariant: check.InvOrphan, Rule: "deployment-outlives-instance", Instance: "i1"}
	if b := reports.BlastOf(in, gone); b.DeploymentsLeft != 1 {
		t.Errorf("deployment: %+v", b)
	}
}

// The error signal follows desired against observed: off while the create
// waits for its VM, back on with one VM, off for good with two.
func TestDeriveSeries(t *testing.T) {
	s := reports.DeriveSeries(orphanInput())
	if s == nil || math.Abs(s.Span-0.12) > 1e-9 || len(s.Points) != 20 {
		t.Fatalf("series %+v", s)
	}
	at := func(sec float64) reports.SeriesPoint {
		for _, p := range s.Points {
			if p.At >= sec-1e-9 {
				return p
			}
		}
		return s.Points[len(s.Points)-1]
	}
	for _, c := range []struct {
		at        float64
		off, busy int
	}{{0.018, 0, 0}, {0.024, 0, 1}, {0.036, 0, 1}, {0.054, 1, 1}, {0.12, 1, 0}} {
		p := at(c.at)
		if p.OffDesired != c.off || p.InFlight != c.busy {
			t.Errorf("at %.3fs (point %.3fs): off %d, in flight %d; want %d, %d", c.at, p.At, p.OffDesired, p.InFlight, c.off, c.busy)
		}
	}
	if len(s.Windows) != 1 || s.Windows[0].Kind != reports.WindowLink || s.Windows[0].Worker() != "w2.1" ||
		math.Abs(s.Windows[0].From-0.030) > 1e-9 || math.Abs(s.Windows[0].To-0.070) > 1e-9 {
		t.Errorf("windows %+v, want the link fault on w2.1 from 30 to 70 ms", s.Windows)
	}
	if s.Approximation == "" {
		t.Error("no approximation note")
	}
}

func TestGateJUnitAndMarkdownGolden(t *testing.T) {
	dir := t.TempDir()
	r := orphanGate(t)
	files, err := reports.WriteDir(dir, &r)
	if err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{"gate-junit.xml": files.JUnit, "gate.md": files.Markdown} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, name, b)
	}
	b, _ := os.ReadFile(files.JUnit)
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil || doc.Tests != 2 || doc.Failures != 2 {
		t.Fatalf("junit.xml: %v, %+v, want 2 testcases (family, scenario), both failing", err, doc)
	}
	line := r.Families[0].Failure.Violations[0].Line
	if !strings.Contains(string(b), `message="orphan: instance i1:`) || !strings.Contains(string(b), line) {
		t.Errorf("junit.xml does not name the violation %q", line)
	}
	for _, p := range []string{"named-crash-after-vm-before-commit/evidence.json", "named-crash-after-vm-before-commit/violation-1-orphan.json"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Error(err)
		}
	}
	var sl reports.Slice
	b, _ = os.ReadFile(filepath.Join(dir, "named-crash-after-vm-before-commit/violation-1-orphan.json"))
	if err := json.Unmarshal(b, &sl); err != nil || sl.Replay != r.Replay || sl.Violation.BlastRadius == nil || len(sl.Evidence.Requests) != 4 {
		t.Errorf("slice file: %v, %+v", err, sl)
	}
}

func TestNewRunDir(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "out")
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	a, err := reports.NewRunDir(parent, "gate", "kvx", now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := reports.NewRunDir(parent, "gate", "kvx", now)
	if err != nil {
		t.Fatal(err)
	}
	c, err := reports.NewRunDir(parent, "gate", "my system/v2", now)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(a) != "gate-kvx-20261201T100000Z" || filepath.Base(b) != "gate-kvx-20261201T100000Z-2" || filepath.Base(c) != "gate-my_system_v2-20261201T100000Z" {
		t.Errorf("dirs %s %s %s", a, b, c)
	}
	if l, err := os.Readlink(filepath.Join(parent, reports.LatestLink)); err != nil || l != filepath.Base(c) {
		t.Errorf("latest → %q, %v", l, err)
	}
	entries, _ := os.ReadDir(a)
	if len(entries) != 0 {
		t.Errorf("probe left behind: %v", entries)
	}
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := reports.NewRunDir(filepath.Join(file, "out"), "gate", "kvx", now); !errors.Is(err, reports.ErrNotWritable) {
		t.Errorf("under a file: %v, want ErrNotWritable", err)
	}
}

func TestAppendStepSummary(t *testing.T) {
	path := filepath.Join(t.TempDir(), "summary")
	r := orphanGate(t)
	if err := reports.AppendStepSummary("", &r, "x"); err != nil {
		t.Errorf("no path: %v", err)
	}
	for range 2 {
		if err := reports.AppendStepSummary(path, &r, "x"); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(path)
	if n := strings.Count(string(b), "# workproof gate of FreshTokenPerAttempt: INVALID"); n != 2 {
		t.Errorf("%d summaries appended, want 2", n)
	}
}

// Verify's entry point: one example, its own report directory.
func TestWriteExample(t *testing.T) {
	r := orphanGate(t)
	ex := *r.Families[0].Failure
	ex.Family, ex.Name, ex.Seed = "crash", "seed 42", 42
	ex.Program = json.RawMessage(`{"family":"crash","workers":2,"actions":[{"op":"create"}]}`)
	dir := t.TempDir()
	files, err := reports.WriteExample(dir, "FreshTokenPerAttempt", 7, ex)
	if err != nil {
		t.Fatal(err)
	}
	if files.JUnit == "" || files.HTML == "" {
		t.Errorf("files %+v", files)
	}
	for _, p := range []string{"crash-seed_42/program.json", "crash-seed_42/evidence.json", "crash-seed_42/violation-1-orphan.json", "report.html", "junit.xml"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Error(err)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "crash-seed_42/program.json"))
	var p map[string]any
	if err := json.Unmarshal(b, &p); err != nil || p["family"] != "crash" {
		t.Errorf("program.json: %v %s", err, b)
	}
	f, _ := os.Open(files.JSON)
	defer f.Close()
	got, err := reports.ReadJSON(f)
	if err != nil || got.Kind != reports.KindVerify || got.Verdict != check.Invalid {
		t.Errorf("report.json: %v %s %s", err, got.Kind, got.Verdict)
	}
}

// Every list of an evidence slice is a JSON list, never null.
func TestSliceListsAreLists(t *testing.T) {
	b, err := json.Marshal(reports.SliceOf(orphanInput(), check.Violation{Invariant: check.InvRace, Instance: "nobody"}))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("null")) {
		t.Errorf("null in %s", b)
	}
}

func TestDiscardRunDir(t *testing.T) {
	parent := t.TempDir()
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	kept, err := reports.NewRunDir(parent, "gate", "kvx", now)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(kept, "summary.md"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	reports.DiscardRunDir(kept)
	if _, err := os.Stat(kept); err != nil {
		t.Errorf("a directory with a report was removed: %v", err)
	}
	empty, err := reports.NewRunDir(parent, "gate", "kvx", now)
	if err != nil {
		t.Fatal(err)
	}
	reports.DiscardRunDir(empty)
	if _, err := os.Stat(empty); !os.IsNotExist(err) {
		t.Errorf("empty run directory kept: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(parent, reports.LatestLink)); !os.IsNotExist(err) {
		t.Errorf("latest still points at the removed directory: %v", err)
	}
}
