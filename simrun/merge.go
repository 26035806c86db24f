package simrun

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/workproof/workproof/reports"
	"github.com/workproof/workproof/sim/check"
)

// mergeCmd merges the reports of the shards of one gate (a CI job matrix
// running `gate -shard i/n`) into one.
func (c *cli) mergeCmd(_ context.Context, args []string, stdout, stderr io.Writer) int {
	var out string
	fs := flag.NewFlagSet("merge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&out, "out", "out", outFlagDoc)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: simrun merge [flags] REPORT_DIR_OR_JSON...

Merges the reports of the jobs of one sharded gate (simrun gate -shard i/n,
each job on its own machine) into one report: every family's examples,
worst verdict, coverage (experiments, pairs, pruned, unreached, failed)
summed over the shards. Each argument is a report directory or its
report.json. The shards must be of one system and one root seed.

Flags:
`)
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), "\nExit codes: 0 every shard valid; 1 some shard found a violation; 2 usage error or a shard unknown.\n\nExample:\n  simrun merge out/shard-1/latest out/shard-2/latest out/shard-3/latest\n")
	}
	full := fs.Usage
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.Usage = full
	if err == flag.ErrHelp {
		fs.SetOutput(stdout)
		fs.Usage()
		return exitValid
	}
	if err != nil || fs.NArg() == 0 {
		if err == nil {
			fmt.Fprintln(stderr, "simrun merge: give the shards' report directories (or their report.json)")
		}
		fmt.Fprintln(stderr, `Run "simrun merge -h" for help.`)
		return exitUsage
	}
	var shards []reports.Report
	for _, p := range fs.Args() {
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			p = filepath.Join(p, reports.JSONFile)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			fmt.Fprintf(stderr, "simrun merge: %v\n", err)
			return exitUsage
		}
		var r reports.Report
		if err := json.Unmarshal(b, &r); err != nil || r.Kind != reports.KindGate {
			fmt.Fprintf(stderr, "simrun merge: %s is not a gate's report.json (kind %q, %v)\n", p, r.Kind, err)
			return exitUsage
		}
		if len(shards) > 0 && (r.System != shards[0].System || r.Seed != shards[0].Seed) {
			fmt.Fprintf(stderr, "simrun merge: %s is of system %s seed %d, the first of %s seed %d: not shards of one gate\n",
				p, r.System, r.Seed, shards[0].System, shards[0].Seed)
			return exitUsage
		}
		shards = append(shards, r)
	}
	merged := mergeReports(shards)
	dir, err := runDir(out, "merge", merged.System)
	if err != nil {
		fmt.Fprintf(stderr, "simrun merge: %v\n", err)
		return exitUsage
	}
	if _, err := writeReport(dir, &merged, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "simrun merge: writing the report: %v\n", err)
		return exitUsage
	}
	for _, f := range merged.Families {
		line := fmt.Sprintf("family %-8s %-7s %d examples", f.Name, f.Verdict, f.Examples)
		if c := f.Coverage; c != nil {
			line += fmt.Sprintf("; %d experiments (%d pairs), %d unreached, %d failed", c.Experiments, c.Pairs, len(c.Unreached), len(c.Failed))
		}
		fmt.Fprintln(stdout, line)
	}
	fmt.Fprintf(stdout, "merge: %s on %s (seed %d) from %d shards; report: %s\n", merged.Verdict, merged.System, merged.Seed, len(shards), filepath.Join(dir, reports.MarkdownFile))
	return merged.Verdict.ExitCode()
}

// mergeReports merges shard reports of one gate.
func mergeReports(shards []reports.Report) reports.Report {
	m := shards[0]
	m.Families, m.Verdict = nil, check.Valid
	index := map[string]int{}
	for _, r := range shards {
		if r.Started.Before(m.Started) {
			m.Started = r.Started
		}
		m.Elapsed = max(m.Elapsed, r.Elapsed)
		if r.Ended != reports.EndCompleted {
			m.Ended = r.Ended
		}
		for _, f := range r.Families {
			i, ok := index[f.Name]
			if !ok {
				index[f.Name] = len(m.Families)
				f.Coverage = cloneCoverage(f.Coverage)
				m.Families = append(m.Families, f)
				m.Verdict = worseVerdict(m.Verdict, f.Verdict)
				continue
			}
			g := &m.Families[i]
			g.Examples += f.Examples
			g.Duration = max(g.Duration, f.Duration)
			g.Verdict = worseVerdict(g.Verdict, f.Verdict)
			g.Unknown = append(g.Unknown, f.Unknown...)
			for _, p := range f.Reached {
				if !slices.Contains(g.Reached, p) {
					g.Reached = append(g.Reached, p)
				}
			}
			if len(g.Scenarios) == 0 {
				g.Scenarios = f.Scenarios
			}
			if g.Failure == nil {
				g.Failure = f.Failure
			}
			g.Coverage = mergeCoverage(g.Coverage, f.Coverage)
			m.Verdict = worseVerdict(m.Verdict, g.Verdict)
		}
	}
	for i := range m.Families {
		slices.Sort(m.Families[i].Reached)
		if c := m.Families[i].Coverage; c != nil {
			c.Shard = ""
			delete(c.Pruned, "shard: another shard's")
			slices.Sort(c.Failed)
			slices.Sort(c.Unreached)
		}
		if f := m.Families[i].Failure; f != nil && m.Replay == "" {
			m.Replay = f.Replay
		}
	}
	return m
}

func cloneCoverage(c *reports.Coverage) *reports.Coverage {
	if c == nil {
		return nil
	}
	d := *c
	d.Pruned = map[string]int{}
	for k, v := range c.Pruned {
		d.Pruned[k] = v
	}
	d.Failed, d.Unreached, d.NeverFaulted = slices.Clone(c.Failed), slices.Clone(c.Unreached), nil
	return &d
}

// mergeCoverage adds b's experiments to a. Every shard traced the same
// workloads, so points and workloads are not summed.
func mergeCoverage(a, b *reports.Coverage) *reports.Coverage {
	if b == nil {
		return a
	}
	if a == nil {
		return cloneCoverage(b)
	}
	a.Experiments += b.Experiments
	a.Pairs += b.Pairs
	// Every shard enumerated the same experiments and pruned the same by
	// the trace; only the pairs are pruned by each shard's own runs.
	for k, v := range b.Pruned {
		if strings.HasPrefix(k, "pair") {
			a.Pruned[k] += v
		}
	}
	a.Failed = append(a.Failed, b.Failed...)
	a.Unreached = append(a.Unreached, b.Unreached...)
	return a
}

func worseVerdict(a, b check.Verdict) check.Verdict {
	rank := map[check.Verdict]int{check.Valid: 0, check.Unknown: 1, check.Invalid: 2}
	if rank[b] > rank[a] {
		return b
	}
	return a
}
