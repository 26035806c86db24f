package simrun

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/workproof/workproof/reports"
	"github.com/workproof/workproof/scenarios/soak"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/pgenv"
)

type soakFlags struct {
	c          *cli
	duration   time.Duration
	workers    int
	rate       float64
	instances  int
	faults     string
	seed       uint64
	seedSet    bool
	out        string
	system     string
	dsn        string
	checkEvery time.Duration
	keepGoing  bool
	whole      bool
	verbose    bool
	processes  bool
	heap       bool
}

func (c *cli) soakFlagSet(f *soakFlags, stderr io.Writer) *flag.FlagSet {
	f.c = c
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&f.duration, "duration", 2*time.Minute, "how long traffic and faults run; checkpoint pauses are not counted")
	fs.IntVar(&f.workers, "workers", 3, "worker slots running the system's Work")
	fs.Float64Var(&f.rate, "rate", 20, "user requests per second (creates, resizes, deletes, gets); busy answers are normal")
	fs.IntVar(&f.instances, "instances", 8, "size of the set of instance ids the traffic works on")
	fs.StringVar(&f.faults, "faults", "mild", "fault profile: "+strings.Join(soak.ProfileNames(), ", ")+" (see below)")
	fs.Uint64Var(&f.seed, "seed", 0, "root seed of every random draw (default: time-based, printed)")
	fs.StringVar(&f.out, "out", "out", outFlagDoc)
	fs.StringVar(&f.system, "system", c.systems[0].Name, "system under test (see below)")
	fs.StringVar(&f.dsn, "dsn", "", "Postgres server to use (default: $WORKPROOF_DATABASE_URL or the PG* variables, else a private ephemeral cluster started and removed by simrun); simrun only creates and drops its own databases on it")
	fs.DurationVar(&f.checkEvery, "check-every", 30*time.Second, "traffic time between quiescent checkpoints (pause, heal, converge, check every invariant)")
	fs.BoolVar(&f.keepGoing, "keep-going", false, "go on after a checkpoint found a violation (default: stop there)")
	fs.BoolVar(&f.whole, "whole-history", false, "check the whole run at every checkpoint (default: each valid checkpoint forgets what it proved, so memory and check time stay flat)")
	fs.BoolVar(&f.processes, "process-workers", false, "run every worker as a process of its own (this binary's worker command) that kills SIGKILL for real: what a pod kill does to open sessions, LISTEN and requests in flight; crashes at a point become kills")
	fs.BoolVar(&f.heap, "heap-profiles", false, "write the harness's heap profile to the report directory after the first checkpoint ("+heapFirst+") and after every later one ("+heapLast+"); go tool pprof -base "+heapFirst+" "+heapLast+" shows what grew")
	fs.BoolVar(&f.verbose, "v", false, "log the harness, the workers and the fakes to stderr (debug level)")
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprint(w, `Usage: simrun soak [flags]

Runs a system under steady user traffic and a fault profile. Every
-check-every of traffic time, and at the end, traffic and faults pause and a
quiescent checkpoint runs: every fault healed, fixes deployed, crashed workers
restarted, the queue drained (bounded), then every invariant checked on the
history so far. A violation ends the run at that checkpoint. A valid
checkpoint forgets what it proved but for what later checks judge against the
state (the last lifetime of every instance), so memory and the time to check
stay flat on runs of hours; -whole-history checks the whole run every time.

The report goes to a new directory under -out: summary.md (verdict, seed,
replay command, settings, counts, throughput, faults, crash points, paths
reached, every violation), report.json (the same model, with the time
series), report.html (plots: throughput, latency, the control error signal,
a timeline) and, unless the run was valid, evidence.json (the history,
ledgers and state the deciding check read) with one evidence slice per
violation.

Flags:
`)
		fs.PrintDefaults()
		fmt.Fprint(w, "\nFault profiles (-faults):\n")
		for _, p := range soak.Profiles() {
			fmt.Fprintf(w, "  %-6s %s\n", p.Name, wrap(p.Doc, 9, 80))
		}
		fmt.Fprint(w, "\nSystems (-system):\n")
		for _, s := range c.systems {
			fmt.Fprintf(w, "  %-21s %s\n", s.Name, wrap(s.Doc, 24, 80))
		}
		fmt.Fprint(w, `
Exit codes:
  0  every invariant held at every checkpoint, the final one included
  1  an invariant was violated: the counterexample is in the report
  2  usage or infrastructure error (bad flags, no Postgres), or the verdict
     is unknown (interrupted before the final checkpoint)

Examples:
  simrun soak                                   2 minutes of kvx under mild faults
  simrun soak -duration 10m -faults chaos -rate 50
  simrun soak -system FreshTokenPerAttempt -faults chaos -duration 1m
  simrun soak -seed 42 -duration 30s -check-every 10s -out /tmp/soak42
  go run ./cmd/simrun soak -seed 42 ...         rerun with a printed seed (same draws;
                                                goroutines and Postgres still vary)
`)
	}
	return fs
}

func (f *soakFlags) validate() error {
	switch {
	case f.duration <= 0:
		return usagef("-duration %v: must be positive", f.duration)
	case f.workers < 1:
		return usagef("-workers %d: must be at least 1", f.workers)
	case !(f.rate > 0):
		return usagef("-rate %v: must be positive", f.rate)
	case f.instances < 1:
		return usagef("-instances %d: must be at least 1", f.instances)
	case f.checkEvery <= 0:
		return usagef("-check-every %v: must be positive", f.checkEvery)
	}
	if _, ok := soak.ProfileNamed(f.faults); !ok {
		return usagef("unknown -faults %q (want one of %s)", f.faults, strings.Join(soak.ProfileNames(), ", "))
	}
	if _, err := f.c.systemNamed(f.system); err != nil {
		return usageError{err.Error()}
	}
	return nil
}

// Heap profiles of -heap-profiles, in the report directory.
const (
	heapFirst = "heap-first.pprof"
	heapLast  = "heap-last.pprof"
)

// profiler is soak.Options.OnCheckpoint for -heap-profiles: the live heap
// (after a collection, so that it is current) at the first checkpoint, and
// at the latest one. Nil without the flag.
func (f *soakFlags) profiler(dir string, log *slog.Logger) func(reports.Checkpoint) {
	if !f.heap {
		return nil
	}
	name := heapFirst
	return func(reports.Checkpoint) {
		runtime.GC()
		if err := writeHeapProfile(filepath.Join(dir, name)); err != nil {
			log.Warn("soak: heap profile", "err", err)
		}
		name = heapLast
	}
}

func writeHeapProfile(path string) error {
	fh, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.WriteHeapProfile(fh); err != nil {
		fh.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return fh.Close()
}

// replay is the paste-ready command for the same seed and settings; it
// names every flag that changes the run, so it survives changed defaults.
func (f *soakFlags) replay() string {
	args := []string{
		f.c.command + " soak",
		"-seed", strconv.FormatUint(f.seed, 10),
		"-duration", f.duration.String(),
		"-workers", strconv.Itoa(f.workers),
		"-rate", strconv.FormatFloat(f.rate, 'g', -1, 64),
		"-instances", strconv.Itoa(f.instances),
		"-faults", f.faults,
		"-system", f.system,
		"-check-every", f.checkEvery.String(),
	}
	if f.keepGoing {
		args = append(args, "-keep-going")
	}
	if f.whole {
		args = append(args, "-whole-history")
	}
	if f.processes {
		args = append(args, "-process-workers")
	}
	return strings.Join(args, " ")
}

func (c *cli) soakCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f soakFlags
	fs := c.soakFlagSet(&f, stderr)
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	fs.Visit(func(fl *flag.Flag) { f.seedSet = f.seedSet || fl.Name == "seed" })
	if err := f.validate(); err != nil {
		fmt.Fprintf(stderr, "simrun soak: %v\nRun \"simrun soak -h\" for help.\n", err)
		return exitUsage
	}
	if !f.seedSet {
		f.seed = uint64(time.Now().UnixNano() % 1_000_000_000)
	}
	dir, err := runDir(f.out, "soak", f.system)
	if err != nil {
		fmt.Fprintf(stderr, "simrun soak: %v\n", err)
		return exitUsage
	}
	sys, _ := c.systemNamed(f.system)

	tty := isTerminal(os.Stdout) && stdout == io.Writer(os.Stdout)
	logOut := stderr
	if tty {
		logOut = clearLine{stderr} // a log line must not land in the middle of the progress line
	}
	log := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelInfo}))
	envLog := slog.New(slog.DiscardHandler)
	if f.verbose {
		envLog = slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}

	fmt.Fprintf(stdout, "simrun soak: %s, %s faults, %v at %v requests/s, %d workers, seed %d\nreplay: %s\n",
		f.system, f.faults, f.duration, f.rate, f.workers, f.seed, f.replay())

	srv, err := pgenv.Start(ctx, pgenv.Options{DSN: f.dsn, Logger: log})
	if err != nil {
		fmt.Fprintf(stderr, "simrun soak: no Postgres: %v\n", err)
		reports.DiscardRunDir(dir)
		return exitUsage
	}
	defer func() {
		if err := srv.Close(); err != nil {
			fmt.Fprintf(stderr, "simrun soak: closing Postgres: %v\n", err)
		}
	}()
	fmt.Fprintf(stdout, "postgres: %s %s at %s%s\n", srv.Kind(), srv.Version(), srv.HostPort(), settingsNote(srv.Settings()))

	var process []string
	if f.processes {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintf(stderr, "simrun soak: -process-workers: cannot find this binary to run its workers: %v\n", err)
			reports.DiscardRunDir(dir)
			return exitUsage
		}
		process = []string{exe, "worker", "-system", f.system}
	}
	prog := &progress{w: stdout, tty: tty, total: f.duration, log: log}
	rep, err := soak.Run(ctx, soak.Options{
		Process:      process,
		System:       sys.New(),
		SystemName:   sys.Name,
		Server:       srv,
		Seed:         f.seed,
		Duration:     f.duration,
		Workers:      f.workers,
		Rate:         f.rate,
		Instances:    f.instances,
		Faults:       f.faults,
		CheckEvery:   f.checkEvery,
		KeepGoing:    f.keepGoing,
		WholeHistory: f.whole,
		Progress:     prog.show,
		OnCheckpoint: f.profiler(dir, log),
		Logger:       log,
		EnvLogger:    envLog,
	})
	prog.done()
	if errors.Is(err, soak.ErrOptions) {
		fmt.Fprintf(stderr, "simrun soak: %v\n", err)
		return exitUsage
	}
	rep.Replay = f.replay()
	rep.Derive() // the plots' series, before the evidence may go
	if rep.Verdict == check.Valid {
		// Nothing to explain, and the whole history is megabytes per minute
		// of traffic: evidence.json is written only for a run that failed
		// or could not decide.
		rep.Evidence = nil
	}
	files, werr := writeReport(dir, &rep, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "simrun soak: %v\n", err)
	}
	summarize(stdout, &rep, files)
	if werr != nil {
		fmt.Fprintf(stderr, "simrun soak: writing the report: %v\n", werr)
		return exitUsage
	}
	if err != nil {
		return exitUsage
	}
	return rep.ExitCode()
}

func settingsNote(s map[string]string) string {
	if len(s) == 0 {
		return " (the server's own settings)"
	}
	var parts []string
	for _, k := range []string{"fsync", "synchronous_commit", "full_page_writes", "wal_level"} {
		if v, ok := s[k]; ok {
			parts = append(parts, k+"="+v)
		}
	}
	return " (" + strings.Join(parts, " ") + ", …: fast, unsafe for real data)"
}

// summarize prints the verdict, every violation line, where the report is
// and the replay command.
func summarize(w io.Writer, r *reports.Report, files reports.Files) {
	fmt.Fprintf(w, "\nverdict: %s (exit %d), ended %s after %s of traffic (%s wall clock)\n",
		r.Verdict, r.ExitCode(), r.Ended, r.TrafficTime, r.Elapsed)
	if r.Reason != "" {
		fmt.Fprintf(w, "  %s\n", r.Reason)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "  harness error: %s\n", r.Error)
	}
	fmt.Fprintf(w, "requests: %d sent, %d changes accepted, %d busy, %d unknown; work items done: %d\n",
		r.Requests.Sent, r.Requests.Accepted, r.Requests.Busy, r.Requests.Unknown, r.Work.Done)
	fmt.Fprintf(w, "throughput: %.2f changes/s, %.2f work items/s, %.2f requests/s (per second of traffic)\n",
		r.Throughput.ChangesPerS, r.Throughput.WorkPerS, r.Throughput.RequestsPerS)
	nf := 0
	for _, c := range r.Faults {
		nf += c.Count
	}
	nc := 0
	for _, c := range r.CrashPoints {
		nc += c.Count
	}
	fmt.Fprintf(w, "faults: %d nemesis actions, %d crashes at crash points; %d/%d paths reached; %d checkpoints\n",
		nf, nc, len(r.Reached), len(check.Paths()), len(r.Checkpoints))
	for _, v := range r.Violations {
		fmt.Fprintf(w, "VIOLATION (checkpoint %d): %s\n", v.Checkpoint, v.Line)
	}
	if files.Markdown != "" {
		fmt.Fprintf(w, "report: %s (and %s, %s", files.Markdown, filepath.Base(files.JSON), filepath.Base(files.HTML))
		if files.Evidence != "" {
			fmt.Fprintf(w, ", %s", filepath.Base(files.Evidence))
		}
		fmt.Fprint(w, ")\n")
	}
	fmt.Fprintf(w, "replay: %s\n", r.Replay)
}

// progress shows the run's samples: one \r-updated line on a terminal,
// else a log line every 10 s.
type progress struct {
	w     io.Writer
	tty   bool
	total time.Duration
	log   *slog.Logger

	mu    sync.Mutex
	last  time.Time
	shown bool
}

func (p *progress) show(s reports.Sample) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		phase := ""
		if s.Phase == reports.PhaseCheckpoint {
			phase = "  [checkpoint]"
		}
		fmt.Fprintf(p.w, "\r\x1b[K%s/%s  changes %d  work done %d  queue %d  active faults %d  violations %d  goroutines %d  heap %s  rss %s  fds %d%s",
			s.Traffic.D().Round(time.Second), p.total, s.Changes, s.WorkDone, s.QueueDepth, s.ActiveFaults, s.Violations,
			s.Goroutines, mib(s.HeapBytes), mib(s.RSSBytes), s.OpenFDs, phase)
		p.shown = true
		return
	}
	if now := time.Now(); now.Sub(p.last) >= 10*time.Second {
		p.last = now
		p.log.Info("soak: progress", "traffic", s.Traffic.D().Round(time.Second), "total", p.total, "phase", s.Phase,
			"changes", s.Changes, "work_done", s.WorkDone, "queue", s.QueueDepth, "active_faults", s.ActiveFaults,
			"violations", s.Violations, "goroutines", s.Goroutines, "heap", mib(s.HeapBytes), "rss", mib(s.RSSBytes),
			"fds", s.OpenFDs)
	}
}

// mib formats a byte count in MiB; "?" for one that could not be read.
func mib(n int64) string {
	if n < 0 {
		return "?"
	}
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
}

func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.shown {
		fmt.Fprintln(p.w)
	}
}

// clearLine clears the terminal line before each write, so that log lines
// on stderr do not mix with the progress line on stdout.
type clearLine struct{ w io.Writer }

func (c clearLine) Write(b []byte) (int, error) {
	if _, err := io.WriteString(c.w, "\r\x1b[K"); err != nil {
		return 0, err
	}
	return c.w.Write(b)
}

// isTerminal reports whether f is a terminal: a character device that is
// not /dev/null. (golang.org/x/term is not among the module's requirements;
// this is enough to choose between a \r progress line and log lines.)
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	null, err := os.Stat(os.DevNull)
	return err != nil || !os.SameFile(fi, null)
}
