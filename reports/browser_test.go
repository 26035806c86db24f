package reports_test

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/reports"
	"github.com/workproof/workproof/sim"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/history"
)

// orphanInput is a hand-made run of a mutant that regenerates its client
// token per attempt: worker w1.1 creates a VM and crashes before its
// commit; w2.1 redoes the item under a link fault and creates a second VM
// with another token. The checkers find the orphan in it.
func orphanInput() check.Input {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	at := func(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }
	params := func(s string) []byte { return []byte(s) }
	return check.Input{
		Healed: true,
		History: history.Snapshot{
			Taken: at(120),
			Ops: []history.Op{
				{Index: 0, Client: "user", Request: contract.Request{Op: contract.OpCreate, Instance: "i1", Size: "small"},
					Invoke: at(0), Complete: at(19), Outcome: history.OK, Response: contract.Response{Instance: "i1", Generation: 1, Size: "small", HasActiveWork: true}},
				{Index: 1, Client: "user", Request: contract.Request{Op: contract.OpGet, Instance: "i1"},
					Invoke: at(90), Complete: at(93), Outcome: history.OK, Response: contract.Response{Instance: "i1", Generation: 1, Size: "small"}},
			},
			Intervals: []history.Interval{
				{Seq: 0, Worker: "w1.1", Item: "1", Key: "i1", Start: at(20), End: at(27), Outcome: history.IntervalCrashed},
				{Seq: 1, Worker: "w2.1", Item: "1", Key: "i1", Start: at(34), End: at(62), Outcome: "done"},
			},
			Events: []history.Event{
				{Seq: 0, Time: at(27), Kind: history.EventCrash, Worker: "w1.1", Detail: "sql:commit"},
				{Seq: 1, Time: at(30), Kind: history.EventFaultOn, Target: "w2.1/postgres", Detail: "latency(20ms,down)"},
				{Seq: 2, Time: at(70), Kind: history.EventFaultOff, Target: "w2.1/postgres latency(20ms,down)", Detail: "heal"},
			},
		},
		Ledger: fakes.Snapshot{
			AtMostOnce: []string{"email"},
			VMs: []fakes.VM{
				{ID: "vm-1", Owner: "i1", Size: "small", ClientToken: "tok-a", State: "running", CreatedAt: at(23)},
				{ID: "vm-2", Owner: "i1", Size: "small", ClientToken: "tok-b", State: "running", CreatedAt: at(41)},
			},
			Deployments: []fakes.Deployment{{Name: "i1", Owner: "i1", Size: "small", Replicas: 1}},
			Charges:     []fakes.Charge{{ID: "ch_1", Owner: "i1", Customer: "i1", Amount: 500, Event: "provision:i1:g1", CreatedAt: at(52)}},
			Requests: []fakes.Record{
				{Seq: 1, Service: "cloud", Endpoint: "CreateVM", Caller: "w1.1", Key: "tok-a", Owner: "i1", Mutation: true, Effect: true, Status: 200,
					Params: params(`{"owner":"i1","size":"small","client_token":"tok-a"}`), Start: at(22), End: at(24)},
				{Seq: 2, Service: "cloud", Endpoint: "CreateVM", Caller: "w2.1", Key: "tok-b", Owner: "i1", Mutation: true, Effect: true, Status: 200,
					Params: params(`{"owner":"i1","size":"small","client_token":"tok-b"}`), Start: at(40), End: at(42)},
				{Seq: 3, Service: "kube", Endpoint: "Apply", Caller: "w2.1", Owner: "i1", Mutation: true, Effect: true, Status: 200, Start: at(44), End: at(46)},
				{Seq: 4, Service: "billing", Endpoint: "CreateCharge", Caller: "w2.1", Key: "i1/provision:i1:g1", Owner: "i1", Event: "provision:i1:g1",
					Mutation: true, Effect: true, Status: 200, Start: at(51), End: at(53)},
			},
		},
		State: contract.Snapshot{Instances: []contract.Instance{{ID: "i1", Customer: "i1", Generation: 1, DesiredSize: "small", State: "ready",
			VMID: "vm-2", ObservedSize: "small", ObservedGen: 1}}},
	}
}

// orphanGate is a gate report whose one family failed on orphanInput.
func orphanGate(t *testing.T) reports.Report {
	t.Helper()
	in := orphanInput()
	res := sim.Result{Result: check.Check(in), Input: in, Settled: true}
	if res.Verdict != check.Invalid || !check.HasInvariant(res.Violations, check.InvOrphan) {
		t.Fatalf("fixture: %s %v, want an orphan", res.Verdict, res.Violations)
	}
	ex := reports.NewExample(res)
	ex.Family, ex.Name, ex.Duration = "named", "crash-after-vm-before-commit", reports.Duration(120*time.Millisecond)
	ex.Replay = "go run ./cmd/simrun replay -system FreshTokenPerAttempt -scenario crash-after-vm-before-commit -seed 1 -expect orphan"
	row := ex
	row.Evidence, row.Series = nil, nil
	return reports.Report{
		Schema: reports.Schema, Kind: reports.KindGate, System: "FreshTokenPerAttempt", Seed: 1, Replay: ex.Replay,
		Started: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), Elapsed: ex.Duration, Ended: reports.EndCompleted, Verdict: check.Invalid,
		Families: []reports.Family{{Name: "named", Verdict: check.Invalid, Examples: 1, Duration: ex.Duration,
			ExampleMedian: ex.Duration, ExampleMax: ex.Duration, CheckMedian: reports.Duration(2 * time.Millisecond), Scenarios: []reports.Example{row}, Failure: &ex}},
	}
}

// chromium runs headless Chromium on url with the flags this machine
// needs (no sandbox as root, no background networking: loopback only) and
// extra, in a process group of its own that is killed when it is done, so
// no renderer outlives the test. It returns stdout and stderr.
func chromium(t *testing.T, url string, extra ...string) (string, string) {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (Debian: apt-get install -y chromium): report.html not checked in a browser")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir(), "--enable-logging=stderr", "--v=0"}, extra...)
	cmd := exec.CommandContext(ctx, bin, append(args, url)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // whatever is left of its group
	}
	if err != nil {
		t.Fatalf("chromium %s: %v\n%s", url, err, stderr.String())
	}
	return stdout.String(), stderr.String()
}

// consoleLines are the page's console messages Chromium logged.
func consoleLines(stderr string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, ":CONSOLE") {
			out = append(out, l)
		}
	}
	return out
}

var figureRE = regexp.MustCompile(`(?s)<figure class="plot" id="[^"]*" data-plot="([a-z-]+)">(.*?)</figure>`)

// figures maps each data-plot kind to the first figure of it in the DOM.
func figures(dom string) map[string]string {
	out := map[string]string{}
	for _, m := range figureRE.FindAllStringSubmatch(dom, -1) {
		if _, ok := out[m[1]]; !ok {
			out[m[1]] = m[2]
		}
	}
	return out
}

// The report renders in a real browser without console messages and
// fetches nothing; the timeline and the error-signal plot are drawn, with
// their series, as the DOM and screenshots show.
func TestHTMLInBrowser(t *testing.T) {
	if _, err := exec.LookPath("chromium"); err != nil {
		t.Skip("chromium is not installed (Debian: apt-get install -y chromium): report.html not checked in a browser")
	}
	// The console check can fail: a page that logs an error is seen.
	bad := filepath.Join(t.TempDir(), "bad.html")
	if err := os.WriteFile(bad, []byte(`<!DOCTYPE html><html><body><script>console.error("boom")</script></body></html>`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr := chromium(t, "file://"+bad, "--dump-dom"); len(consoleLines(stderr)) == 0 {
		t.Fatalf("a console.error was not seen in Chromium's log:\n%s", stderr)
	}

	dir := t.TempDir()
	r := orphanGate(t)
	files, err := reports.WriteDir(dir, &r)
	if err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(files.HTML)
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?i)(src|href)="(https?:)?//`).Find(page); m != nil {
		t.Errorf("report.html refers to the network: %s", m)
	}
	dom, stderr := chromium(t, "file://"+files.HTML, "--dump-dom")
	if lines := consoleLines(stderr); len(lines) > 0 {
		t.Errorf("console messages:\n%s", strings.Join(lines, "\n"))
	}
	figs := figures(dom)
	for kind, wants := range map[string][]string{
		// requests, intervals, provider calls, the highlighted ops and keys, the lanes
		"timeline": {"fill:#17BECF", "fill:#1F77B4", "fill:#2CA02C", "stroke:#D62728", ">api user</text>", ">w1.1</text>", ">w2.1</text>"},
		// the error signal and the work beside it, in the legend and drawn
		"error-signal": {"stroke:#D62728", "stroke:#FF7F0E", "stroke:#1F77B4", ">instances off their desired state</text>", ">work items in flight</text>"},
	} {
		f, ok := figs[kind]
		if !ok {
			t.Errorf("no %s figure in the DOM", kind)
			continue
		}
		if n := strings.Count(f, "<path"); n < 10 {
			t.Errorf("%s: %d paths, want a drawn plot", kind, n)
		}
		for _, w := range wants {
			if !strings.Contains(f, w) {
				t.Errorf("%s figure lacks %q", kind, w)
			}
		}
	}

	// Screenshots: the whole page is drawn, and each plot, alone on a page
	// as the browser parsed it, shows its series' colours.
	shot := filepath.Join(t.TempDir(), "page.png")
	chromium(t, "file://"+files.HTML, "--window-size=1280,1600", "--screenshot="+shot)
	if frac := inked(t, shot); frac < 0.05 {
		t.Errorf("page screenshot is %.1f%% non-white, want a drawn page", 100*frac)
	}
	for kind, want := range map[string][]struct {
		c   color.RGBA
		min int
	}{
		"timeline":     {{rgba(0x17becf), 2000}, {rgba(0x1f77b4), 500}, {rgba(0xd62728), 100}},
		"error-signal": {{rgba(0xd62728), 800}, {rgba(0xff7f0e), 300}},
	} {
		fig := filepath.Join(t.TempDir(), kind+".html")
		if err := os.WriteFile(fig, []byte("<!DOCTYPE html><html><body style=\"margin:0\">"+figs[kind]+"</body></html>"), 0o644); err != nil {
			t.Fatal(err)
		}
		png := filepath.Join(t.TempDir(), kind+".png")
		chromium(t, "file://"+fig, "--window-size=1220,480", "--screenshot="+png)
		for _, w := range want {
			if n := pixels(t, png, w.c); n < w.min {
				t.Errorf("%s screenshot: %d pixels of %v, want at least %d", kind, n, w.c, w.min)
			}
		}
	}
}

func rgba(v uint32) color.RGBA {
	return color.RGBA{R: uint8(v >> 16), G: uint8(v >> 8), B: uint8(v), A: 0xff}
}

func decode(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

// pixels counts the pixels within a small distance of c (antialiasing
// blends edges).
func pixels(t *testing.T, path string, c color.RGBA) int {
	img := decode(t, path)
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if near(r>>8, c.R) && near(g>>8, c.G) && near(bl>>8, c.B) {
				n++
			}
		}
	}
	return n
}

func near(a uint32, b uint8) bool { d := int(a) - int(b); return d > -12 && d < 12 }

// inked is the fraction of pixels that are not white.
func inked(t *testing.T, path string) float64 {
	img := decode(t, path)
	b := img.Bounds()
	n := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r < 0xf000 || g < 0xf000 || bl < 0xf000 {
				n++
			}
		}
	}
	return float64(n) / float64(b.Dx()*b.Dy())
}
