package reports

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"

	"github.com/workproof/workproof/sim/check"
)

// JUnit XML in the shape GitHub's and GitLab's test reporting read (the
// Jenkins/Surefire dialect gotestsum writes): <testsuites> of <testsuite>,
// each of <testcase classname name time> with an optional <failure>,
// <error> or <skipped>.

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr,omitempty"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Classname string       `xml:"classname,attr"`
	Name      string       `xml:"name,attr"`
	Time      string       `xml:"time,attr"`
	Failure   *junitResult `xml:"failure,omitempty"`
	Error     *junitResult `xml:"error,omitempty"`
	Skipped   *junitResult `xml:"skipped,omitempty"`
}

type junitResult struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

func seconds(d Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// WriteJUnit writes r as JUnit XML. A gate (or Verify) has one test suite
// per family, holding a test case for the family and one per named
// scenario it ran; a failure's message is its first violation line and its
// text every violation line, the replay command and where the evidence is.
// An unknown verdict is a skipped test case with its reason; a harness
// error is an error. A bench has one test case per system.
func WriteJUnit(w io.Writer, r *Report) error {
	top := junitSuites{Name: "workproof " + r.Kind + " " + r.System, Time: seconds(r.Elapsed)}
	stamp := ""
	if !r.Started.IsZero() {
		stamp = r.Started.UTC().Format("2006-01-02T15:04:05")
	}
	props := []junitProperty{{"system", r.System}, {"seed", fmt.Sprint(r.Seed)}}
	if r.Replay != "" {
		props = append(props, junitProperty{"replay", r.Replay})
	}
	class := func(parts ...string) string { return "workproof." + slug(strings.Join(parts, ".")) }
	for _, f := range r.Families {
		s := junitSuite{Name: "workproof " + r.System + " " + f.Name, Time: seconds(f.Duration), Timestamp: stamp, Properties: props}
		fc := junitCase{Classname: class(r.System, f.Name), Name: f.Name + " family", Time: seconds(f.Duration)}
		switch {
		case f.Failure != nil && f.Failure.Verdict == check.Invalid:
			fc.Failure = failureOf(f.Failure, f.Failure.Name+": ")
		case f.Verdict == check.Invalid:
			fc.Failure = &junitResult{Message: "invalid", Type: "invalid", Text: "the family found a violation"}
		case f.Verdict == check.Unknown:
			fc.Skipped = &junitResult{Message: "inconclusive: " + strings.Join(f.Unknown, "; ")}
		}
		s.Cases = append(s.Cases, fc)
		for _, sc := range f.Scenarios {
			c := junitCase{Classname: class(r.System, f.Name), Name: sc.Name, Time: seconds(sc.Duration)}
			switch sc.Verdict {
			case check.Invalid:
				full := sc
				if f.Failure != nil && f.Failure.Name == sc.Name {
					full = *f.Failure // with its replay command and evidence
				}
				c.Failure = failureOf(&full, "")
			case check.Unknown, "":
				c.Skipped = &junitResult{Message: "inconclusive: " + oneLine(sc.Reason)}
			}
			s.Cases = append(s.Cases, c)
		}
		top.Suites = append(top.Suites, s)
	}
	if len(r.Bench) > 0 {
		s := junitSuite{Name: "workproof bench", Time: seconds(r.Elapsed), Timestamp: stamp}
		for _, row := range r.Bench {
			c := junitCase{Classname: class("bench"), Name: row.System}
			var t Duration
			for _, run := range row.Runs {
				t += run.Duration
			}
			c.Time = seconds(t)
			if !row.Pass {
				c.Failure = benchFailure(row)
			}
			s.Cases = append(s.Cases, c)
		}
		top.Suites = append(top.Suites, s)
	}
	if r.Error != "" {
		top.Suites = append(top.Suites, junitSuite{Name: "workproof harness", Cases: []junitCase{{
			Classname: class("harness"), Name: "harness", Time: "0",
			Error: &junitResult{Message: oneLine(r.Error), Type: "harness-error", Text: r.Error},
		}}})
	}
	for i := range top.Suites {
		s := &top.Suites[i]
		s.Tests = len(s.Cases)
		for _, c := range s.Cases {
			switch {
			case c.Failure != nil:
				s.Failures++
			case c.Error != nil:
				s.Errors++
			case c.Skipped != nil:
				s.Skipped++
			}
		}
		top.Tests += s.Tests
		top.Failures += s.Failures
		top.Errors += s.Errors
		top.Skipped += s.Skipped
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(top); err != nil {
		return fmt.Errorf("reports: junit: %w", err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// failureOf is an invalid example as a JUnit failure.
func failureOf(ex *Example, prefix string) *junitResult {
	var b strings.Builder
	for _, v := range ex.Violations {
		b.WriteString(oneLine(v.Line) + "\n")
	}
	msg, typ := prefix+"invalid", "invalid"
	if len(ex.Violations) > 0 {
		msg, typ = prefix+oneLine(ex.Violations[0].Line), string(ex.Violations[0].Invariant)
		if n := len(ex.Violations); n > 1 {
			msg += fmt.Sprintf(" (and %d more)", n-1)
		}
	}
	if ex.ProgramText != "" {
		fmt.Fprintf(&b, "\ncounterexample (%d actions):\n%s", ex.Actions, ex.ProgramText)
	}
	if ex.Replay != "" {
		fmt.Fprintf(&b, "\nreplay: %s\n", ex.Replay)
	}
	if ex.Dir != "" {
		fmt.Fprintf(&b, "evidence: %s/\n", ex.Dir)
	}
	return &junitResult{Message: msg, Type: typ, Text: b.String()}
}

func benchFailure(row BenchRow) *junitResult {
	n := len(row.Runs)
	if row.Breaks == "" {
		var b strings.Builder
		msg := fmt.Sprintf("the reference was invalid in %d of %d runs", row.Caught, n)
		for _, run := range row.Runs {
			if run.Failure != nil {
				b.WriteString(failureOf(run.Failure, "").Text)
			}
		}
		return &junitResult{Message: msg, Type: "false-alarm", Text: b.String()}
	}
	return &junitResult{Message: fmt.Sprintf("caught in %d of %d runs (breaks %s)", row.Caught, n, row.Breaks), Type: "missed",
		Text: fmt.Sprintf("mutant %s is meant to break %s; the gate caught it in %d of %d runs\n", row.System, row.Breaks, row.Caught, n)}
}
