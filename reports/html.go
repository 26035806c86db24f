package reports

import (
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"

	"github.com/workproof/workproof/sim/check"
)

// maxTimelineRows bounds what a timeline draws: past it (a long soak), the
// timeline shows the first violation's evidence slice instead of the run.
const maxTimelineRows = 1500

// WriteHTML writes report.html: one self-contained page (inline CSS and
// SVG, no script, nothing fetched) with the verdict, the replay command,
// each violation with its blast radius and evidence slice, and the plots —
// a timeline per failing example (or the soak's deciding check), the
// control error signal, and for a soak throughput and latency, each with
// the fault windows shaded.
func WriteHTML(w io.Writer, r *Report) error {
	page, err := buildPage(r)
	if err != nil {
		return err
	}
	if err := pageTemplate.Execute(w, page); err != nil {
		return fmt.Errorf("reports: html: %w", err)
	}
	return nil
}

type page struct {
	R        *Report
	Title    string
	Verdict  string
	Exit     int
	Started  string
	Elapsed  string
	Legend   []legendItem
	Windows  []legendItem
	Sections []section
	Note     string
}

type legendItem struct {
	Name  string
	Color string
	Glyph string // "", "crash", "ring", "triangle", "outline"
}

// section is one run with evidence: a failing example, a replay attempt,
// or the soak's deciding check.
type section struct {
	ID         string
	Title      string
	Lines      []Violation
	Replay     string
	Dir        string
	Program    string
	Series     []figure
	Timeline   *figure
	TLNote     string
	Slices     []sliceView
	Settled    bool
	Verdict    string
	HasProgram bool
}

type figure struct {
	ID      string
	Kind    string // data-plot: timeline, error-signal, throughput, latency
	SVG     template.HTML
	Caption string
}

type sliceView struct {
	Line  string
	Blast string
	File  string
	Ops   []Op
	Ivs   []ivRow
	Reqs  []reqRow
	Rows  []Instance
	Work  []WorkItem
	T0    time.Time
}

type ivRow struct {
	Worker, Item, Outcome string
	Start, End            string
}

type reqRow struct {
	Seq                                 int64
	Service, Endpoint, Caller, Key      string
	Status                              int
	Effect, Replayed, Highlight         bool
	Fault, Start, End, Owner, ErrorText string
}

func buildPage(r *Report) (*page, error) {
	pg := &page{R: r, Verdict: verdictWord(r.Verdict), Exit: r.ExitCode(), Elapsed: dur(r.Elapsed), Note: SeriesApproximation}
	pg.Title = fmt.Sprintf("workproof %s of %s: %s", orDash(r.Kind), orDash(r.System), pg.Verdict)
	if !r.Started.IsZero() {
		pg.Started = r.Started.UTC().Format(time.RFC3339)
	}
	pg.Legend = []legendItem{
		{"request ok", hex(colOp), ""}, {"request refused", hex(colOpFail), ""}, {"request outcome unknown", hex(colOpInfo), ""},
		{"work item done", hex(colDone), ""}, {"left to retry", hex(colRetry), ""}, {"parked", hex(colParked), ""},
		{"cut by a crash or lost session", hex(colCut), ""}, {"open / unknown", hex(colOpen), ""},
		{"provider call with effect", hex(colCall), ""}, {"provider call, no effect", hex(colCallNone), ""}, {"provider call, fault fired", hex(colCallFault), ""},
		{"named by a violation", hex(colHighlight), "outline"}, {"crash", hex(colHighlight), "crash"}, {"lease lost", "#000", "ring"}, {"restart", "#000", "triangle"},
	}
	pg.Windows = []legendItem{
		{"link fault", hex(colLinkFault), ""}, {"provider fault", hex(colProvFault), ""}, {"postgres fault", hex(colPgFault), ""}, {"bug deployed", hex(colBugWindow), ""},
	}
	n := 0
	add := func(title string, ex *Example, in *check.Input, vs []Violation, series *Series, soak bool) error {
		n++
		s, err := buildSection(fmt.Sprintf("run-%d", n), title, ex, in, vs, series, soak)
		if err != nil {
			return err
		}
		pg.Sections = append(pg.Sections, s)
		return nil
	}
	if r.Evidence != nil || r.Series != nil {
		title := "The run"
		if r.Evidence != nil && r.Verdict != check.Valid {
			title = "The deciding check"
		}
		if err := add(title, nil, r.Evidence, r.Violations, r.Series, true); err != nil {
			return nil, err
		}
	}
	for i := range r.Families {
		if ex := r.Families[i].Failure; ex != nil && (ex.Evidence != nil || len(ex.Violations) > 0) {
			if err := add(r.Families[i].Name+": "+ex.Name, ex, ex.Evidence, ex.Violations, ex.Series, false); err != nil {
				return nil, err
			}
		}
	}
	if k := len(r.Examples); k > 0 {
		ex := &r.Examples[k-1]
		if err := add(fmt.Sprintf("Attempt %d: %s %s", k, ex.Family, ex.Name), ex, ex.Evidence, ex.Violations, ex.Series, false); err != nil {
			return nil, err
		}
	}
	for i := range r.Bench {
		for j := range r.Bench[i].Runs {
			run := r.Bench[i].Runs[j]
			if ex := run.Failure; ex != nil && ex.Evidence != nil && r.Bench[i].Breaks == "" {
				if err := add(fmt.Sprintf("False alarm: %s seed %d, %s %s", r.Bench[i].System, run.Seed, ex.Family, ex.Name), ex, ex.Evidence, ex.Violations, ex.Series, false); err != nil {
					return nil, err
				}
			}
		}
	}
	return pg, nil
}

func buildSection(id, title string, ex *Example, in *check.Input, vs []Violation, series *Series, soak bool) (section, error) {
	s := section{ID: id, Title: title, Lines: vs}
	if ex != nil {
		s.Replay, s.Dir, s.Program, s.Settled, s.Verdict = ex.Replay, ex.Dir, ex.ProgramText, ex.Settled, verdictWord(ex.Verdict)
	}
	if series == nil && in != nil {
		series = DeriveSeries(*in)
	}
	if series != nil {
		if soak {
			for _, f := range []struct {
				kind string
				draw func(*Series) (string, error)
				cap  string
			}{
				{"throughput", throughputPlot, "Accepted changes and work items done per second, over a trailing window of a fiftieth of the run; fault windows shaded."},
				{"latency", latencyPlot, "Percentiles of the latency of the requests answered in a trailing window of a fiftieth of the run; fault windows shaded."},
			} {
				svg, err := f.draw(series)
				if err != nil {
					return s, err
				}
				s.Series = append(s.Series, figure{ID: id + "-" + f.kind, Kind: f.kind, SVG: template.HTML(svg), Caption: f.cap})
			}
		}
		svg, err := errorSignalPlot(series)
		if err != nil {
			return s, err
		}
		s.Series = append(s.Series, figure{ID: id + "-error-signal", Kind: "error-signal", SVG: template.HTML(svg),
			Caption: "The control loop's error: instances whose observed state differs from the desired one, with the work queued, parked and in flight beside it; fault windows shaded. How it is derived is at the foot of the page."})
	}
	if in == nil {
		return s, nil
	}
	ops, keys := map[int]bool{}, map[string]bool{}
	for _, v := range vs {
		for _, o := range v.Ops {
			ops[o] = true
		}
		for _, k := range v.Keys {
			keys[k] = true
		}
	}
	t0, t1 := spanOf(*in)
	ev := EvidenceOf(*in)
	if len(ev.Ops)+len(ev.Intervals)+len(ev.Requests) > maxTimelineRows && len(vs) > 0 {
		ev = SliceOf(*in, vs[0].Violation)
		s.TLNote = "The run is too long to draw whole: the timeline shows the evidence slice of the first violation."
	}
	var wins []Window
	if series != nil {
		wins = series.Windows
	}
	tl := buildTimeline(ev, wins, t0, t1.Sub(t0).Seconds(), ops, keys)
	if len(tl.lanes) > 0 {
		svg, err := timelinePlot(tl)
		if err != nil {
			return s, err
		}
		s.Timeline = &figure{ID: id + "-timeline", Kind: "timeline", SVG: template.HTML(svg),
			Caption: "One lane per API client and per worker incarnation: requests, work-item intervals (upper half) and provider calls (lower half); the requests and idempotency keys a violation names are outlined in red."}
	}
	for _, v := range vs {
		sl := SliceOf(*in, v.Violation)
		sv := sliceView{Line: v.Line, File: v.Evidence, Ops: sl.Ops, Rows: sl.Instances, Work: sl.Work, T0: t0}
		if v.BlastRadius != nil {
			sv.Blast = v.BlastRadius.Summary
		} else {
			sv.Blast = BlastOf(*in, v.Violation).Summary
		}
		rel := func(t time.Time) string {
			if t.IsZero() {
				return "open"
			}
			return fmt.Sprintf("%.3fs", t.Sub(t0).Seconds())
		}
		for _, iv := range sl.Intervals {
			sv.Ivs = append(sv.Ivs, ivRow{Worker: iv.Worker, Item: iv.Item, Outcome: orDash(iv.Outcome), Start: rel(iv.Start), End: rel(iv.End)})
		}
		for _, rq := range sl.Requests {
			sv.Reqs = append(sv.Reqs, reqRow{Seq: rq.Seq, Service: rq.Service, Endpoint: rq.Endpoint, Caller: rq.Caller, Key: rq.Key, Status: rq.Status,
				Effect: rq.Effect, Replayed: rq.Replayed, Fault: rq.Fault, Start: rel(rq.Start), End: rel(rq.End), Owner: rq.Owner,
				ErrorText: rq.Error, Highlight: rq.Key != "" && keys[rq.Key]})
		}
		s.Slices = append(s.Slices, sv)
	}
	return s, nil
}

var pageTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"rel": func(t0, t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return fmt.Sprintf("%.3fs", t.Sub(t0).Seconds())
	},
	"dur":  func(d Duration) string { return dur(d) },
	"word": func(v check.Verdict) string { return verdictWord(v) },
	"low":  strings.ToLower,
	"join": strings.Join,
	"yes":  yesNo,
	"inc":  func(i int) int { return i + 1 },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body { font: 14px/1.45 "Liberation Sans", Arial, sans-serif; margin: 24px auto; max-width: 1240px; padding: 0 16px; color: #222; }
h1 { font-size: 22px; margin: 0 0 8px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; } h3 { font-size: 15px; margin: 18px 0 6px; }
.verdict { display: inline-block; padding: 2px 10px; border-radius: 4px; color: #fff; font-weight: bold; }
.verdict.valid { background: #2ca02c; } .verdict.invalid { background: #d62728; } .verdict.unknown { background: #7f7f7f; }
pre, code { font: 12.5px/1.4 "Liberation Mono", monospace; } pre { background: #f6f6f6; padding: 8px 10px; overflow-x: auto; white-space: pre-wrap; }
table { border-collapse: collapse; margin: 6px 0 12px; } td, th { border: 1px solid #ddd; padding: 3px 7px; text-align: left; vertical-align: top; font-size: 13px; }
th { background: #f3f3f3; } tr.hl td { background: #fde8e8; }
figure { margin: 12px 0; } figure svg { max-width: 100%; height: auto; display: block; } figcaption { color: #555; font-size: 12.5px; }
.legend span { display: inline-block; margin: 0 12px 4px 0; font-size: 12.5px; white-space: nowrap; }
.legend i { display: inline-block; width: 14px; height: 10px; margin-right: 4px; vertical-align: middle; }
.legend i.outline { background: none !important; border: 2px solid #d62728; width: 10px; height: 7px; }
.legend i.crash, .legend i.ring, .legend i.triangle { background: none !important; width: auto; height: auto; font-style: normal; font-weight: bold; }
.legend i.crash::before { content: "\2715"; color: #d62728; } .legend i.ring::before { content: "\25CB"; } .legend i.triangle::before { content: "\25B2"; }
.line { font-family: "Liberation Mono", monospace; font-size: 12.5px; }
.blast { font-weight: bold; color: #a01818; }
.note { color: #555; font-size: 12.5px; }
</style>
</head>
<body>
<h1>workproof {{.R.Kind}} of {{.R.System}} <span class="verdict {{low .Verdict}}" id="verdict">{{.Verdict}}</span></h1>
<p>Exit {{.Exit}}{{if .R.Outcome}} — {{.R.Outcome}} {{.R.Expect}}{{end}}{{if .R.Reason}} — {{.R.Reason}}{{end}}</p>
{{if .R.Error}}<p><b>Harness error:</b> {{.R.Error}}</p>{{end}}
<table>
<tr><th>system</th><td>{{.R.System}}</td><th>seed</th><td>{{.R.Seed}}</td><th>started</th><td>{{.Started}}</td><th>ran</th><td>{{.Elapsed}}</td></tr>
</table>
{{if .R.Replay}}<p>Replay{{if .R.Families}} the first failure{{end}}:</p><pre id="replay">{{.R.Replay}}</pre>{{end}}

{{if .R.Families}}<h2>Families</h2>
<table><tr><th>family</th><th>verdict</th><th>examples</th><th>time</th><th>paths reached</th></tr>
{{range .R.Families}}<tr><td>{{.Name}}</td><td>{{word .Verdict}}</td><td>{{.Examples}}</td><td>{{dur .Duration}}</td><td>{{join .Reached ", "}}</td></tr>
{{end}}</table>
{{range .R.Families}}{{if .Scenarios}}<h3>Named scenarios</h3>
<table><tr><th>scenario</th><th>verdict</th><th>time</th><th>note</th></tr>
{{range .Scenarios}}<tr{{if eq .Verdict "invalid"}} class="hl"{{end}}><td>{{.Name}}</td><td>{{word .Verdict}}</td><td>{{dur .Duration}}</td><td>{{if .Violations}}<span class="line">{{(index .Violations 0).Line}}</span>{{else}}{{.Reason}}{{end}}</td></tr>
{{end}}</table>{{end}}{{end}}{{end}}

{{if .R.Bench}}<h2>Seeded bugs</h2>
<table><tr><th>system</th><th>breaks</th><th>caught</th><th>first caught by</th><th>violation found</th><th>median time to detect</th><th>median counterexample (actions)</th><th>as it should be</th></tr>
{{range .R.Bench}}<tr{{if not .Pass}} class="hl"{{end}}><td>{{.System}}</td><td>{{.Breaks}}</td><td>{{.Caught}}/{{len .Runs}}</td><td>{{.By}}</td><td>{{.Invariant}}</td><td>{{dur .MedianDetect}}</td><td>{{if .MedianActions}}{{.MedianActions}}{{end}}</td><td>{{yes .Pass}}</td></tr>
{{end}}</table>{{end}}

{{if .R.Examples}}<h2>Attempts</h2>
<table><tr><th>#</th><th>verdict</th><th>settled</th><th>time</th><th>first violation</th></tr>
{{range $i, $e := .R.Examples}}<tr><td>{{inc $i}}</td><td>{{word $e.Verdict}}</td><td>{{yes $e.Settled}}</td><td>{{dur $e.Duration}}</td><td>{{if $e.Violations}}<span class="line">{{(index $e.Violations 0).Line}}</span>{{end}}</td></tr>
{{end}}</table>{{end}}

{{range .Sections}}
<h2 id="{{.ID}}">{{.Title}}</h2>
{{if .Lines}}<table><tr><th>violation</th><th>blast radius</th><th>evidence slice</th></tr>
{{range .Lines}}<tr><td class="line">{{.Line}}</td><td class="blast">{{if .BlastRadius}}{{.BlastRadius.Summary}}{{end}}</td><td>{{if .Evidence}}<a href="{{.Evidence}}">{{.Evidence}}</a>{{end}}</td></tr>
{{end}}</table>{{end}}
{{if .Replay}}<p>Replay:</p><pre>{{.Replay}}</pre>{{end}}
{{if .Program}}<p>Counterexample{{if .Dir}} (saved as <a href="{{.Dir}}/program.json">{{.Dir}}/program.json</a>){{end}}:</p><pre>{{.Program}}</pre>{{end}}
{{if .Dir}}<p class="note">Whole evidence of this run: <a href="{{.Dir}}/evidence.json">{{.Dir}}/evidence.json</a>.</p>{{end}}
{{with .Timeline}}<figure class="plot" id="{{.ID}}" data-plot="{{.Kind}}">{{.SVG}}<figcaption>{{.Caption}}</figcaption></figure>
<div class="legend">{{range $.Legend}}<span><i class="{{.Glyph}}" style="background: {{.Color}}"></i>{{.Name}}</span>{{end}}</div>
<div class="legend">{{range $.Windows}}<span><i style="background: {{.Color}}"></i>{{.Name}}</span>{{end}}</div>{{end}}
{{if .TLNote}}<p class="note">{{.TLNote}}</p>{{end}}
{{range .Series}}<figure class="plot" id="{{.ID}}" data-plot="{{.Kind}}">{{.SVG}}<figcaption>{{.Caption}}</figcaption></figure>
{{end}}
{{range $k, $s := .Slices}}<details{{if eq $k 0}} open{{end}}><summary>Evidence slice {{inc $k}}: <span class="line">{{$s.Line}}</span></summary>
<p class="blast">{{$s.Blast}}</p>
{{if $s.Ops}}<table><tr><th>op</th><th>client</th><th>request</th><th>invoked</th><th>answered</th><th>outcome</th><th>generation</th></tr>
{{range $s.Ops}}<tr class="hl"><td>{{.Index}}</td><td>{{.Client}}</td><td>{{.Op}} {{.Instance}} {{.Size}}</td><td>{{rel $s.T0 .Invoke}}</td><td>{{rel $s.T0 .Complete}}</td><td>{{.Outcome}} {{.ErrKind}}</td><td>{{if .Response}}{{.Response.Generation}}{{end}}</td></tr>
{{end}}</table>{{end}}
{{if $s.Ivs}}<table><tr><th>worker</th><th>item</th><th>from</th><th>to</th><th>outcome</th></tr>
{{range $s.Ivs}}<tr><td>{{.Worker}}</td><td>{{.Item}}</td><td>{{.Start}}</td><td>{{.End}}</td><td>{{.Outcome}}</td></tr>
{{end}}</table>{{end}}
{{if $s.Reqs}}<table><tr><th>#</th><th>call</th><th>caller</th><th>idempotency key</th><th>from</th><th>to</th><th>status</th><th>effect</th><th>fault</th></tr>
{{range $s.Reqs}}<tr{{if .Highlight}} class="hl"{{end}}><td>{{.Seq}}</td><td>{{.Service}} {{.Endpoint}}</td><td>{{.Caller}}</td><td class="line">{{.Key}}</td><td>{{.Start}}</td><td>{{.End}}</td><td>{{.Status}}</td><td>{{if .Effect}}yes{{else if .Replayed}}replayed{{else}}no{{end}}</td><td>{{.Fault}}</td></tr>
{{end}}</table>{{end}}
{{if $s.Rows}}<table><tr><th>instance</th><th>generation</th><th>desired</th><th>deleting</th><th>state</th><th>active work</th><th>VM on record</th><th>observed</th></tr>
{{range $s.Rows}}<tr><td>{{.ID}}</td><td>{{.Generation}}</td><td>{{.DesiredSize}}</td><td>{{yes .Deleting}}</td><td>{{.State}}</td><td>{{yes .HasActiveWork}}</td><td>{{.VMID}}</td><td>{{.ObservedSize}} (g{{.ObservedGen}})</td></tr>
{{end}}</table>{{end}}
{{if $s.Work}}<table><tr><th>work item</th><th>kind</th><th>attempts</th><th>parked</th><th>reason</th></tr>
{{range $s.Work}}<tr><td>{{.ID}}</td><td>{{.Kind}}</td><td>{{.Attempts}}</td><td>{{yes .Parked}}</td><td>{{.Reason}}</td></tr>
{{end}}</table>{{end}}
{{if $s.File}}<p class="note">As JSON: <a href="{{$s.File}}">{{$s.File}}</a>.</p>{{end}}
</details>
{{end}}
{{end}}

{{if .R.Reached}}<h2>Paths reached</h2><p>{{join .R.Reached ", "}}</p>{{end}}
<h2>How the error signal is derived</h2>
<p class="note">{{.Note}}</p>
</body>
</html>
`))
