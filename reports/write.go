package reports

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/workproof/workproof/sim/check"
)

// File names WriteDir uses.
const (
	JSONFile     = "report.json"
	MarkdownFile = "summary.md"
	HTMLFile     = "report.html"
	JUnitFile    = "junit.xml"
	EvidenceFile = "evidence.json" // the whole evidence: of a soak, or in an example's directory
	ProgramFile  = "program.json"  // a drawn program, in its example's directory
	LatestLink   = "latest"        // in the parent: a symbolic link to the newest run directory
)

// ErrNotWritable is wrapped by the error NewRunDir returns when the report
// directory cannot be created or written.
var ErrNotWritable = errors.New("reports: directory not writable")

// NewRunDir creates the report directory of one run under parent: named
// <kind>-<system>-<UTC time>, with -2, -3, … added when that exists, so a
// run never overwrites another's report. It checks the directory can be
// written (a run checks this before it starts, not after the work), and
// points parent/latest at it (best effort: a file system without symbolic
// links still gets its reports).
func NewRunDir(parent, kind, system string, now time.Time) (string, error) {
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fmt.Errorf("%w: %w", ErrNotWritable, err)
	}
	base := slug(kind + "-" + system + "-" + now.UTC().Format("20060102T150405Z"))
	var dir string
	for n := 1; ; n++ {
		name := base
		if n > 1 {
			name = fmt.Sprintf("%s-%d", base, n)
		}
		err := os.Mkdir(filepath.Join(parent, name), 0o755)
		if err == nil {
			dir = filepath.Join(parent, name)
			break
		}
		if !errors.Is(err, os.ErrExist) || n >= 1000 {
			return "", fmt.Errorf("%w: %w", ErrNotWritable, err)
		}
	}
	probe, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		_ = os.Remove(dir)
		return "", fmt.Errorf("%w: %w", ErrNotWritable, err)
	}
	_ = probe.Close()
	_ = os.Remove(probe.Name())
	link := filepath.Join(parent, LatestLink)
	tmp := link + ".tmp"
	_ = os.Remove(tmp)
	if os.Symlink(filepath.Base(dir), tmp) == nil {
		if os.Rename(tmp, link) != nil {
			_ = os.Remove(tmp)
		}
	}
	return dir, nil
}

var unsafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// slug makes s a safe file name.
func slug(s string) string { return unsafe.ReplaceAllString(s, "_") }

// DirName is the example's directory name inside the report directory:
// Dir when set, else <family>-<name> made file-safe.
func (ex Example) DirName() string {
	if ex.Dir != "" {
		return ex.Dir
	}
	return slug(ex.Family + "-" + ex.Name)
}

// WriteJSON writes r as indented JSON (the model itself; Evidence is left out).
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("reports: encode: %w", err)
	}
	return nil
}

// ReadJSON reads a report written by WriteJSON.
func ReadJSON(rd io.Reader) (Report, error) {
	var r Report
	dec := json.NewDecoder(rd)
	if err := dec.Decode(&r); err != nil {
		return Report{}, fmt.Errorf("reports: decode: %w", err)
	}
	if r.Schema > Schema {
		return r, fmt.Errorf("reports: schema %d is newer than this reader's %d", r.Schema, Schema)
	}
	return r, nil
}

// Files are the paths WriteDir wrote.
type Files struct {
	Dir      string // the report directory
	JSON     string // report.json
	Markdown string // summary.md
	HTML     string // report.html
	JUnit    string // junit.xml; empty for a soak or a replay
	Evidence string // a soak's evidence.json; empty when the report had none
}

// hasJUnit: the kinds CI runs as a pass/fail step.
func hasJUnit(kind string) bool {
	return kind == KindGate || kind == KindBench || kind == KindVerify
}

// examples returns every example of r that WriteDir gives a directory:
// those with evidence or a program.
func (r *Report) examples() []*Example {
	var out []*Example
	keep := func(ex *Example) {
		if ex != nil && (ex.Evidence != nil || len(ex.Program) > 0) {
			out = append(out, ex)
		}
	}
	for i := range r.Families {
		keep(r.Families[i].Failure)
	}
	for i := range r.Examples {
		keep(&r.Examples[i])
	}
	for i := range r.Bench {
		for j := range r.Bench[i].Runs {
			keep(r.Bench[i].Runs[j].Failure)
		}
	}
	return out
}

// WriteDir writes r into dir (created if needed): report.json, summary.md,
// report.html, junit.xml for a gate, a bench or Verify, and the evidence:
// for each example that kept it, a directory (Example.DirName) holding its
// evidence.json, its program.json when it is a drawn program, and one
// violation-<n>-<invariant>.json evidence slice per violation (see
// SliceOf); for a soak, evidence.json and the slices beside report.json.
// It records those paths in the model before writing report.json. Each
// file is written to a temporary name and renamed, so an interrupted write
// never leaves half a report behind.
func WriteDir(dir string, r *Report) (Files, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Files{}, fmt.Errorf("reports: %w", err)
	}
	f := Files{Dir: dir, JSON: filepath.Join(dir, JSONFile), Markdown: filepath.Join(dir, MarkdownFile), HTML: filepath.Join(dir, HTMLFile)}
	var errs []error
	if r.Evidence != nil {
		f.Evidence = filepath.Join(dir, EvidenceFile)
		errs = append(errs, writeJSONFile(f.Evidence, EvidenceOf(*r.Evidence)))
		errs = append(errs, writeSlices(dir, "", r.Violations, r.Replay, *r.Evidence)...)
	}
	for _, ex := range r.examples() {
		ex.Dir = ex.DirName()
		sub := filepath.Join(dir, ex.Dir)
		if err := os.MkdirAll(sub, 0o755); err != nil {
			errs = append(errs, fmt.Errorf("reports: %w", err))
			continue
		}
		if len(ex.Program) > 0 {
			errs = append(errs, writeFile(filepath.Join(sub, ProgramFile), func(w io.Writer) error {
				var b bytes.Buffer
				if err := json.Indent(&b, ex.Program, "", "  "); err != nil {
					return err
				}
				b.WriteByte('\n')
				_, err := w.Write(b.Bytes())
				return err
			}))
		}
		if ex.Evidence != nil {
			errs = append(errs, writeJSONFile(filepath.Join(sub, EvidenceFile), EvidenceOf(*ex.Evidence)))
			errs = append(errs, writeSlices(dir, ex.Dir, ex.Violations, ex.Replay, *ex.Evidence)...)
		}
	}
	errs = append(errs, writeFile(f.JSON, func(w io.Writer) error { return WriteJSON(w, r) }))
	errs = append(errs, writeFile(f.Markdown, func(w io.Writer) error { return WriteMarkdown(w, r) }))
	errs = append(errs, writeFile(f.HTML, func(w io.Writer) error { return WriteHTML(w, r) }))
	if hasJUnit(r.Kind) {
		f.JUnit = filepath.Join(dir, JUnitFile)
		errs = append(errs, writeFile(f.JUnit, func(w io.Writer) error { return WriteJUnit(w, r) }))
	}
	return f, errors.Join(errs...)
}

// writeSlices writes one evidence slice per violation into dir/sub and
// records each file's path (relative to dir) in its violation.
func writeSlices(dir, sub string, vs []Violation, replay string, in check.Input) []error {
	var errs []error
	for i := range vs {
		v := &vs[i]
		name := filepath.Join(sub, fmt.Sprintf("violation-%d-%s.json", i+1, slug(string(v.Invariant))))
		if v.BlastRadius == nil {
			b := BlastOf(in, v.Violation)
			v.BlastRadius = &b
		}
		v.Evidence = filepath.ToSlash(name)
		errs = append(errs, writeJSONFile(filepath.Join(dir, name), Slice{Violation: *v, Replay: replay, Evidence: SliceOf(in, v.Violation)}))
	}
	return errs
}

// WriteExample writes the report directory of one example on its own, as
// Verify keeps a failing example: a Report of kind KindVerify with one
// family holding ex (as its failure when it is invalid), written by
// WriteDir.
func WriteExample(dir, system string, seed uint64, ex Example) (Files, error) {
	fam := Family{Name: ex.Family, Verdict: ex.Verdict, Examples: 1, Duration: ex.Duration, Reached: ex.Reached}
	if ex.Family == "named" {
		s := ex
		s.Evidence, s.Program, s.Series = nil, nil, nil
		fam.Scenarios = []Example{s}
	}
	if ex.Verdict == check.Unknown {
		fam.Unknown = []string{ex.Name + ": " + ex.Reason}
	}
	r := Report{Schema: Schema, Kind: KindVerify, System: system, Seed: seed, Replay: ex.Replay, Verdict: ex.Verdict,
		Reason: ex.Reason, Elapsed: ex.Duration, Ended: EndCompleted, Families: []Family{fam}}
	if ex.Verdict == check.Invalid || ex.Evidence != nil {
		r.Families[0].Failure = &ex
	}
	return WriteDir(dir, &r)
}

// stepSummaryMax is GitHub's limit on one step's job summary.
const stepSummaryMax = 1 << 20

// AppendStepSummary appends r's Markdown summary to the file path names:
// the value of GITHUB_STEP_SUMMARY in a GitHub Actions step (an empty path
// does nothing). A summary over GitHub's 1 MiB limit is cut, with a note
// pointing at the report directory.
func AppendStepSummary(path string, r *Report, dir string) error {
	if path == "" {
		return nil
	}
	var b bytes.Buffer
	if err := WriteMarkdown(&b, r); err != nil {
		return err
	}
	note := fmt.Sprintf("\n\n… cut at GitHub's 1 MiB limit: the whole summary is %s.\n", filepath.Join(dir, MarkdownFile))
	if b.Len() > stepSummaryMax {
		b.Truncate(stepSummaryMax - len(note))
		b.WriteString(note)
	}
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("reports: step summary: %w", err)
	}
	_, werr := fh.Write(append(b.Bytes(), '\n'))
	cerr := fh.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("reports: step summary: %w", err)
	}
	return nil
}

func writeJSONFile(path string, v any) error {
	return writeFile(path, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", " ")
		return enc.Encode(v)
	})
}

func writeFile(path string, write func(io.Writer) error) error {
	var buf bytes.Buffer
	if err := write(&buf); err != nil {
		return fmt.Errorf("reports: %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("reports: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("reports: %w", err)
	}
	return nil
}

// DiscardRunDir removes a run directory NewRunDir made when the run ended
// before it wrote anything (no Postgres, say), and parent/latest with it
// when it points there. A directory that holds anything is kept.
func DiscardRunDir(dir string) {
	if os.Remove(dir) != nil {
		return
	}
	link := filepath.Join(filepath.Dir(dir), LatestLink)
	if target, err := os.Readlink(link); err == nil && target == filepath.Base(dir) {
		_ = os.Remove(link)
	}
}
