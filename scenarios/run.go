package scenarios

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/sim"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/pgenv"
)

// Budget bounds a Verify or Run. Every zero field has a default that fits a
// CI job (a few tens of seconds per family on 2 cores).
type Budget struct {
	// Checks is how many programs each property family draws; zero: 8.
	Checks int
	// Steps is the most actions a drawn program has; zero: 20.
	Steps int
	// Instances is how many instance ids a drawn program uses (i1 to iN);
	// zero: DefaultInstances.
	Instances int
	// Time bounds each family: no new program starts after it; zero: 2m.
	Time time.Duration
	// ShrinkTime bounds the search for a shorter counterexample; zero: 60s.
	ShrinkTime time.Duration
	// Settle bounds each run's liveness phase, overriding the system's
	// promise (contract.Liveness.Settle); zero: the system's promise.
	Settle time.Duration
	// ExploreTime bounds the explore family: no experiment starts after
	// it; zero: 10m.
	ExploreTime time.Duration
	// ExploreAll runs every experiment of the explore family even after one
	// failed (the whole coverage, every failing experiment listed); zero:
	// the family stops starting experiments at its first failure, as the
	// other families do.
	ExploreAll bool
}

func (b Budget) withDefaults() Budget {
	if b.Checks <= 0 {
		b.Checks = 8
	}
	if b.Steps <= 0 {
		b.Steps = 20
	}
	if b.Instances <= 0 {
		b.Instances = DefaultInstances
	}
	if b.Time <= 0 {
		b.Time = 2 * time.Minute
	}
	if b.ShrinkTime <= 0 {
		b.ShrinkTime = time.Minute
	}
	if b.ExploreTime <= 0 {
		b.ExploreTime = 10 * time.Minute
	}
	return b
}

// Options configures Run and Verify.
type Options struct {
	// System is the system under test; required.
	System contract.System
	// Name names the system in reports and replay commands; zero: "kvx".
	Name string
	// Scenarios are the system's own named scenarios, run in the named
	// family after NamedScenarios (their names must differ from those);
	// zero: none.
	Scenarios []Named
	// Command starts every printed replay command: how the user runs the
	// simrun binary that knows Name; zero: "go run ./cmd/simrun".
	Command string
	// Server holds the runs' databases; required for Run. Verify starts a
	// private one when zero (see pgenv.Start) and stops it at the end.
	Server *pgenv.Server
	// Workers per run; zero: 2.
	Workers int
	// Seed is the root seed; program k of a family is drawn from a seed
	// derived from it. Zero is a seed like any other.
	Seed uint64
	// Families to run; zero: Families().
	Families []string
	// Only selects the named scenarios whose name it matches; zero: all.
	Only   *regexp.Regexp
	Budget Budget
	// Liveness overrides, field by field, the promises the system declares
	// (contract.LivenessOf; Budget.Settle overrides Settle): every named
	// scenario, experiment and liveness phase holds the system to them.
	// Zero: what the system declares, else the contract's defaults.
	Liveness contract.Liveness
	// Logger for the runs' own log; zero: discard.
	Logger *slog.Logger
	// Progress, when set, is called after each example. Examples and, in
	// Run, families run concurrently: it is called from several
	// goroutines, possibly at once.
	Progress func(Example)
	// Parallel bounds how many examples and experiments run at once, over
	// every family of a Run; zero: as many as the cores keep up with, from
	// two to sixteen per CPU (they mostly wait; see admission).
	Parallel int
	// adm admits a Run's examples, over all its families (see acquire);
	// nil outside a Run.
	adm *admission
	// Shard runs only one deterministic slice of the explore family's
	// experiments (a CI job matrix); zero: all of them.
	Shard Shard
}

// Example is the outcome of one run: a named scenario or a drawn program.
type Example struct {
	Family  string   `json:"family"`
	Name    string   `json:"name"` // the scenario's name, "seed N", or the experiment's id
	Seed    uint64   `json:"seed"` // the program's or experiment's own seed
	Program *Program `json:"program,omitempty"`
	// Experiment is an explore example's experiment.
	Experiment *Experiment `json:"experiment,omitempty"`
	// Unreached says an experiment's spot never came in its run: it tested
	// nothing, whatever its verdict.
	Unreached bool          `json:"unreached,omitempty"`
	Verdict   check.Verdict `json:"verdict"`
	Settled   bool          `json:"settled"`
	Duration  time.Duration `json:"duration"`
	Result    sim.Result    `json:"-"`
	found     time.Duration // since its family began, when the example ended
}

// Failure is the first invalid example of a family, shrunk.
type Failure struct {
	Example
	// Original is the program as drawn, before shrinking.
	Original *Program `json:"original,omitempty"`
	// Violations are the shrunk run's violations (each String() is a line).
	Violations []check.Violation `json:"violations"`
	// Detect is how long the family ran until the violation was found.
	Detect time.Duration `json:"detect"`
	// Replay is a paste-ready command that runs the failing example again.
	Replay string `json:"replay"`
}

// FamilyResult is one family's outcome.
type FamilyResult struct {
	Family   string        `json:"family"`
	Examples int           `json:"examples"`
	Verdict  check.Verdict `json:"verdict"`
	Failure  *Failure      `json:"failure,omitempty"`
	Unknown  []string      `json:"unknown,omitempty"` // examples that could not be decided, and why
	Reached  []string      `json:"reached"`           // fault paths some example exercised
	Duration time.Duration `json:"duration"`
	// Coverage says what the explore family explored; nil for the others.
	Coverage *Coverage `json:"coverage,omitempty"`
}

// Result is a whole Run.
type Result struct {
	System   string         `json:"system"`
	Seed     uint64         `json:"seed"`
	Verdict  check.Verdict  `json:"verdict"`
	Families []FamilyResult `json:"families"`
	Duration time.Duration  `json:"duration"`
}

// Run runs every family on opts.System and returns what it found, instead
// of failing a test: the CLI and the harness's own tests use it, and Verify
// runs the same families through the same runner. Within a family it stops
// at the first invalid example, which it shrinks.
func Run(ctx context.Context, opts Options) (Result, error) {
	if opts.System == nil || opts.Server == nil {
		return Result{}, errors.New("scenarios: Run needs Options.System and Options.Server")
	}
	opts = opts.withDefaults()
	if err := opts.checkFamilies(); err != nil {
		return Result{}, err
	}
	start := time.Now()
	res := Result{System: opts.Name, Seed: opts.Seed, Verdict: check.Valid}
	// The families run at once, sharing one bound of environments: a gate
	// takes about as long as its slowest family, not the sum of them (the
	// named family mostly waits out its faults' bounds).
	opts.adm = opts.admission()
	frs := make([]FamilyResult, len(opts.Families))
	errs := make([]error, len(opts.Families))
	var wg sync.WaitGroup
	for i, f := range opts.Families {
		wg.Go(func() {
			frs[i], errs[i] = runFamily(ctx, opts, f)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	for _, fr := range frs {
		res.Families = append(res.Families, fr)
		res.Verdict = worse(res.Verdict, fr.Verdict)
	}
	res.Duration = time.Since(start)
	return res, nil
}

// acquire waits until one more example of a Run may start, at prio
// (prioLong, prioMaybeLong, prioShort); it returns the release, or false
// when ctx ended first. Outside a Run there is no shared bound.
func (o Options) acquire(ctx context.Context, prio int) (func(), bool) {
	if o.adm == nil {
		return func() {}, true
	}
	return o.adm.acquire(ctx, prio)
}

// admission is a Run's bound: Parallel at once, else by load from two to
// sixteen per CPU.
func (o Options) admission() *admission {
	if o.Parallel > 0 {
		return fixedAdmission(o.Parallel)
	}
	n := runtime.GOMAXPROCS(0)
	return loadAdmission(max(2, 2*n), o.parallel())
}

func (o Options) withDefaults() Options {
	o.Budget = o.Budget.withDefaults()
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.Command == "" {
		o.Command = "go run ./cmd/simrun"
	}
	if o.Name == "" {
		o.Name = "kvx"
	}
	if len(o.Families) == 0 {
		o.Families = Families()
	}
	return o
}

func (o Options) checkFamilies() error {
	for _, f := range o.Families {
		if f != FamilyNamed && f != FamilyExplore && !isPropertyFamily(f) {
			return fmt.Errorf("scenarios: unknown family %q (want one of %v)", f, Families())
		}
	}
	return nil
}

func worse(a, b check.Verdict) check.Verdict {
	rank := map[check.Verdict]int{check.Valid: 0, check.Unknown: 1, check.Invalid: 2}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// runFamily is the one family runner: Run calls it, and Verify through Run's
// parts. Every example it runs is reported to opts.Progress.
func runFamily(ctx context.Context, opts Options, family string) (FamilyResult, error) {
	start := time.Now()
	fr := FamilyResult{Family: family, Verdict: check.Valid}
	reached := map[string]bool{}
	var mu sync.Mutex // examples end on several goroutines
	record := func(ex Example) {
		mu.Lock()
		defer mu.Unlock()
		fr.Examples++
		for _, r := range ex.Result.Reached {
			reached[r] = true
		}
		if ex.Verdict == check.Unknown {
			fr.Unknown = append(fr.Unknown, ex.Name+": "+ex.Result.Reason)
			fr.Verdict = worse(fr.Verdict, check.Unknown)
		}
		if opts.Progress != nil {
			opts.Progress(ex)
		}
	}
	finish := func() FamilyResult {
		fr.Reached = slices.Sorted(maps.Keys(reached))
		fr.Duration = time.Since(start)
		return fr
	}
	if family == FamilyNamed {
		var scs []Named
		for _, sc := range append(NamedScenarios(), opts.Scenarios...) {
			if opts.Only == nil || opts.Only.MatchString(sc.Name) {
				scs = append(scs, sc)
			}
		}
		prio := func(i int) int {
			if scs[i].Long {
				return prioLong
			}
			return prioMaybeLong
		}
		ex, i, err := firstInvalid(ctx, opts, prio, len(scs), func(i int) (Example, error) { return runNamedExample(ctx, opts, scs[i]) }, record)
		if err != nil {
			return fr, err
		}
		if i >= 0 {
			fr.Verdict = check.Invalid
			fr.Failure = &Failure{Example: ex, Violations: ex.Result.Violations, Detect: ex.found,
				Replay: fmt.Sprintf("%s replay -system %s -scenario %s -seed %d -expect %s", opts.Command, opts.Name, scs[i].Name, opts.Seed, ex.Result.Violations[0].Invariant)}
		}
		return finish(), nil
	}
	if family == FamilyExplore {
		return runExplore(ctx, opts)
	}
	if !isPropertyFamily(family) {
		return fr, fmt.Errorf("scenarios: unknown family %q (want one of %v)", family, Families())
	}
	gen := ProgramGen(family, opts.Workers, opts.Budget.Steps, opts.Budget.Instances)
	program := func(k int) Program { return gen.Example(int(ExampleSeed(opts.Seed, family, k))) }
	prio := func(k int) int {
		if program(k).waitsOut() {
			return prioLong
		}
		return prioShort
	}
	ex, k, err := firstInvalid(ctx, opts, prio, opts.Budget.Checks, func(k int) (Example, error) {
		if time.Since(start) > opts.Budget.Time {
			return Example{}, errOverBudget
		}
		seed := ExampleSeed(opts.Seed, family, k)
		ex, err := RunProgram(ctx, opts, program(k))
		ex.Seed, ex.Name = seed, fmt.Sprintf("seed %d", seed)
		return ex, err
	}, record)
	if err != nil || k < 0 {
		return finish(), err
	}
	shrunk, err := Shrink(ctx, opts, ex, opts.Budget.ShrinkTime)
	if err != nil {
		return fr, err
	}
	shrunk.Seed, shrunk.Name = ex.Seed, ex.Name
	fr.Verdict = check.Invalid
	fr.Failure = &Failure{Example: shrunk, Original: ex.Program, Violations: shrunk.Result.Violations, Detect: ex.found,
		Replay: fmt.Sprintf("%s replay -system %s -family %s -seed %d -workers %d -steps %d%s -expect %s", opts.Command, opts.Name, family, ex.Seed, opts.Workers, opts.Budget.Steps,
			instancesFlag(opts.Budget.Instances), shrunk.Result.Violations[0].Invariant)}
	return finish(), nil
}

// instancesFlag is the replay command's -instances, left out at the
// default.
func instancesFlag(n int) string {
	if n == DefaultInstances {
		return ""
	}
	return fmt.Sprintf(" -instances %d", n)
}

// errOverBudget skips an example that would start after Budget.Time.
var errOverBudget = errors.New("scenarios: over the family's time budget")

// firstInvalid runs examples 0..n-1 of a family, as many at a time as the
// Run admits, example i at priority prio(i) (they mostly wait), reporting
// each to record as it ends, and returns the
// invalid one of the lowest index (i < 0: none). Once example i failed, no
// example after i starts, and the ones before it still running are awaited:
// the failure reported is the one the sequential order would have found,
// however the runs overlapped.
func firstInvalid(ctx context.Context, opts Options, prio func(int) int, n int, run func(int) (Example, error), record func(Example)) (Example, int, error) {
	var (
		mu    sync.Mutex
		first = -1
		out   Example
		errs  []error
		next  int
		wg    sync.WaitGroup
		start = time.Now()
	)
	take := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if next >= n || (first >= 0 && next > first) || len(errs) > 0 || ctx.Err() != nil {
			return 0, false
		}
		next++
		return next - 1, true
	}
	for range min(n, opts.parallel()) {
		wg.Go(func() {
			for {
				i, ok := take()
				if !ok {
					return
				}
				release, ok := opts.acquire(ctx, prio(i))
				if !ok {
					return
				}
				ex, err := run(i)
				release()
				if errors.Is(err, errOverBudget) {
					return
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				ex.found = time.Since(start)
				if ex.Verdict == check.Invalid && (first < 0 || i < first) {
					first, out = i, ex
				}
				mu.Unlock()
				record(ex)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return Example{}, -1, err
	}
	return out, first, nil
}

// ExampleSeed derives the seed of program k of family from the root seed.
func ExampleSeed(root uint64, family string, k int) uint64 {
	// splitmix64 of (root, family, k): programs of different families and
	// indexes are unrelated, and each is reproducible alone.
	x := root ^ sim.Stream(family) ^ (uint64(k) * 0x9e3779b97f4a7c15)
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x & (1<<62 - 1) // rapid's Example takes an int
}

func simOptions(opts Options, workers int) sim.Options {
	return sim.Options{System: opts.System, Server: opts.Server, Workers: workers, Seed: opts.Seed, Logger: opts.Logger,
		Liveness: opts.Liveness, Settle: opts.Budget.Settle}
}

// Settle is the bound of each run's liveness phase: Budget.Settle, else
// the system's promise.
func (o Options) Settle() time.Duration { return o.liveness().Settle }

// liveness is the promises a run holds the system to: its own, with the
// options' overrides.
func (o Options) liveness() contract.Liveness {
	l := o.Liveness
	if o.Budget.Settle > 0 {
		l.Settle = o.Budget.Settle
	}
	return sim.LivenessOf(o.System, l)
}

// RunScenario runs one named scenario as an Example.
func RunScenario(ctx context.Context, opts Options, sc Named) (Example, error) {
	return runNamedExample(ctx, opts.withDefaults(), sc)
}

// runNamedExample runs sc. A scenario whose fault path never came (it does
// not fit this system's shape) is inconclusive, not a harness failure.
func runNamedExample(ctx context.Context, opts Options, sc Named) (Example, error) {
	start := time.Now()
	res, err := RunNamed(ctx, sc, simOptions(opts, opts.Workers))
	if errors.Is(err, ErrNotReached) {
		res = sim.Result{}
		res.Verdict, res.Reason = check.Unknown, err.Error()
	} else if err != nil {
		return Example{}, err
	}
	return Example{Family: FamilyNamed, Name: sc.Name, Verdict: res.Verdict, Settled: res.Settled, Duration: time.Since(start), Result: res}, nil
}

// RunProgram runs one program on a fresh environment: execute, then
// Env.Finish. A program with a fault the environment cannot run (a
// Postgres restart on a shared server) is inconclusive.
func RunProgram(ctx context.Context, opts Options, p Program) (Example, error) {
	opts = opts.withDefaults()
	start := time.Now()
	if err := p.Check(); err != nil {
		return Example{}, err
	}
	so := simOptions(opts, p.Workers)
	so.PrivateServer = p.needsPrivateServer()
	ex := Example{Family: p.Family, Program: &p}
	e, err := sim.New(ctx, so)
	if errors.Is(err, sim.ErrUnavailable) {
		ex.Verdict, ex.Result.Verdict, ex.Result.Reason = check.Unknown, check.Unknown, err.Error()
		return ex, nil
	}
	if err != nil {
		return Example{}, err
	}
	defer e.Close()
	if err := Execute(ctx, e, p); err != nil {
		return Example{}, err
	}
	res, err := e.Finish(ctx)
	if err != nil {
		return Example{}, err
	}
	ex.Verdict, ex.Settled, ex.Duration, ex.Result = res.Verdict, res.Settled, time.Since(start), res
	return ex, nil
}

// Shrink looks for a shorter program that still fails with a violation of
// the same invariant, by deleting chunks of actions (largest first), until
// no deletion keeps it failing or limit passes. Real concurrency makes a
// run only mostly repeatable, so a deletion counts only when the shorter
// program fails.
func Shrink(ctx context.Context, opts Options, ex Example, limit time.Duration) (Example, error) {
	if ex.Program == nil || len(ex.Result.Violations) == 0 {
		return ex, nil
	}
	want := ex.Result.Violations[0].Invariant
	best := ex
	deadline := time.Now().Add(limit)
	for chunk := len(best.Program.Actions) / 2; chunk >= 1; chunk /= 2 {
		for i := 0; i+chunk <= len(best.Program.Actions); {
			if time.Now().After(deadline) || ctx.Err() != nil {
				return best, nil
			}
			p := *best.Program
			p.Actions = slices.Delete(slices.Clone(p.Actions), i, i+chunk)
			if len(p.Actions) == 0 {
				i += chunk
				continue
			}
			try, err := RunProgram(ctx, opts, p)
			if err != nil {
				return best, err
			}
			if try.Verdict == check.Invalid && check.HasInvariant(try.Result.Violations, want) {
				best = try
				continue // same i: the next chunk slid into place
			}
			i += chunk
		}
	}
	return best, nil
}
