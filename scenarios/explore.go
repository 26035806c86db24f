package scenarios

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/sim"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/crash"
	"github.com/workproof/workproof/sim/nemesis"
)

// FamilyExplore is systematic exploration, Filibuster's way: each workload
// runs once fault-free while every point it passes is recorded (its
// trace); then one experiment per point × fault of the catalogue's menu
// for that point runs, each on a fresh database, and pairs where a first
// run showed a second fault could matter.
const FamilyExplore = "explore"

// Workload is a short request script the explorer traces, then faults at
// every point its trace reached. Its steps run one after another, each
// settled (no work left, the instance idle) before the next.
type Workload struct {
	Name string
	Doc  string
	// Instance is the instance the steps work on; a concurrent change
	// experiment changes it.
	Instance string
	Steps    []WorkStep
}

// WorkStep is one request of a workload, or two at once.
type WorkStep struct {
	Req contract.Request
	// With, when set, is sent together with Req from another client; both
	// meet right before their first write, so a check made by a read is
	// stale for both.
	With *contract.Request
}

func createReq(id, size string) contract.Request {
	return contract.Request{Op: contract.OpCreate, Instance: id, Size: size}
}
func resizeReq(id, size string) contract.Request {
	return contract.Request{Op: contract.OpResize, Instance: id, Size: size}
}
func deleteReq(id string) contract.Request {
	return contract.Request{Op: contract.OpDelete, Instance: id}
}

// Workloads returns the explorer's workloads, in a fixed order.
func Workloads() []Workload {
	return []Workload{
		{Name: "create", Doc: "create an instance (and its follow-up work: the welcome email)", Instance: "i1",
			Steps: []WorkStep{{Req: createReq("i1", "small")}}},
		{Name: "create-resize", Doc: "create, then resize", Instance: "i1",
			Steps: []WorkStep{{Req: createReq("i1", "small")}, {Req: resizeReq("i1", "large")}}},
		{Name: "create-delete", Doc: "create, then delete", Instance: "i1",
			Steps: []WorkStep{{Req: createReq("i1", "small")}, {Req: deleteReq("i1")}}},
		{Name: "concurrent-changes", Doc: "create, then a resize and a delete at the same moment (one must be refused)", Instance: "i1",
			Steps: []WorkStep{{Req: createReq("i1", "small")}, {Req: resizeReq("i1", "medium"), With: ptr(deleteReq("i1"))}}},
		{Name: "recreate", Doc: "create, delete, and create the same id again", Instance: "i1",
			Steps: []WorkStep{{Req: createReq("i1", "small")}, {Req: deleteReq("i1")}, {Req: createReq("i1", "medium")}}},
	}
}

func ptr[T any](v T) *T { return &v }

// WorkloadNamed returns the workload called name.
func WorkloadNamed(name string) (Workload, bool) {
	i := slices.IndexFunc(Workloads(), func(w Workload) bool { return w.Name == name })
	if i < 0 {
		return Workload{}, false
	}
	return Workloads()[i], true
}

// clients names the clients of step k: its request's, and With's.
func clients(k int) (string, string) {
	c := "u" + strconv.Itoa(k+1)
	return c, c + "b"
}

// Spot is where an experiment aims: a point of a worker inside a work item
// (by the item's id and which entry of it, as the system names items to
// its Observer), or a point of an API client's request, each with the
// occurrence of that point there. Whichever worker gets there is hit, so
// an experiment does not depend on which worker claims what.
type Spot struct {
	Client string `json:"client,omitempty"` // an API client ("u1"); "" for a worker's spot
	Item   string `json:"item,omitempty"`
	Entry  int    `json:"entry,omitempty"`
	Point  string `json:"point"`
	Nth    int    `json:"nth"`
	// Key is the instance the item works on (worker spots; for reports).
	Key string `json:"key,omitempty"`
}

func (s Spot) String() string {
	where := "api=" + s.Client
	if s.Client == "" {
		where = fmt.Sprintf("item=%s.%d", s.Item, s.Entry)
	}
	return fmt.Sprintf("%s@%s#%d", where, s.Point, s.Nth)
}

func (s Spot) rule() crash.Rule {
	return crash.Rule{At: s.Point, Nth: s.Nth, Item: s.Item, Entry: s.Entry}
}

func parseSpot(str string) (Spot, error) {
	where, rest, ok := strings.Cut(str, "@")
	i := strings.LastIndexByte(rest, '#')
	if !ok || i < 0 {
		return Spot{}, fmt.Errorf("spot %q: want item=<id>.<entry>@<point>#<n> or api=<client>@<point>#<n>", str)
	}
	var s Spot
	var err error
	s.Point = rest[:i]
	if s.Nth, err = strconv.Atoi(rest[i+1:]); err != nil || s.Nth < 1 {
		return Spot{}, fmt.Errorf("spot %q: bad occurrence %q", str, rest[i+1:])
	}
	switch k, v, _ := strings.Cut(where, "="); k {
	case "api":
		s.Client = v
	case "item":
		item, entry, ok := strings.Cut(v, ".")
		if s.Entry, err = strconv.Atoi(entry); !ok || err != nil || s.Entry < 1 {
			return Spot{}, fmt.Errorf("spot %q: bad item entry %q", str, v)
		}
		s.Item = item
	default:
		return Spot{}, fmt.Errorf("spot %q: want item=… or api=…", str)
	}
	if s.Point == "" || (s.Client == "" && s.Item == "") {
		return Spot{}, fmt.Errorf("spot %q names no point", str)
	}
	return s, nil
}

// Experiment is one deterministic run of the explorer: a workload, a fault
// (a menu entry of the catalogue, or an explorer action) right before one
// spot of it, and optionally faults on from the start (a pair).
type Experiment struct {
	Workload string `json:"workload"`
	// Spot is where the fault is injected; zero for a baseline run.
	Spot Spot `json:"spot"`
	// Fault names what is injected at the spot: a nemesis.Menu entry, or
	// one of the explorer's own actions: "change" (a user changes the
	// instance while the work runs), "listener-lost" (every worker's LISTEN
	// session is terminated), "blackhole" (the worker's database link goes
	// silent and stays so: another worker must take over in time).
	Fault string `json:"fault"`
	// With are faults on from the start of the run (pairs).
	With []nemesis.Fault `json:"with,omitempty"`
}

// Explorer actions (besides the catalogue's menu).
const (
	faultBaseline  = "baseline"
	faultChange    = "change"
	faultListeners = "listener-lost"
	faultBlackhole = "blackhole"
)

// ID is the experiment's stable id, "workload|spot|fault[|with]": it names
// the experiment in reports, replays it (simrun replay -experiment) and
// shards it.
func (x Experiment) ID() string {
	parts := []string{x.Workload, x.Spot.String(), x.Fault}
	if x.Fault == faultBaseline {
		parts = []string{x.Workload, faultBaseline}
	}
	for _, f := range x.With {
		parts = append(parts, fmt.Sprintf("with=%s:%s:%d", f.Kind, f.Target, f.N))
	}
	return strings.Join(parts, "|")
}

// ParseExperiment reads an experiment from its ID.
func ParseExperiment(id string) (Experiment, error) {
	parts := strings.Split(id, "|")
	if len(parts) < 2 {
		return Experiment{}, fmt.Errorf("experiment %q: want workload|spot|fault", id)
	}
	x := Experiment{Workload: parts[0]}
	if _, ok := WorkloadNamed(x.Workload); !ok {
		return Experiment{}, fmt.Errorf("experiment %q: no workload %q", id, x.Workload)
	}
	rest := parts[1:]
	if rest[0] == faultBaseline {
		x.Fault, rest = faultBaseline, rest[1:]
	} else {
		if len(rest) < 2 {
			return Experiment{}, fmt.Errorf("experiment %q: want workload|spot|fault", id)
		}
		s, err := parseSpot(rest[0])
		if err != nil {
			return Experiment{}, fmt.Errorf("experiment %q: %w", id, err)
		}
		x.Spot, x.Fault, rest = s, rest[1], rest[2:]
		if _, err := x.action(nemesis.NewSpace(exploreWorkers)); err != nil {
			return Experiment{}, fmt.Errorf("experiment %q: %w", id, err)
		}
	}
	for _, w := range rest {
		spec, ok := strings.CutPrefix(w, "with=")
		f := strings.Split(spec, ":")
		if !ok || len(f) != 3 {
			return Experiment{}, fmt.Errorf("experiment %q: %q is not with=<kind>:<target>:<n>", id, w)
		}
		n, err := strconv.Atoi(f[2])
		fault := nemesis.Fault{Kind: f[0], Target: f[1], N: n}
		if err == nil {
			err = nemesis.Check(fault, nemesis.NewSpace(exploreWorkers))
		}
		if err != nil {
			return Experiment{}, fmt.Errorf("experiment %q: %w", id, err)
		}
		x.With = append(x.With, fault)
	}
	return x, nil
}

// action resolves the experiment's fault at its spot.
func (x Experiment) action(s nemesis.Space) (nemesis.Aimed, error) {
	switch x.Fault {
	case faultBaseline, faultChange, faultListeners, faultBlackhole:
		return nemesis.Aimed{Name: x.Fault}, nil
	}
	for _, a := range nemesis.Menu(s, nemesis.Spot{API: x.Spot.Client != "", Point: x.Spot.Point}) {
		if a.Name == x.Fault {
			return a, nil
		}
	}
	return nemesis.Aimed{}, fmt.Errorf("no fault %q at %s", x.Fault, x.Spot)
}

// exploreWorkers is how many workers an experiment runs: two, so that one
// can take over from another, while which worker claims what does not
// matter (spots name items, not workers).
const exploreWorkers = 2

// Coverage says how much an exploration explored: a run that explored
// little is visible as such.
type Coverage struct {
	Workloads   int `json:"workloads"`
	Spots       int `json:"spots"`       // points the workloads' traces reached (inside items and requests)
	Experiments int `json:"experiments"` // experiments run (singles and pairs)
	Pairs       int `json:"pairs"`       // of which pairs
	// Pruned counts the experiments not run, by reason.
	Pruned map[string]int `json:"pruned,omitempty"`
	// Unreached lists experiments whose spot did not come in their run.
	Unreached []string `json:"unreached,omitempty"`
	// NeverFaulted lists the spots no experiment hit (not known to one
	// shard of several).
	NeverFaulted []string `json:"never_faulted,omitempty"`
	// Failed lists every invalid experiment, by id.
	Failed []string `json:"failed,omitempty"`
}

// traced is a workload's fault-free run.
type traced struct {
	w     Workload
	spots []Spot
	batch map[Spot]bool // spots of a pipelined batch after its first statement
	// uncommitted are the worker spots before their item entry's last
	// commit: the item's work is not done there.
	uncommitted map[Spot]bool
	failed      *Example // the baseline run itself was invalid
	reads       int      // cloud reads of the fault-free run
}

// enumerate lists the experiments of one traced workload, and counts what
// it pruned, by reason.
func enumerate(t traced, pruned map[string]int) []Experiment {
	space := nemesis.NewSpace(exploreWorkers)
	var out []Experiment
	add := func(s Spot, fault string) { out = append(out, Experiment{Workload: t.w.Name, Spot: s, Fault: fault}) }
	seenEntry := map[string]bool{}  // item entries given their once-per-entry experiments
	blackholed := map[string]bool{} // item entries given a blackhole
	afterCall := map[string]bool{}  // item entries that passed a provider answer
	for _, s := range t.spots {
		menu := nemesis.Menu(space, nemesis.Spot{API: s.Client != "", Point: s.Point})
		if t.batch[s] {
			// It goes out with its batch's first statement: a fault before
			// it is a fault before that one, which is explored.
			pruned["batch: same as the batch's first statement"] += len(menu)
			continue
		}
		for _, a := range menu {
			if a.Fault.Kind == nemesis.KindPostgresRestart && !restartWorthy(s) {
				pruned["restart: only before a commit or right after a provider answer"]++
				continue
			}
			add(s, a.Name)
		}
		if s.Client != "" {
			continue
		}
		entry := s.Item + "." + strconv.Itoa(s.Entry)
		if !seenEntry[entry] {
			seenEntry[entry] = true
			add(s, faultListeners)
		}
		if strings.HasSuffix(s.Point, crash.DoneSuffix) {
			afterCall[entry] = true
			// A user changes the instance while its work is provably not
			// done (before the item's commit): the answer must be busy.
			if t.uncommitted[s] && s.Key == t.w.Instance {
				add(s, faultChange)
			}
		}
		if strings.HasPrefix(s.Point, "sql:") && afterCall[entry] && !blackholed[entry] {
			blackholed[entry] = true
			add(s, faultBlackhole)
		}
	}
	return out
}

// prioritize orders experiments so that the faults that most often expose
// a bug run first — crashes around provider calls and before a commit,
// concurrent changes, ambiguous answers — and the slow ones (hangs until a
// client timeout, outages, blackholes) last; spots a workload shares with
// an earlier one come after its own; within a rank, workloads take turns.
// The order decides only how soon a failure is found, never what is run.
func prioritize(xs []Experiment) []Experiment {
	rank := func(x Experiment) int {
		done := strings.HasSuffix(x.Spot.Point, crash.DoneSuffix)
		switch {
		case x.Fault == "crash" && (done || x.Spot.Point == "sql:commit" || !strings.HasPrefix(x.Spot.Point, "sql:")):
			return 0 // right before or after a provider call, or before a commit
		case x.Fault == faultChange, x.Fault == "ambiguous-500", x.Fault == "ambiguous-drop", x.Fault == "cut-answer":
			return 1
		case x.Fault == "crash", x.Fault == faultListeners, x.Fault == "transient-503":
			return 2
		case x.Fault == "transient-hang", x.Fault == "timeout-under", x.Fault == "timeout-over", x.Fault == "outage", x.Fault == "bug", x.Fault == faultBlackhole:
			return 4
		}
		return 3
	}
	type ranked struct {
		x                  Experiment
		repeat, rank, turn int
	}
	// Before all that, each kind of fault once, at a worker's spot of the
	// first workload: a slow fault kind that is the only one to expose a bug
	// must not wait behind hundreds of quick ones.
	firstOf := map[string]bool{}
	workerSpot := map[string]bool{} // faults some worker spot of the first workload has
	for _, x := range xs {
		if x.Workload == xs[0].Workload && x.Spot.Client == "" {
			workerSpot[x.Fault] = true
		}
	}
	first := func(x Experiment) bool {
		if x.Workload != xs[0].Workload || firstOf[x.Fault] || (x.Spot.Client != "" && workerSpot[x.Fault]) {
			return false
		}
		firstOf[x.Fault] = true
		return true
	}
	// Every workload begins with the first one's steps, so its first items
	// repeat spots an earlier workload has: those come after the new ones
	// (what the workload is for: the resize, the delete, the re-create).
	// A spot's item (or request) is named by the points it passes, so that
	// item 3 of one workload (a resize) and of another (a delete) differ.
	group := func(x Experiment) string {
		return x.Workload + "|" + x.Spot.Client + "|" + x.Spot.Item + "." + strconv.Itoa(x.Spot.Entry)
	}
	points := map[string][]string{}
	for _, x := range xs {
		g := group(x)
		if !slices.Contains(points[g], x.Spot.Point) {
			points[g] = append(points[g], x.Spot.Point)
		}
	}
	seen := map[string]bool{}
	turns := map[[3]any]int{}
	rs := make([]ranked, len(xs))
	for i, x := range xs {
		r := rank(x)
		if first(x) {
			r = -1
		}
		key := strings.Join(points[group(x)], ",") + "|" + x.Spot.String() + "|" + x.Fault
		repeat := 0
		if seen[key] && r >= 0 {
			repeat = 1
		}
		seen[key] = true
		k := [3]any{repeat, r, x.Workload}
		rs[i] = ranked{x: x, repeat: repeat, rank: r, turn: turns[k]}
		turns[k]++
	}
	slices.SortStableFunc(rs, func(a, b ranked) int {
		return cmp.Or(cmp.Compare(a.repeat, b.repeat), cmp.Compare(a.rank, b.rank), cmp.Compare(a.turn, b.turn))
	})
	out := make([]Experiment, len(rs))
	for i, r := range rs {
		out[i] = r.x
	}
	return out
}

// restartWorthy: a Postgres restart costs a server of its own; before a
// commit and right after a provider answer are where it can lose or redo
// something, the places between are equivalent to one of those.
func restartWorthy(s Spot) bool {
	return s.Point == "sql:commit" || strings.HasSuffix(s.Point, crash.DoneSuffix)
}

// exploreSeed is an experiment's own seed, from the root seed and its id.
func exploreSeed(root uint64, id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	return root ^ h.Sum64()
}

// shardOf places an experiment in one of n shards by its id alone, so
// every shard of a CI matrix agrees without talking to the others.
func shardOf(id string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % uint32(n))
}

// Shard selects a deterministic slice of the explorer's experiments.
type Shard struct {
	Index, Count int // shard Index of Count (0 ≤ Index < Count); zero Count: all
}

func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.Index+1, s.Count) }

// ParseShard reads "i/n" (1-based i, as CI job matrices count).
func ParseShard(str string) (Shard, error) {
	i, n, ok := strings.Cut(str, "/")
	a, err1 := strconv.Atoi(i)
	b, err2 := strconv.Atoi(n)
	if !ok || err1 != nil || err2 != nil || b < 1 || a < 1 || a > b {
		return Shard{}, fmt.Errorf("shard %q: want i/n with 1 ≤ i ≤ n", str)
	}
	return Shard{Index: a - 1, Count: b}, nil
}

// Has reports whether the experiment of this id is the shard's.
func (s Shard) Has(id string) bool { return s.Count <= 1 || shardOf(id, s.Count) == s.Index }

// runExplore is the explore family: trace every workload, enumerate, run
// the experiments concurrently, then the pairs.
func runExplore(ctx context.Context, opts Options) (FamilyResult, error) {
	start := time.Now()
	fr := FamilyResult{Family: FamilyExplore, Verdict: check.Valid}
	cov := &Coverage{Pruned: map[string]int{}}
	fr.Coverage = cov
	reached := map[string]bool{}
	var mu sync.Mutex
	var failures []Example
	record := func(ex Example) {
		mu.Lock()
		defer mu.Unlock()
		ex.found = time.Since(start)
		fr.Examples++
		for _, r := range ex.Result.Reached {
			reached[r] = true
		}
		switch {
		case ex.Verdict == check.Invalid:
			failures = append(failures, ex)
			cov.Failed = append(cov.Failed, ex.Name)
		case ex.Verdict == check.Unknown:
			fr.Unknown = append(fr.Unknown, ex.Name+": "+ex.Result.Reason)
		}
		if opts.Progress != nil {
			opts.Progress(ex)
		}
	}
	var exps []Experiment
	baseReads := map[string]int{}
	faulted := map[string]bool{}
	var allSpots []string
	// Every workload's fault-free run at once: a bug that needs no fault at
	// all is found in the first second.
	ws := Workloads()
	traces := make([]traced, len(ws))
	terrs := make([]error, len(ws))
	var twg sync.WaitGroup
	for i, w := range ws {
		twg.Go(func() { traces[i], terrs[i] = traceWorkload(ctx, opts, w) })
	}
	twg.Wait()
	if err := errors.Join(terrs...); err != nil {
		return fr, err
	}
	for i, t := range traces {
		w := ws[i]
		cov.Workloads++
		cov.Spots += len(t.spots)
		baseReads[w.Name] = t.reads
		for _, s := range t.spots {
			allSpots = append(allSpots, w.Name+"|"+s.String())
		}
		if t.failed != nil {
			record(*t.failed) // a bug with no fault at all
		}
		exps = append(exps, enumerate(t, cov.Pruned)...)
	}
	exps = prioritize(exps)
	var mine []Experiment
	for _, x := range exps {
		if opts.Shard.Has(x.ID()) {
			mine = append(mine, x)
		} else {
			cov.Pruned["shard: another shard's"]++
		}
	}
	// Pairs: a read-after-write lag matters where a fault made the system
	// read the cloud's state (to recover what it had done), so a run that
	// read more than its workload's fault-free run is repeated with the lag
	// on, right away (Filibuster's dynamic reduction, read off the ledger).
	pairOf := func(ex Example) []Experiment {
		if ex.Experiment == nil || len(ex.Experiment.With) > 0 || ex.Verdict == check.Invalid {
			return nil
		}
		if cloudReads(ex.Result.Input.Ledger) <= baseReads[ex.Experiment.Workload] {
			mu.Lock()
			cov.Pruned["pair with lag: the fault made the system read no more of the cloud than without it"]++
			mu.Unlock()
			return nil
		}
		x := *ex.Experiment
		x.With = []nemesis.Fault{{Kind: nemesis.KindProviderLag, Target: fakes.ServiceCloud, N: 2000}}
		return []Experiment{x}
	}
	note := func(ex Example) {
		mu.Lock()
		defer mu.Unlock()
		cov.Experiments++
		if ex.Experiment == nil {
			return
		}
		if len(ex.Experiment.With) > 0 {
			cov.Pairs++
		}
		if ex.Unreached {
			cov.Unreached = append(cov.Unreached, ex.Name)
		} else {
			faulted[ex.Experiment.Workload+"|"+ex.Experiment.Spot.String()] = true
		}
	}
	err := runExperiments(ctx, opts, mine, func(ex Example) []Experiment {
		record(ex)
		note(ex)
		return pairOf(ex)
	}, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return (len(failures) > 0 && !opts.Budget.ExploreAll) || time.Since(start) > opts.Budget.ExploreTime
	})
	if err != nil {
		return fr, err
	}
	for _, s := range allSpots {
		if !faulted[s] && opts.Shard.Count <= 1 { // a shard cannot know what the others faulted
			cov.NeverFaulted = append(cov.NeverFaulted, s)
		}
	}
	slices.Sort(cov.Unreached)
	slices.Sort(cov.Failed)
	if len(fr.Unknown) > 0 {
		fr.Verdict = check.Unknown
	}
	if len(failures) > 0 {
		// The first found is the one reported (ties by id, for a stable
		// report); Coverage.Failed lists them all.
		first := slices.MinFunc(failures, func(a, b Example) int { return cmp.Or(cmp.Compare(a.found, b.found), cmp.Compare(a.Name, b.Name)) })
		fr.Verdict = check.Invalid
		replay := fmt.Sprintf("%s replay -system %s -experiment '%s' -seed %d -expect %s", opts.Command, opts.Name, first.Name, opts.Seed, first.Result.Violations[0].Invariant)
		fr.Failure = &Failure{Example: first, Violations: first.Result.Violations, Detect: first.found, Replay: replay}
	}
	fr.Reached = slices.Sorted(mapsKeys(reached))
	fr.Duration = time.Since(start)
	return fr, nil
}

func mapsKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// cloudReads counts the cloud reads (describe, list, find by token) of a
// run.
func cloudReads(l fakes.Snapshot) int {
	n := 0
	for _, r := range l.Requests {
		if r.Service == fakes.ServiceCloud && !r.Mutation {
			n++
		}
	}
	return n
}

// parallel is the most examples and experiments of a Run at once:
// Options.Parallel, else sixteen per CPU, admitted by load (see admission).
func (o Options) parallel() int {
	if o.Parallel > 0 {
		return o.Parallel
	}
	return max(4, 16*runtime.GOMAXPROCS(0))
}

// runExperiments runs xs, in order, on at most opts.parallel()
// environments at once. Each finished example goes to done, which may
// return follow-up experiments: they run next, before the rest of xs. No
// experiment starts once stop says so.
func runExperiments(ctx context.Context, opts Options, xs []Experiment, done func(Example) []Experiment, stop func() bool) error {
	var (
		mu     sync.Mutex
		queue  = slices.Clone(xs)
		busy   int
		wake   = sync.NewCond(&mu)
		errs   []error
		active = true
	)
	take := func() (Experiment, bool) {
		mu.Lock()
		defer mu.Unlock()
		for {
			if !active || ctx.Err() != nil {
				return Experiment{}, false
			}
			if len(queue) > 0 {
				if stop() {
					active = false
					wake.Broadcast()
					return Experiment{}, false
				}
				x := queue[0]
				queue = queue[1:]
				busy++
				return x, true
			}
			if busy == 0 { // nothing queued, nothing running that could queue more
				active = false
				wake.Broadcast()
				return Experiment{}, false
			}
			wake.Wait()
		}
	}
	var wg sync.WaitGroup
	for range opts.parallel() {
		wg.Go(func() {
			for {
				x, ok := take()
				if !ok {
					return
				}
				release, ok := opts.acquire(ctx, prioShort)
				if !ok {
					mu.Lock()
					busy--
					wake.Broadcast()
					mu.Unlock()
					return
				}
				ex, err := RunExperiment(ctx, opts, x)
				if err != nil && ctx.Err() == nil {
					// The harness itself failed (a server that went away
					// on a loaded machine): once more before the whole
					// family gives up, since a verdict needs the run.
					if opts.Logger != nil {
						opts.Logger.Warn("scenarios: experiment failed to run, trying it again", "experiment", x.ID(), "err", err)
					}
					ex, err = RunExperiment(ctx, opts, x)
				}
				release()
				var more []Experiment
				if err == nil {
					more = done(ex)
				}
				mu.Lock()
				busy--
				if err != nil {
					errs = append(errs, fmt.Errorf("experiment %s: %w", x.ID(), err))
					active = false
				}
				queue = append(more, queue...)
				wake.Broadcast()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// traceWorkload runs w fault-free with every point recorded.
func traceWorkload(ctx context.Context, opts Options, w Workload) (traced, error) {
	x := Experiment{Workload: w.Name, Fault: faultBaseline}
	t := traced{w: w, batch: map[Spot]bool{}, uncommitted: map[Spot]bool{}}
	var trace []crash.TracePoint
	ex, err := runExperiment(ctx, opts, x, func(e *sim.Env) { trace = e.Gate().Trace() })
	if err != nil {
		return t, fmt.Errorf("trace %s: %w", w.Name, err)
	}
	if ex.Verdict == check.Invalid {
		t.failed = &ex
	}
	t.reads = cloudReads(ex.Result.Input.Ledger)
	lastCommit := map[string]int{} // item entry → Seq of its last commit
	for _, p := range trace {
		if p.Item != "" && p.Point == "sql:commit" {
			lastCommit[p.Item+"."+strconv.Itoa(p.Entry)] = p.Seq
		}
	}
	seen := map[Spot]bool{}
	for _, p := range trace {
		var s Spot
		switch {
		case strings.HasPrefix(p.Worker, sim.APIActor("")):
			s = Spot{Client: strings.TrimPrefix(p.Worker, sim.APIActor("")), Point: p.Point, Nth: p.Nth}
		case p.Item != "":
			s = Spot{Item: p.Item, Entry: p.Entry, Point: p.Point, Nth: p.Nth, Key: p.Key}
		default:
			continue // a worker between items: polls, claims; not the same from run to run
		}
		key := s
		key.Key = ""
		if seen[key] {
			continue
		}
		seen[key] = true
		t.spots = append(t.spots, s)
		if p.Batch {
			t.batch[s] = true
		}
		if c, ok := lastCommit[p.Item+"."+strconv.Itoa(p.Entry)]; ok && p.Item != "" && p.Seq < c {
			t.uncommitted[s] = true
		}
	}
	return t, nil
}

// RunExperiment runs one experiment on a fresh environment and ends it
// with Env.Finish. Example.Unreached says its spot never came.
func RunExperiment(ctx context.Context, opts Options, x Experiment) (Example, error) {
	return runExperiment(ctx, opts.withDefaults(), x, nil)
}

func runExperiment(ctx context.Context, opts Options, x Experiment, traced func(*sim.Env)) (Example, error) {
	start := time.Now()
	w, ok := WorkloadNamed(x.Workload)
	if !ok {
		return Example{}, fmt.Errorf("no workload %q", x.Workload)
	}
	space := nemesis.NewSpace(exploreWorkers)
	aimed, err := x.action(space)
	if err != nil {
		return Example{}, err
	}
	id := x.ID()
	so := simOptions(opts, exploreWorkers)
	so.Seed = exploreSeed(opts.Seed, id)
	so.PrivateServer = aimed.Fault.Kind == nemesis.KindPostgresRestart
	ex := Example{Family: FamilyExplore, Name: id, Seed: so.Seed, Experiment: &x}
	e, err := sim.New(ctx, so)
	if errors.Is(err, sim.ErrUnavailable) {
		ex.Verdict, ex.Result.Verdict, ex.Result.Reason = check.Unknown, check.Unknown, err.Error()
		return ex, nil
	}
	if err != nil {
		return Example{}, err
	}
	defer e.Close()
	if traced != nil {
		e.Gate().SetTracing(true)
	}
	for _, f := range x.With {
		if err := nemesis.Inject(ctx, e, f); err != nil {
			return Example{}, err
		}
	}
	arm := &armed{}
	if x.Fault != faultBaseline {
		if err := arm.set(ctx, e, w, x, aimed); err != nil {
			return Example{}, err
		}
	}
	for k, st := range w.Steps {
		c, cb := clients(k)
		if st.With == nil {
			_, _ = e.Serve(ctx, c, st.Req)
		} else {
			// The workers wait meanwhile (scheduled mode parks them at their
			// next point): the first change's work cannot complete before
			// the second is answered, so the answers are the same in every
			// run.
			e.SetScheduled(true)
			concurrently(ctx, e, c, st.Req, cb, *st.With)
			e.SetScheduled(false)
		}
		if err := arm.follow(ctx, e); err != nil {
			return Example{}, err
		}
		// Once the fault fired, the system has its promised takeover bound
		// to recover before the next step (a claim left by a crash may be
		// rescued only that late).
		bound := stepBound
		if arm.fired() {
			bound = max(bound, e.Liveness().Takeover)
		}
		settle(ctx, e, w.Instance, bound)
	}
	// The spot may come after the last step settled (a follow-up runs
	// after its item committed): wait for it and for what it injected, so
	// that Finish never races the fault.
	if x.Fault != faultBaseline {
		arm.wait(ctx, stepBound)
	}
	if err := arm.follow(ctx, e); err != nil {
		return Example{}, err
	}
	if traced != nil {
		traced(e)
	}
	res, err := e.Finish(ctx)
	if err != nil {
		return Example{}, err
	}
	ex.Verdict, ex.Settled, ex.Result, ex.Duration = res.Verdict, res.Settled, res, time.Since(start)
	ex.Unreached = x.Fault != faultBaseline && !arm.fired()
	return ex, nil
}

// concurrently sends two requests that both read before either writes —
// each waits right before its first write until the other got there —, and
// then lets a's write go first and b's once a was answered: concurrent for
// a check made by a read, and the same order in every run.
func concurrently(ctx context.Context, e *sim.Env, ca string, a contract.Request, cb string, b contract.Request) {
	const bound = 500 * time.Millisecond
	meet := rendezvous(2, bound)
	aDone := make(chan struct{})
	e.Gate().OnPoint(sim.APIActor(ca), nemesis.AtSQL("update"), meet)
	e.Gate().OnPoint(sim.APIActor(cb), nemesis.AtSQL("update"), func() {
		meet()
		select {
		case <-aDone:
		case <-time.After(stepBound):
		}
	})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(aDone)
		_, _ = e.Serve(ctx, ca, a)
	})
	wg.Go(func() { _, _ = e.Serve(ctx, cb, b) })
	wg.Wait()
}

// OutageRetries is how many requests an explored outage turns away before
// it heals: more than a system that caps its retries at a handful makes.
const OutageRetries = 6

// refusedByOutage counts the provider requests a down fault answered.
func refusedByOutage(e *sim.Env) int {
	n := 0
	for _, r := range e.Providers().Snapshot().Requests {
		if slices.Contains(strings.Split(r.Fault, "+"), string(fakes.ModeDown)) {
			n++
		}
	}
	return n
}

// itemDone reports whether work item item is no longer pending and its
// instance has no active work (or is gone: a delete's item).
func itemDone(ctx context.Context, e *sim.Env, item, instance string) bool {
	s, err := e.Inspect(ctx)
	if err != nil || slices.ContainsFunc(s.Work, func(w contract.WorkItem) bool { return w.ID == item }) {
		return false
	}
	return !slices.ContainsFunc(s.Instances, func(in contract.Instance) bool { return in.ID == instance && in.HasActiveWork })
}

// settle waits, bounded, until the system has no runnable work and the
// instance no active work (parked work counts as settled: a deployed bug
// holds it until its fix).
func settle(ctx context.Context, e *sim.Env, instance string, bound time.Duration) {
	sim.Await(ctx, bound, func() bool {
		s, err := e.Inspect(ctx)
		if err != nil {
			return false
		}
		for _, w := range s.Work {
			if !w.Parked {
				return false
			}
		}
		for _, in := range s.Instances {
			if in.ID == instance && in.HasActiveWork && !slices.ContainsFunc(s.Work, func(w contract.WorkItem) bool { return w.Parked }) {
				return false
			}
		}
		return true
	})
}

// stepBound bounds each wait of an experiment.
const stepBound = 5 * time.Second

// armed is an experiment's fault, waiting at its spot, and what must follow
// it once it fired (a bug fixed, an outage healed, a takeover watched).
type armed struct {
	mu       sync.Mutex
	done     chan struct{} // closed once the injection at the spot returned
	hit      bool
	at       time.Time
	worker   string // the incarnation that reached the spot
	x        Experiment
	followed bool
	crashSet bool
	e        *sim.Env
}

// wait waits, at most bound, until the fault fired and its injection
// returned.
func (a *armed) wait(ctx context.Context, bound time.Duration) {
	if a.crashSet {
		sim.Await(ctx, bound, a.fired)
		return
	}
	select {
	case <-a.done:
	case <-ctx.Done():
	case <-time.After(bound):
	}
}

func (a *armed) fired() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hit || (a.crashSet && len(a.e.Gate().Hits()) > 0)
}

func (a *armed) set(ctx context.Context, e *sim.Env, w Workload, x Experiment, aimed nemesis.Aimed) error {
	a.x, a.e, a.done = x, e, make(chan struct{})
	rule := x.Spot.rule()
	if x.Spot.Client != "" {
		client := x.Spot.Client
		e.Gate().OnPoint(sim.APIActor(client), crash.Rule{At: x.Spot.Point, Nth: x.Spot.Nth}, func() {
			a.fire(client)
			defer a.finish()
			if aimed.Fault.Kind == nemesis.KindCrashRequest {
				e.CrashRequest(client)
				return
			}
			f := aimed.Fault
			f.Worker = nemesis.APIPrefix + client
			_ = nemesis.Inject(ctx, e, f)
		})
		return nil
	}
	for _, slot := range e.Workers() {
		if aimed.Fault.Kind == nemesis.KindCrash {
			a.crashSet = true
			if err := e.Crash(slot, rule); err != nil {
				return err
			}
			continue
		}
		err := e.OnPoint(slot, rule, func() {
			inc, _ := e.Incarnation(slot)
			if !a.fire(inc) {
				return // another worker got there first: one injection per experiment
			}
			defer a.finish()
			switch x.Fault {
			case faultChange:
				size := "medium"
				if s, err := e.Serve(ctx, "change", contract.Request{Op: contract.OpGet, Instance: w.Instance}); err == nil && s.Size == size {
					size = "large"
				}
				_, key := e.Gate().Inside(inc)
				resp, err := e.Serve(ctx, "change", resizeReq(w.Instance, size))
				if err == nil && key == w.Instance {
					// The worker is inside the instance's work, before the
					// item's commit: whatever the system's flag says, the
					// instance has active work right now.
					e.Violate(check.Violation{Invariant: check.InvRace, Rule: "accepted-while-active", Instance: w.Instance,
						Message: fmt.Sprintf("resize %s accepted (generation %d) while worker %s was inside item %s of the instance, before its commit (at %s)",
							size, resp.Generation, inc, x.Spot.Item, x.Spot.Point)})
				}
			case faultListeners:
				_ = nemesis.Inject(ctx, e, nemesis.Fault{Kind: nemesis.KindTerminateListener, Worker: nemesis.AllWorkers})
			case faultBlackhole:
				_ = nemesis.Inject(ctx, e, nemesis.Fault{Kind: nemesis.KindLinkBlackhole, Worker: slot, Target: sim.Postgres, Param: "down"})
			default:
				f := aimed.Fault
				// A fault aimed at this very request hits the worker that
				// reached the spot; a provider that is down, or runs a
				// deployed bug, is so for every worker.
				if f.Kind != nemesis.KindProviderOutage && f.Kind != nemesis.KindDeployBug {
					f.Worker = slot
				}
				_ = nemesis.Inject(ctx, e, f)
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// fire records that worker reached the spot; it reports whether it is the
// first to.
func (a *armed) fire(worker string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.hit {
		return false
	}
	a.hit, a.at, a.worker = true, time.Now(), worker
	return true
}

func (a *armed) finish() { close(a.done) }

// follow does, once, what must come after a fired fault: a deployed bug is
// fixed once the work parked on it (or met it HotRetryLimit+1 times), an
// outage healed after a stretch, and a blackholed worker's item must be
// taken over by another worker within the promised takeover bound while
// the fault lasts.
func (a *armed) follow(ctx context.Context, e *sim.Env) error {
	a.mu.Lock()
	if !a.hit || a.followed {
		a.mu.Unlock()
		return nil
	}
	a.followed = true
	x, at, worker := a.x, a.at, a.worker
	a.mu.Unlock()
	aimed, _ := x.action(nemesis.NewSpace(exploreWorkers))
	switch {
	case aimed.Fault.Kind == nemesis.KindDeployBug:
		sim.Await(ctx, e.Liveness().ParkVisibleWithin, func() bool {
			return parked(ctx, e) || rejections(e, "", "", "") > check.HotRetryLimit
		})
		return e.FixBugs(ctx)
	case aimed.Fault.Kind == nemesis.KindProviderOutage:
		// A long stretch, measured in the system's own retries (so that
		// how busy the machine is does not change what the run tests):
		// until the outage turned OutageRetries requests away, or
		// stepBound passed.
		sim.Await(ctx, stepBound, func() bool { return refusedByOutage(e) >= OutageRetries })
		return nemesis.Heal(ctx, e, nemesis.ClassProvider)
	case x.Fault == faultBlackhole:
		key := x.Spot.Key
		if broken := awaitTakeover(ctx, e, at, func() bool { return itemDone(ctx, e, x.Spot.Item, key) }); broken != "" {
			e.Violate(check.Violation{Invariant: check.InvConvergence, Rule: RuleNoTakeover, Instance: key,
				Message: fmt.Sprintf("the database link of worker %s went silent inside item %s of %s (at %s, %s) and no worker finished the item while the fault lasted: %s",
					worker, x.Spot.Item, key, x.Spot.Point, at.UTC().Format("15:04:05.000"), broken)})
		}
	}
	return nil
}
