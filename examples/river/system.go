package riverkvx

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/kvx"
)

// Tuning is how this system configures River, each zero field its default
// here (not River's: River's own defaults are what the gate found wrong,
// see README.md). The rule behind the numbers: a claim is a committed row,
// so a worker that dies inside a job leaves it running until River's
// rescuer, on the leader, finds it older than RescueStuckJobsAfter — and the
// rescuer looks every 30 s (River's JobRescuerIntervalDefault, which
// river.Config does not expose), after which River's scheduler makes it
// available within 5 s. RescueStuckJobsAfter must exceed JobTimeout with
// margin, or a slow but live worker's job is handed to a second worker
// while the first still acts: two live executions.
type Tuning struct {
	// JobTimeout bounds one attempt of a job, every provider call
	// included (River cancels the job's ctx); zero: 5s.
	JobTimeout time.Duration
	// RescueStuckJobsAfter is how long a job may be running before the
	// rescuer retries it; zero: 10s, twice JobTimeout, so a timed-out
	// attempt's calls have long landed before another worker repeats them.
	RescueStuckJobsAfter time.Duration
	// Provider bounds each provider call; zero: 2s (the harness's
	// provider timeout, sim.Options.ProviderTimeout).
	Provider time.Duration
	// Backoff of a failed attempt: min(MaxBackoff, MinBackoff·2^errors);
	// zero: 25ms and 1s, so retries go straight back to available
	// (River's executor skips its 5 s scheduler for a retry due within
	// that) and the work resumes within a second of an outage's end.
	MinBackoff, MaxBackoff time.Duration
	// MaxAttempts before River discards a job; zero: 600, so that with
	// MaxBackoff the work survives a provider outage of ten minutes, the
	// longest this system promises to ride out. An intransient error
	// never spends attempts: it cancels the job (parks it) at once.
	MaxAttempts int
	// FetchPollInterval is how often a worker polls for jobs besides
	// River's LISTEN/NOTIFY wake-up; zero: 250ms.
	FetchPollInterval time.Duration
	// RiverDefaults leaves River's own defaults for everything above but
	// Provider (RescueStuckJobsAfter 1 h, JobTimeout 1 min, the attempt⁴
	// backoff, 25 attempts, a 1 s poll): the configuration the gate was
	// first run with, kept as a seeded bug (mutant RiverDefaults).
	RiverDefaults bool
}

func (t Tuning) withDefaults() Tuning {
	t.Provider = cmp.Or(t.Provider, 2*time.Second)
	if t.RiverDefaults {
		return t
	}
	t.JobTimeout = cmp.Or(t.JobTimeout, 5*time.Second)
	t.RescueStuckJobsAfter = cmp.Or(t.RescueStuckJobsAfter, 2*t.JobTimeout)
	t.MinBackoff = cmp.Or(t.MinBackoff, 25*time.Millisecond)
	t.MaxBackoff = cmp.Or(t.MaxBackoff, time.Second)
	t.MaxAttempts = cmp.Or(t.MaxAttempts, 600)
	t.FetchPollInterval = cmp.Or(t.FetchPollInterval, 250*time.Millisecond)
	return t
}

// River's fixed intervals this system's promise depends on (river.Config
// exposes neither).
const (
	rescuerInterval   = 30 * time.Second // maintenance.JobRescuerIntervalDefault
	schedulerInterval = 5 * time.Second  // maintenance.JobSchedulerIntervalDefault
)

// Promise is the liveness this system declares, derived from the default
// Tuning (never from a variant's: a variant keeps this promise, so a
// variant that tunes River worse is caught breaking it):
//
//   - Takeover: a silent worker's job is rescued once it has been running
//     RescueStuckJobsAfter, at the rescuer's next look (up to 30 s later),
//     made available by the scheduler (up to 5 s), and redone within a
//     JobTimeout: 10 + 30 + 5 + 5 = 50 s. (When the silent worker was the
//     leader, its leadership expires first — 15 s — and the new leader's
//     rescuer looks at once: sooner.)
//   - Settle: a crash just before the heal costs a whole takeover, and the
//     work after it a JobTimeout more: 55 s.
//   - ParkVisibleWithin: an intransient error cancels the job in the
//     attempt that met it: one JobTimeout and River's completer's flush.
//   - Claim: a committed row (state running), which outlives the session.
//   - ListenerApplicationName: River's notifier does not name its session.
func Promise() contract.Liveness {
	t := Tuning{}.withDefaults()
	takeover := t.RescueStuckJobsAfter + rescuerInterval + schedulerInterval + t.JobTimeout
	return contract.Liveness{
		Takeover:          takeover,
		Settle:            takeover + t.JobTimeout,
		ParkVisibleWithin: 2 * t.JobTimeout,
		Claim:             contract.ClaimRow,
	}
}

// Options assembles a System. The zero value is the reference.
type Options struct {
	// Tuning configures River; each zero field is its default.
	Tuning Tuning
	// variant holds a seeded bug's parts (mutants.go); zero: none.
	variant variant
}

// variant is a seeded bug: each zero field is the reference's behaviour.
type variant struct {
	// record is the check-and-set that accepts a change; zero:
	// kvx.RecordChange (refuses a change while the instance has active
	// work).
	record func(ctx context.Context, tx pgx.Tx, req contract.Request) (kvx.Change, bool, error)
	// unique, when set, is the change jobs' UniqueOpts.
	unique *river.UniqueOpts
	// completeFirst completes a change's job in a transaction of its own,
	// committed before the one that records the change's effects.
	completeFirst bool
	// emailInTx sends the welcome email inside the job's transaction,
	// before JobCompleteTx and the commit.
	emailInTx bool
}

// System is KVX on River as a contract.System.
type System struct {
	tune    Tuning
	v       variant
	inserts *river.Client[pgx.Tx] // insert-only: InsertTx, JobListTx, JobRetryTx in a caller's transaction
}

var (
	_ contract.System           = (*System)(nil)
	_ contract.LivenessDeclarer = (*System)(nil)
)

// New assembles a System from opts.
func New(opts Options) *System {
	// A client without a pool does everything in a transaction it is
	// handed, which is all Serve and Inspect need: its config only has to
	// agree with the workers' on the jobs' defaults: a job's MaxAttempts is
	// fixed when it is inserted.
	tune := opts.Tuning.withDefaults()
	// Its log (a notification an InsertTx could not send after a lost
	// connection) is nobody's to read: a request answers with its error.
	c, err := river.NewClient(riverpgxv5.New(nil), &river.Config{MaxAttempts: tune.MaxAttempts,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		// Only a bad Config fails here, and this one is fixed.
		panic(fmt.Sprintf("riverkvx: insert-only client: %v", err))
	}
	return &System{tune: tune, v: opts.variant, inserts: c}
}

// Liveness is the promise the system declares: Promise, whatever the
// Tuning (see Promise).
func (s *System) Liveness() contract.Liveness { return Promise() }

// Tuning is the River configuration the system runs with, defaults filled
// in.
func (s *System) Tuning() Tuning { return s.tune }

// retryPolicy is Tuning's capped exponential backoff. It has no jitter: a
// deployment of a few workers does not stampede, and River calls it from
// several goroutines, which a shared random source would have to lock.
type retryPolicy struct{ min, max time.Duration }

func (p retryPolicy) NextRetry(job *rivertype.JobRow) time.Time {
	d := p.max
	if n := len(job.Errors); n < 16 {
		d = min(p.max, p.min<<n)
	}
	return time.Now().Add(d)
}

// riverConfig is a worker's River client config.
func (s *System) riverConfig(workers *river.Workers, id string, deps contract.Deps) *river.Config {
	cfg := &river.Config{
		ID:      id,
		Logger:  deps.Logger,
		Queues:  map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 1}},
		Workers: workers,
	}
	if s.tune.RiverDefaults {
		return cfg
	}
	cfg.JobTimeout = s.tune.JobTimeout
	cfg.RescueStuckJobsAfter = s.tune.RescueStuckJobsAfter
	cfg.MaxAttempts = s.tune.MaxAttempts
	cfg.RetryPolicy = retryPolicy{min: s.tune.MinBackoff, max: s.tune.MaxBackoff}
	cfg.FetchPollInterval = s.tune.FetchPollInterval
	cfg.FetchCooldown = min(cfg.FetchPollInterval, river.FetchCooldownDefault)
	return cfg
}

// Migrate runs River's migrations, then creates kvx's instances table.
func (s *System) Migrate(ctx context.Context, db *pgxpool.Pool) error {
	return migrate(ctx, db)
}
