package reports

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/workproof/workproof/sim/check"
)

// WriteMarkdown writes the human summary of r: the verdict, the seed and the
// replay command first, then settings, Postgres settings, counts,
// throughput, faults injected, crash points hit, paths reached, checkpoints
// and every violation line. The output depends on r alone (no clock, no map
// order), so it can be compared with a golden file.
func WriteMarkdown(w io.Writer, r *Report) error {
	b := bufio.NewWriter(w)
	m := md{b}
	if r.Kind != KindSoak && r.Kind != "" {
		m.run(r)
		return b.Flush()
	}
	m.header(r)
	m.settings(r)
	m.postgres(r)
	m.counts(r)
	m.faults(r)
	m.paths(r)
	m.checkpoints(r)
	m.violations(r)
	return b.Flush()
}

type md struct{ w *bufio.Writer }

func (m md) p(format string, args ...any) { fmt.Fprintf(m.w, format, args...) }

func (m md) header(r *Report) {
	kind := r.Kind
	if kind == "" {
		kind = "run"
	}
	m.p("# workproof %s of %s: %s\n\n", kind, orDash(r.System), verdictWord(r.Verdict))
	m.p("**Verdict: %s** (exit %d)", verdictWord(r.Verdict), r.ExitCode())
	saidReason := false
	switch {
	case r.Verdict == check.Invalid:
		first := r.Violations
		if len(first) > 0 {
			m.p(" — %s, first found at checkpoint %d (traffic time %s).", plural(len(r.Violations), "violation"), first[0].Checkpoint, dur(first[0].At))
		} else {
			m.p(" — an invariant was violated.")
		}
	case r.Verdict == check.Valid:
		m.p(" — every invariant held at every checkpoint, the final one included.")
	default:
		if r.Reason != "" {
			m.p(" — %s", sentence(r.Reason))
			saidReason = true
		}
	}
	m.p("\n\n")
	if r.Error != "" {
		m.p("**Harness error:** %s\n\n", oneLine(r.Error))
	}
	if r.Replay != "" {
		m.p("Replay (same seed and settings; the interleaving of real goroutines and Postgres still varies):\n\n```sh\n%s\n```\n\n", r.Replay)
	}
	m.p("| run | |\n|---|---|\n")
	m.p("| system | %s |\n", cell(orDash(r.System)))
	m.p("| seed | %d |\n", r.Seed)
	if !r.Started.IsZero() {
		m.p("| started | %s |\n", r.Started.UTC().Format(time.RFC3339))
	}
	m.p("| ran | %s wall clock, %s of traffic |\n", dur(r.Elapsed), dur(r.TrafficTime))
	m.p("| ended | %s |\n", orDash(r.Ended))
	if r.Reason != "" && !saidReason {
		m.p("| reason | %s |\n", cell(r.Reason))
	}
	m.p("\n")
}

func (m md) settings(r *Report) {
	s := r.Settings
	m.p("## Settings\n\n| setting | value |\n|---|---|\n")
	m.p("| duration (traffic time) | %s |\n", dur(s.Duration))
	m.p("| workers | %d |\n", s.Workers)
	m.p("| rate | %s requests/s |\n", num(s.Rate))
	m.p("| instances | %d |\n", s.Instances)
	m.p("| clients | %d |\n", s.Clients)
	m.p("| faults | %s |\n", orDash(s.Faults))
	m.p("| check every | %s |\n", dur(s.CheckEvery))
	m.p("| converge timeout | %s |\n", dur(s.ConvergeTimeout))
	m.p("| keep going after a violation | %s |\n", yesNo(s.KeepGoing))
	if s.ProcessWorkers {
		m.p("| workers | processes, killed with SIGKILL |\n")
	}
	m.p("\n")
}

func (m md) postgres(r *Report) {
	pg := r.Postgres
	m.p("## Postgres\n\n")
	desc := orDash(pg.Kind)
	switch pg.Kind {
	case "ephemeral":
		desc = "a private ephemeral cluster started and removed by the run"
	case "dsn":
		desc = "a server given by connection string"
	}
	if pg.Version != "" {
		desc += ", version " + pg.Version
	}
	m.p("%s.\n\n", desc)
	if len(pg.Settings) == 0 {
		m.p("Server settings: the server's own (not managed by workproof).\n\n")
		return
	}
	m.p("| server setting | value |\n|---|---|\n")
	keys := make([]string, 0, len(pg.Settings))
	for k := range pg.Settings {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		m.p("| %s | %s |\n", cell(k), cell(pg.Settings[k]))
	}
	m.p("\n")
}

func (m md) counts(r *Report) {
	q, w, t := r.Requests, r.Work, r.Throughput
	m.p("## Counts\n\n")
	m.p("| requests | count |\n|---|---:|\n")
	m.p("| sent | %d |\n| changes (create, resize, delete) | %d |\n| accepted changes | %d |\n", q.Sent, q.Changes, q.Accepted)
	m.p("| refused busy | %d |\n| rejected (not found, exists, invalid) | %d |\n| unknown outcome | %d |\n| gets | %d |\n\n", q.Busy, q.Rejected, q.Unknown, q.Gets)
	m.p("| work item intervals | count |\n|---|---:|\n")
	m.p("| entered | %d |\n| done | %d |\n| retried | %d |\n| parked | %d |\n| unknown outcome | %d |\n| cut by a crash or lost session | %d |\n\n", w.Entered, w.Done, w.Retried, w.Parked, w.Errored, w.Cut)
	m.p("## Throughput\n\nPer second of traffic time (%s; checkpoint pauses excluded).\n\n", dur(r.TrafficTime))
	m.p("| | per second |\n|---|---:|\n")
	m.p("| requests | %.2f |\n| accepted changes | %.2f |\n| work items done | %.2f |\n\n", t.RequestsPerS, t.ChangesPerS, t.WorkPerS)
}

func (m md) faults(r *Report) {
	m.p("## Faults injected\n\n")
	if len(r.Faults) == 0 {
		m.p("None.\n\n")
	} else {
		m.p("| fault | count |\n|---|---:|\n")
		for _, c := range r.Faults {
			m.p("| %s | %d |\n", cell(c.Name), c.Count)
		}
		m.p("\n")
	}
	m.p("## Crash points hit\n\n")
	if len(r.CrashPoints) == 0 {
		m.p("None.")
	} else {
		m.p("| point | crashes |\n|---|---:|\n")
		for _, c := range r.CrashPoints {
			m.p("| `%s` | %d |\n", strings.ReplaceAll(c.Name, "`", "'"), c.Count)
		}
	}
	m.p("\n%s passed.\n\n", plural(r.PointsPassed, "distinct crash point"))
}

func (m md) paths(r *Report) {
	m.p("## Paths reached\n\n")
	for _, p := range r.Reached {
		m.p("- [x] %s\n", p)
	}
	for _, p := range r.Unreached {
		m.p("- [ ] %s\n", p)
	}
	if len(r.Reached)+len(r.Unreached) == 0 {
		m.p("Not recorded.\n")
	}
	m.p("\n")
}

func (m md) checkpoints(r *Report) {
	m.p("## Checkpoints\n\n")
	if len(r.Checkpoints) == 0 {
		m.p("None ran.\n\n")
		return
	}
	m.p("| # | traffic time | wall clock | settled | verdict | violations (new) | paused | checking |\n|---:|---|---|---|---|---|---|---|\n")
	for _, c := range r.Checkpoints {
		idx := fmt.Sprint(c.Index)
		if c.Final {
			idx += " (final)"
		}
		verdict := string(c.Verdict)
		if c.Error != "" {
			verdict = "error: " + oneLine(c.Error)
		}
		m.p("| %s | %s | %s | %s | %s | %d (%d) | %s | %s |\n", idx, dur(c.At), dur(c.Elapsed), yesNo(c.Settled), cell(orDash(verdict)), c.Violations, c.New, dur(c.Took), dur(c.Checked))
	}
	m.p("\n")
}

func (m md) violations(r *Report) {
	m.p("## Violations\n\n")
	if len(r.Violations) == 0 {
		m.p("None.\n")
		return
	}
	cp := -1
	for _, v := range r.Violations {
		if v.Checkpoint != cp {
			if cp >= 0 {
				m.p("```\n\n")
			}
			cp = v.Checkpoint
			m.p("Found at checkpoint %d (traffic time %s):\n\n```\n", v.Checkpoint, dur(v.At))
		}
		m.p("%s\n", oneLine(v.Line))
	}
	m.p("```\n\n")
	m.blast(r.Violations)
	m.p("The evidence (history, ledgers, state) of the deciding check is in evidence.json")
	if len(r.Violations) > 0 && r.Violations[0].Evidence != "" {
		m.p("; each violation's own slice of it is in the file the table names")
	}
	m.p(".\n")
}

func verdictWord(v check.Verdict) string {
	switch v {
	case check.Invalid:
		return "INVALID"
	case "":
		return "unknown"
	}
	return string(v)
}

func dur(d Duration) string {
	t := d.D()
	switch {
	case t >= time.Second:
		t = t.Round(10 * time.Millisecond)
	case t >= time.Millisecond:
		t = t.Round(time.Millisecond)
	}
	return t.String()
}

func num(f float64) string {
	s := fmt.Sprintf("%.2f", f)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func sentence(s string) string {
	s = oneLine(s)
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func cell(s string) string {
	return strings.ReplaceAll(oneLine(s), "|", `\|`)
}
