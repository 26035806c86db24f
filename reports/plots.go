package reports

import (
	"bytes"
	"fmt"
	"image/color"
	"slices"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// The plots of report.html, drawn with gonum.org/v1/plot as inline SVG.
// Each figure's colours are its series' names in the page's legend, and
// the browser test looks for them.

var (
	colDone      = rgb(0x1f77b4) // interval done; in flight
	colRetry     = rgb(0xff7f0e) // interval left to retry; queued
	colParked    = rgb(0x9467bd) // interval parked; parked
	colCut       = rgb(0x7f7f7f) // interval cut by a crash or a lost session
	colOpen      = rgb(0x8c564b) // interval open or of unknown outcome
	colCall      = rgb(0x2ca02c) // provider call with an effect
	colCallNone  = rgb(0xa8d8a0) // provider call without one (read, replay, fault before)
	colCallFault = rgb(0xe377c2) // provider call a fault fired on
	colOp        = rgb(0x17becf) // user request answered ok
	colOpFail    = rgb(0xc7c7c7) // user request refused (busy, not found…)
	colOpInfo    = rgb(0xbcbd22) // user request of unknown outcome
	colHighlight = rgb(0xd62728) // named by a violation; the error signal
	colMark      = rgb(0x000000) // crash, lease lost, restart
	colLinkFault = color.NRGBA{R: 0xff, G: 0xc8, B: 0x00, A: 0x55}
	colProvFault = color.NRGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0x30}
	colPgFault   = color.NRGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0x30}
	colBugWindow = color.NRGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0x22}
)

func rgb(v uint32) color.NRGBA {
	return color.NRGBA{R: uint8(v >> 16), G: uint8(v >> 8), B: uint8(v), A: 0xff}
}

// hex is a colour as CSS writes it (the legend in the page).
func hex(c color.NRGBA) string {
	if c.A == 0xff {
		return fmt.Sprintf("#%02x%02x%02x", c.R, c.G, c.B)
	}
	return fmt.Sprintf("#%02x%02x%02x%02x", c.R, c.G, c.B, c.A)
}

func windowColor(kind string) color.NRGBA {
	switch kind {
	case WindowLink:
		return colLinkFault
	case WindowPostgres:
		return colPgFault
	case WindowBug:
		return colBugWindow
	}
	return colProvFault
}

// sans is the plots' face: Liberation Sans ships with gonum (its metrics
// lay the text out); the SVG names the family and the browser uses it, or
// its own sans-serif.
func sans(size vg.Length) font.Font {
	return font.Font{Typeface: "Liberation", Variant: "Sans", Size: size}
}

func newPlot(title, xlabel, ylabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font = sans(12)
	p.X.Label.Text, p.Y.Label.Text = xlabel, ylabel
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font = sans(10)
		a.Tick.Label.Font = sans(9)
	}
	p.Legend.TextStyle.Font = sans(9)
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(6), vg.Points(-4)
	return p
}

// svgOf renders p as an SVG document of w × h points.
func svgOf(p *plot.Plot, w, h vg.Length) (string, error) {
	c := vgsvg.NewWith(vgsvg.UseWH(w, h), vgsvg.EmbedFonts(false))
	p.Draw(draw.New(c))
	var b bytes.Buffer
	if _, err := c.WriteTo(&b); err != nil {
		return "", fmt.Errorf("reports: svg: %w", err)
	}
	s := b.String()
	// The page inlines it: drop the XML prolog, which is only for a file.
	if i := strings.Index(s, "<svg"); i > 0 {
		s = s[i:]
	}
	return s, nil
}

// shade draws fault windows as bands over the whole height of a plot (or,
// for a timeline, over one lane).
type shade struct {
	windows []Window
	lane    func(Window) (lo, hi float64, ok bool) // nil: the whole height
}

func (s shade) Plot(c draw.Canvas, p *plot.Plot) {
	tx, ty := p.Transforms(&c)
	for _, w := range s.windows {
		x0, x1 := tx(w.From), tx(w.To)
		if x1-x0 < 1 {
			x1 = x0 + 1
		}
		y0, y1 := c.Min.Y, c.Max.Y
		if s.lane != nil {
			lo, hi, ok := s.lane(w)
			if !ok {
				continue
			}
			y0, y1 = ty(lo), ty(hi)
		}
		rect(c, windowColor(w.Kind), x0, y0, x1, y1)
	}
}

func rect(c draw.Canvas, col color.Color, x0, y0, x1, y1 vg.Length) {
	x0, x1 = max(x0, c.Min.X), min(x1, c.Max.X)
	if x1 <= x0 {
		return
	}
	c.FillPolygon(col, []vg.Point{{X: x0, Y: y0}, {X: x1, Y: y0}, {X: x1, Y: y1}, {X: x0, Y: y1}})
}

// swatch is a legend thumbnail: a filled box.
type swatch struct{ c color.Color }

func (s swatch) Thumbnail(c *draw.Canvas) {
	c.FillPolygon(s.c, []vg.Point{c.Min, {X: c.Max.X, Y: c.Min.Y}, c.Max, {X: c.Min.X, Y: c.Max.Y}})
}

// stepLine is a series drawn as a step function.
func stepLine(xs, ys []float64, col color.Color, width vg.Length, dashed bool) (*plotter.Line, error) {
	pts := make(plotter.XYs, len(xs))
	for i := range xs {
		pts[i] = plotter.XY{X: xs[i], Y: ys[i]}
	}
	l, err := plotter.NewLine(pts)
	if err != nil {
		return nil, fmt.Errorf("reports: plot: %w", err)
	}
	l.StepStyle = plotter.PostStep
	l.LineStyle.Color, l.LineStyle.Width = col, width
	if dashed {
		l.LineStyle.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
	}
	return l, nil
}

// seriesPlot draws the named columns of a series against time, with the
// fault windows shaded.
func seriesPlot(s *Series, title, ylabel string, cols []seriesCol) (string, error) {
	p := newPlot(title, "seconds since the run began", ylabel)
	p.X.Min, p.X.Max = 0, s.Span
	p.Y.Min = 0
	p.Add(shade{windows: merged(s.Windows, false)})
	xs := []float64{0}
	for _, pt := range s.Points {
		xs = append(xs, pt.At)
	}
	top := 1.0
	lines := make([]*plotter.Line, len(cols))
	for i, col := range cols {
		ys := []float64{0}
		if len(s.Points) > 0 {
			ys[0] = col.get(s.Points[0])
		}
		for _, pt := range s.Points {
			ys = append(ys, col.get(pt))
			top = max(top, col.get(pt))
		}
		l, err := stepLine(xs, ys, col.color, col.width, col.dashed)
		if err != nil {
			return "", err
		}
		lines[i] = l
		p.Legend.Add(col.name, l)
	}
	// The first series is the one the plot is about: drawn last, on top.
	for i := len(lines) - 1; i >= 0; i-- {
		p.Add(lines[i])
	}
	p.Y.Max = top * 1.35 // room for the legend
	if cols[0].integer {
		p.Y.Tick.Marker = intTicks{}
	}
	return svgOf(p, vg.Points(900), vg.Points(230))
}

type seriesCol struct {
	name    string
	color   color.Color
	width   vg.Length
	dashed  bool
	integer bool
	get     func(SeriesPoint) float64
}

// errorSignalPlot is the P-controller's view of the run.
func errorSignalPlot(s *Series) (string, error) {
	return seriesPlot(s, "Control error signal", "instances / work items", []seriesCol{
		{name: "instances off their desired state", color: colHighlight, width: vg.Points(2.2), integer: true, get: func(p SeriesPoint) float64 { return float64(p.OffDesired) }},
		{name: "queued (off, no worker on them)", color: colRetry, width: vg.Points(1.2), get: func(p SeriesPoint) float64 { return float64(p.Queued) }},
		{name: "parked", color: colParked, width: vg.Points(1.2), get: func(p SeriesPoint) float64 { return float64(p.Parked) }},
		{name: "work items in flight", color: colDone, width: vg.Points(1.2), dashed: true, get: func(p SeriesPoint) float64 { return float64(p.InFlight) }},
	})
}

func throughputPlot(s *Series) (string, error) {
	return seriesPlot(s, "Throughput", "per second", []seriesCol{
		{name: "accepted changes/s", color: colOp, width: vg.Points(1.5), get: func(p SeriesPoint) float64 { return p.ChangesPerS }},
		{name: "work items done/s", color: colDone, width: vg.Points(1.5), get: func(p SeriesPoint) float64 { return p.WorkPerS }},
	})
}

func latencyPlot(s *Series) (string, error) {
	return seriesPlot(s, "Request latency", "milliseconds", []seriesCol{
		{name: "p50", color: colCall, width: vg.Points(1.2), get: func(p SeriesPoint) float64 { return p.LatencyP50 }},
		{name: "p95", color: colRetry, width: vg.Points(1.2), get: func(p SeriesPoint) float64 { return p.LatencyP95 }},
		{name: "p99", color: colHighlight, width: vg.Points(1.5), get: func(p SeriesPoint) float64 { return p.LatencyP99 }},
	})
}

// intTicks are ticks at whole numbers only (counts of instances).
type intTicks struct{}

func (intTicks) Ticks(lo, hi float64) []plot.Tick {
	step := 1.0
	for (hi-lo)/step > 8 {
		step *= 2
	}
	var out []plot.Tick
	for v := 0.0; v <= hi; v += step {
		if v >= lo {
			out = append(out, plot.Tick{Value: v, Label: strconv.Itoa(int(v))})
		}
	}
	return out
}

// ---- timeline ---------------------------------------------------------

// timeline is what the timeline plot draws: one lane per API client and
// per worker incarnation, top to bottom.
type timeline struct {
	lanes   []string
	kinds   []string // "client" or "worker", per lane
	bars    []tlBar
	marks   []tlMark
	windows []Window
	span    float64
	note    string // what part of the run it shows, when not all of it
}

type tlBar struct {
	lane      int
	from, to  float64
	lower     bool // provider calls: the lower half of a worker lane
	color     color.Color
	highlight bool
}

type tlMark struct {
	lane  int
	at    float64
	shape string // "crash", "lease-lost", "restart"
}

// buildTimeline lays out e on a time axis from t0. hl says which ops and
// idempotency keys the violations name.
func buildTimeline(e Evidence, wins []Window, t0 time.Time, span float64, ops map[int]bool, keys map[string]bool) *timeline {
	tl := &timeline{span: span}
	sec := func(t time.Time) float64 {
		if t.IsZero() {
			return span
		}
		return t.Sub(t0).Seconds()
	}
	lane := map[string]int{}
	var clients, workers []string
	seen := map[string]bool{}
	for _, o := range e.Ops {
		if !seen["c "+o.Client] {
			seen["c "+o.Client] = true
			clients = append(clients, o.Client)
		}
	}
	addWorker := func(w string) {
		if w != "" && !seen["w "+w] {
			seen["w "+w] = true
			workers = append(workers, w)
		}
	}
	for _, iv := range e.Intervals {
		addWorker(iv.Worker)
	}
	for _, r := range e.Requests {
		addWorker(r.Caller)
	}
	for _, ev := range e.Events {
		addWorker(ev.Worker)
	}
	for _, w := range wins {
		if inc := w.Worker(); inc != "" && len(workers) > 0 {
			addWorker(inc)
		}
	}
	slices.SortFunc(clients, natural)
	slices.SortFunc(workers, natural)
	for _, c := range clients {
		lane["c "+c] = len(tl.lanes)
		tl.lanes = append(tl.lanes, "api "+c)
		tl.kinds = append(tl.kinds, "client")
	}
	for _, w := range workers {
		lane["w "+w] = len(tl.lanes)
		tl.lanes = append(tl.lanes, w)
		tl.kinds = append(tl.kinds, "worker")
	}
	for _, o := range e.Ops {
		col := colOp
		switch o.Outcome {
		case "fail":
			col = colOpFail
		case "info", "pending":
			col = colOpInfo
		}
		tl.bars = append(tl.bars, tlBar{lane: lane["c "+o.Client], from: sec(o.Invoke), to: sec(o.Complete), color: col, highlight: ops[o.Index]})
	}
	first := map[string]float64{}
	seenAt := func(w string, t float64) {
		if v, ok := first[w]; !ok || t < v {
			first[w] = t
		}
	}
	for _, iv := range e.Intervals {
		col := colOpen
		switch iv.Outcome {
		case "done":
			col = colDone
		case "retry":
			col = colRetry
		case "parked":
			col = colParked
		case "crashed", "lease-lost":
			col = colCut
		}
		tl.bars = append(tl.bars, tlBar{lane: lane["w "+iv.Worker], from: sec(iv.Start), to: sec(iv.End), color: col})
		seenAt(iv.Worker, sec(iv.Start))
	}
	for _, r := range e.Requests {
		col := colCallNone
		switch {
		case r.Fault != "":
			col = colCallFault
		case r.Effect:
			col = colCall
		}
		tl.bars = append(tl.bars, tlBar{lane: lane["w "+r.Caller], from: sec(r.Start), to: sec(r.End), lower: true, color: col,
			highlight: r.Key != "" && keys[r.Key]})
		seenAt(r.Caller, sec(r.Start))
	}
	for _, ev := range e.Events {
		shape := ""
		switch ev.Kind {
		case "crash":
			shape = "crash"
		case "lease-lost":
			shape = "lease-lost"
		}
		if l, ok := lane["w "+ev.Worker]; ok && shape != "" {
			tl.marks = append(tl.marks, tlMark{lane: l, at: sec(ev.Time), shape: shape})
		}
	}
	// A worker incarnation after the first of its slot is a restart: mark
	// where it first shows.
	for _, w := range workers {
		if _, n, ok := strings.Cut(w, "."); ok && n != "1" {
			if t, ok := first[w]; ok {
				tl.marks = append(tl.marks, tlMark{lane: lane["w "+w], at: t, shape: "restart"})
			}
		}
	}
	for _, w := range wins {
		if inc := w.Worker(); inc != "" {
			if _, ok := lane["w "+inc]; !ok {
				continue
			}
		}
		tl.windows = append(tl.windows, w)
	}
	return tl
}

// natural orders "w2.1" before "w10.1" and "c2" before "c10".
func natural(a, b string) int {
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		if da > 0 && db > 0 {
			na, _ := strconv.Atoi(a[:da])
			nb, _ := strconv.Atoi(b[:db])
			if na != nb {
				return na - nb
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func digits(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}

// y is a lane's centre: the first lane at the top.
func (tl *timeline) y(lane int) float64 { return float64(len(tl.lanes) - 1 - lane) }

func (tl *timeline) DataRange() (xmin, xmax, ymin, ymax float64) {
	return 0, tl.span, -0.5, float64(len(tl.lanes)) - 0.5
}

func (tl *timeline) Plot(c draw.Canvas, p *plot.Plot) {
	tx, ty := p.Transforms(&c)
	minW := vg.Points(1.5)
	for i := range tl.lanes {
		if i%2 == 1 {
			rect(c, color.NRGBA{A: 0x0a}, c.Min.X, ty(tl.y(i)-0.5), c.Max.X, ty(tl.y(i)+0.5))
		}
	}
	for _, b := range tl.bars {
		y := tl.y(b.lane)
		lo, hi := y-0.32, y+0.32
		if tl.kinds[b.lane] == "worker" {
			lo, hi = y+0.02, y+0.38
			if b.lower {
				lo, hi = y-0.38, y-0.04
			}
		}
		x0, x1 := tx(b.from), tx(b.to)
		if x1-x0 < minW {
			x1 = x0 + minW
		}
		rect(c, b.color, x0, ty(lo), x1, ty(hi))
		if b.highlight {
			ls := draw.LineStyle{Color: colHighlight, Width: vg.Points(1.6)}
			y0, y1 := ty(lo)-vg.Points(1), ty(hi)+vg.Points(1)
			x0, x1 := x0-vg.Points(1), x1+vg.Points(1)
			c.StrokeLines(ls, []vg.Point{{X: x0, Y: y0}, {X: x1, Y: y0}, {X: x1, Y: y1}, {X: x0, Y: y1}, {X: x0, Y: y0}})
		}
	}
	for _, m := range tl.marks {
		pt := vg.Point{X: tx(m.at), Y: ty(tl.y(m.lane))}
		g := draw.GlyphStyle{Color: colMark, Radius: vg.Points(4)}
		switch m.shape {
		case "crash":
			g.Shape, g.Color, g.Radius = thickCross{}, colHighlight, vg.Points(5)
		case "lease-lost":
			g.Shape = draw.RingGlyph{}
		default:
			g.Shape, g.Radius = draw.TriangleGlyph{}, vg.Points(3.5)
		}
		c.DrawGlyph(g, pt)
	}
}

// timelinePlot renders tl.
func timelinePlot(tl *timeline) (string, error) {
	p := newPlot("Timeline", "seconds since the run began", "")
	p.X.Min, p.X.Max = 0, tl.span
	p.Add(shade{windows: merged(tl.windows, true), lane: func(w Window) (float64, float64, bool) {
		inc := w.Worker()
		if inc == "" {
			return -0.5, float64(len(tl.lanes)) - 0.5, true
		}
		i := slices.Index(tl.lanes, inc)
		if i < 0 {
			return 0, 0, false
		}
		return tl.y(i) - 0.5, tl.y(i) + 0.5, true
	}})
	p.Add(tl)
	var ticks []plot.Tick
	for i, name := range tl.lanes {
		ticks = append(ticks, plot.Tick{Value: tl.y(i), Label: name})
	}
	p.Y.Tick.Marker = plot.ConstantTicks(ticks)
	p.Y.Min, p.Y.Max = -0.5, float64(len(tl.lanes))-0.5
	h := vg.Points(70 + 26*float64(max(len(tl.lanes), 1)))
	return svgOf(p, vg.Points(900), h)
}

// thickCross is the crash mark: a cross drawn thick enough to see over a bar.
type thickCross struct{}

func (thickCross) DrawGlyph(c *draw.Canvas, sty draw.GlyphStyle, pt vg.Point) {
	ls := draw.LineStyle{Color: sty.Color, Width: vg.Points(2)}
	r := sty.Radius
	c.StrokeLine2(ls, pt.X-r, pt.Y-r, pt.X+r, pt.Y+r)
	c.StrokeLine2(ls, pt.X-r, pt.Y+r, pt.X+r, pt.Y-r)
}
