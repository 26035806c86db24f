package reports

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/workproof/workproof/sim/check"
)

// Schema is the model's version, written in Report.Schema. It changes when a
// field is removed or changes meaning; adding a field does not change it.
//
// Schema 2: durations are numbers of milliseconds in fields named …_ms, the
// gate, replay and bench parts were added, the evidence is snake_case.
const Schema = 2

// Kinds of run a Report describes: the simrun command (or Verify) that made it.
const (
	KindSoak   = "soak"
	KindGate   = "gate"
	KindReplay = "replay"
	KindBench  = "bench"
	KindVerify = "verify"
)

// How a run ended (Report.Ended).
const (
	EndCompleted   = "completed"   // ran for its whole duration, final check done
	EndViolation   = "violation"   // stopped early at the checkpoint that found a violation
	EndInterrupted = "interrupted" // cancelled (Ctrl-C) before its end
	EndError       = "error"       // the harness itself failed (see Report.Error)
)

// Report is the result of one run. Every field is plain data; the zero
// value of a list is "none", never "unknown".
type Report struct {
	// Schema is the model version (see Schema).
	Schema int `json:"schema"`
	// Kind is the kind of run: one of the Kind… constants.
	Kind string `json:"kind"`
	// System names the system under test: "kvx" or a mutant's name.
	System string `json:"system"`
	// Seed is the run's root seed: every random draw of the run comes from
	// streams derived from it.
	Seed uint64 `json:"seed"`
	// Replay is the paste-ready command that reruns this run with the same
	// seed and settings (for a gate: the first failure's replay); empty when
	// the caller did not set it.
	Replay string `json:"replay,omitempty"`
	// Started is when the run began (wall clock).
	Started time.Time `json:"started"`
	// Elapsed is the wall-clock length of the run, checkpoints included.
	Elapsed Duration `json:"elapsed_ms"`
	// TrafficTime is how long traffic and faults ran: Elapsed without the
	// quiescent checkpoints. Throughput is per second of it.
	TrafficTime Duration `json:"traffic_time_ms"`
	// Ended says how the run ended: one of the End… constants.
	Ended string `json:"ended"`
	// Verdict is valid only when every checkpoint, the final one included,
	// converged with no violation; invalid when any checkpoint found one;
	// unknown otherwise (see Reason).
	Verdict check.Verdict `json:"verdict"`
	// Reason explains an unknown verdict or an early end.
	Reason string `json:"reason,omitempty"`
	// Error is the harness failure that ended the run (Ended == EndError).
	Error string `json:"error,omitempty"`

	// Settings are a soak's knobs (zero for other kinds: left out).
	Settings Settings `json:"settings,omitzero"`
	// Budget is a gate's, a bench's or Verify's (zero for a soak: left out).
	Budget   Budget   `json:"budget,omitzero"`
	Postgres Postgres `json:"postgres,omitzero"`

	Requests   Requests   `json:"requests,omitzero"`
	Work       Work       `json:"work,omitzero"`
	Throughput Throughput `json:"throughput,omitzero"`

	// Faults counts what the nemesis did, by action ("link-latency",
	// "provider-ambiguous", "crash-armed", "restart", …), sorted by name.
	Faults []Count `json:"faults"`
	// CrashPoints counts the crashes that fired, by the point they fired at
	// (kills are in Faults), sorted by name.
	CrashPoints []Count `json:"crash_points"`
	// PointsPassed is how many distinct crash points (statements and
	// provider calls) the workers passed.
	PointsPassed int `json:"points_passed"`
	// Reached lists the interesting paths the run exercised, in
	// check.Paths order; Unreached the others.
	Reached   []string `json:"reached"`
	Unreached []string `json:"unreached"`

	// Checkpoints are the quiescent checks, in order; the last one is the
	// final check when Final is set on it.
	Checkpoints []Checkpoint `json:"checkpoints"`
	// Violations are every distinct violation found, each with the first
	// checkpoint that found it.
	Violations []Violation `json:"violations"`
	// Samples are the run's time series, one per sample interval.
	Samples []Sample `json:"samples"`
	// Events is what the nemesis did, in order (the fault timeline).
	Events []Event `json:"events"`
	// Series is the run's derived time series (control error signal, work
	// queued, parked and in flight, throughput, latency, fault windows),
	// computed from the evidence by Derive; nil when none was derived.
	Series *Series `json:"series,omitempty"`

	// Families are a gate's (or Verify's) families, in the order they ran.
	Families []Family `json:"families,omitempty"`
	// Examples are a replay's attempts, in order (the last one decided).
	Examples []Example `json:"examples,omitempty"`
	// Expect is the invariant a replay was asked to reproduce; Outcome is
	// then OutcomeReproduced or OutcomeDiverged.
	Expect  check.Invariant `json:"expect,omitempty"`
	Outcome string          `json:"outcome,omitempty"`
	// Bench is a bench's table: one row per system measured.
	Bench []BenchRow `json:"bench,omitempty"`

	// Evidence is the input of the check that decided the verdict (the
	// first that found a violation, else the last): history, ledgers and
	// the system's state. It is large, so it is not part of report.json;
	// WriteDir writes it to evidence.json. Nil: none.
	Evidence *check.Input `json:"-"`
}

// Settings are the knobs of a soak run, as they were after defaults.
type Settings struct {
	Duration        Duration `json:"duration_ms"`         // traffic time asked for
	Workers         int      `json:"workers"`             // worker slots
	Rate            float64  `json:"rate_per_s"`          // requests per second asked for
	Instances       int      `json:"instances"`           // size of the instance id set
	Clients         int      `json:"clients"`             // concurrent user clients
	Faults          string   `json:"faults"`              // fault profile name
	CheckEvery      Duration `json:"check_every_ms"`      // traffic time between checkpoints
	ConvergeTimeout Duration `json:"converge_timeout_ms"` // bound of each liveness phase
	KeepGoing       bool     `json:"keep_going"`          // go on after a violation
	// WholeHistory: every checkpoint checked the run from its start, where
	// by default each valid checkpoint forgets what it proved.
	WholeHistory bool `json:"whole_history,omitempty"`
	// ProcessWorkers: every worker was a process of its own, killed with
	// SIGKILL (soak -process-workers).
	ProcessWorkers bool `json:"process_workers,omitempty"`
}

// Postgres describes the server the run used.
type Postgres struct {
	// Kind is "ephemeral" (a private cluster the run started and removed)
	// or "dsn" (a server given by connection string).
	Kind    string `json:"kind"`
	Version string `json:"version,omitempty"`
	// Settings are the server settings the run started an ephemeral cluster
	// with (fsync off, …); nil for a DSN server, whose settings are its own.
	Settings map[string]string `json:"settings,omitempty"`
}

// Requests counts user requests by how they ended.
type Requests struct {
	Sent     int `json:"sent"`     // every request, reads included
	Changes  int `json:"changes"`  // create, resize and delete requests
	Accepted int `json:"accepted"` // changes that happened (OK)
	Busy     int `json:"busy"`     // changes refused: the instance had active work
	Rejected int `json:"rejected"` // other definite failures: not found, exists, invalid
	Unknown  int `json:"unknown"`  // outcome unknown (timeout, lost connection) or still pending
	Gets     int `json:"gets"`     // reads
}

// Add is the sum of r and o.
func (r Requests) Add(o Requests) Requests {
	return Requests{Sent: r.Sent + o.Sent, Changes: r.Changes + o.Changes, Accepted: r.Accepted + o.Accepted,
		Busy: r.Busy + o.Busy, Rejected: r.Rejected + o.Rejected, Unknown: r.Unknown + o.Unknown, Gets: r.Gets + o.Gets}
}

// Work counts worker item intervals (a worker inside a work item) by how
// they ended.
type Work struct {
	Entered int `json:"entered"` // intervals begun
	Done    int `json:"done"`    // committed
	Retried int `json:"retried"` // left to retry after a transient error
	Parked  int `json:"parked"`  // parked after an intransient error
	Errored int `json:"errored"` // left with an unknown outcome (lost connection, unanswered COMMIT)
	Cut     int `json:"cut"`     // ended by a crash or a lost database session
}

// Add is the sum of w and o.
func (w Work) Add(o Work) Work {
	return Work{Entered: w.Entered + o.Entered, Done: w.Done + o.Done, Retried: w.Retried + o.Retried,
		Parked: w.Parked + o.Parked, Errored: w.Errored + o.Errored, Cut: w.Cut + o.Cut}
}

// Throughput is per second of traffic time.
type Throughput struct {
	RequestsPerS float64 `json:"requests_per_s"`
	ChangesPerS  float64 `json:"changes_per_s"` // accepted changes
	WorkPerS     float64 `json:"work_per_s"`    // work items done
}

// Count is a named count.
type Count struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

// Checkpoint is one quiescent check: traffic and faults paused, every fault
// healed, the liveness phase run (sim.Env.Converge), then every invariant
// checked on the history so far.
type Checkpoint struct {
	Index int `json:"index"` // from 0
	// At is the traffic time at which it ran; Elapsed the wall-clock time.
	At      Duration `json:"at_ms"`
	Elapsed Duration `json:"elapsed_ms"`
	// Final marks the check at the end of the run.
	Final bool `json:"final,omitempty"`
	// Settled says the system settled within the converge bound.
	Settled bool          `json:"settled"`
	Verdict check.Verdict `json:"verdict"`
	// Violations is how many violations this check found (new or not).
	Violations int `json:"violations"`
	// New is how many of them no earlier checkpoint had found.
	New int `json:"new"`
	// Took is how long the checkpoint paused the run (converge and check).
	Took Duration `json:"took_ms"`
	// Checked is the part of Took spent reading the history, ledgers and
	// state and running the checkers: what grows with the history checked.
	Checked Duration `json:"checked_ms"`
	// Error is why the checkpoint could not finish, if it could not.
	Error string `json:"error,omitempty"`
}

// Violation is one broken invariant, with where in the run it was found.
type Violation struct {
	check.Violation
	// Line is the violation as the checkers print it.
	Line string `json:"line"`
	// Checkpoint is the index of the first checkpoint that found it (a
	// soak's; zero, with At, for the other kinds of run).
	Checkpoint int `json:"checkpoint"`
	// At is that checkpoint's traffic time.
	At Duration `json:"at_ms"`
	// BlastRadius is what the violation cost, in the user's terms, as far
	// as the evidence shows it (see BlastOf); nil when no evidence was kept.
	BlastRadius *Blast `json:"blast_radius,omitempty"`
	// Evidence is the file, relative to the report directory, holding the
	// violation's evidence slice (see SliceOf); set by WriteDir.
	Evidence string `json:"evidence,omitempty"`
}

// Phases of a sample.
const (
	PhaseTraffic    = "traffic"    // traffic and faults running
	PhaseCheckpoint = "checkpoint" // paused: converging and checking
)

// Sample is one point of the run's time series. Counters are cumulative.
type Sample struct {
	Elapsed      Duration `json:"elapsed_ms"` // wall clock since the start
	Traffic      Duration `json:"traffic_ms"` // traffic time since the start
	Phase        string   `json:"phase"`
	Requests     int      `json:"requests"`
	Changes      int      `json:"changes"` // accepted changes
	Busy         int      `json:"busy"`
	WorkDone     int      `json:"work_done"`
	QueueDepth   int      `json:"queue_depth"`   // work rows not done, parked included; -1 when it could not be read
	ActiveFaults int      `json:"active_faults"` // link faults, provider fault rules and deployed bugs on now
	Crashes      int      `json:"crashes"`       // crashes and kills so far
	Violations   int      `json:"violations"`    // distinct violations found so far
	// The harness process's own footprint (workers, fakes, links and
	// checkers; not Postgres), so that a leak shows as a trend: live
	// goroutines, live heap (as of the last GC), resident set size and open
	// file descriptors. Zero when not sampled; -1 where the platform could
	// not tell (no /proc).
	Goroutines int   `json:"goroutines,omitempty"`
	HeapBytes  int64 `json:"heap_bytes,omitempty"`
	RSSBytes   int64 `json:"rss_bytes,omitempty"`
	OpenFDs    int   `json:"open_fds,omitempty"`
}

// Event is one thing the nemesis did.
type Event struct {
	Elapsed Duration `json:"elapsed_ms"` // wall clock since the start
	Kind    string   `json:"kind"`       // the action, as counted in Report.Faults
	Target  string   `json:"target,omitempty"`
	Detail  string   `json:"detail,omitempty"`
}

// Duration is a time.Duration written in JSON as a number of milliseconds
// (fractions down to the microsecond), in a field whose name ends in _ms;
// it reads that, or a Go duration string ("1m30s") as schema 1 wrote it.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// Seconds returns d in seconds.
func (d Duration) Seconds() float64 { return time.Duration(d).Seconds() }

// Milliseconds returns d in milliseconds, rounded to the microsecond.
func (d Duration) Milliseconds() float64 {
	return float64(time.Duration(d).Round(time.Microsecond)) / float64(time.Millisecond)
}

// MarshalJSON writes d as milliseconds.
func (d Duration) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, d.Milliseconds(), 'f', -1, 64), nil
}

// UnmarshalJSON reads milliseconds, or a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("reports: duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var ms float64
	if err := json.Unmarshal(b, &ms); err != nil {
		return fmt.Errorf("reports: duration %s: want milliseconds (a number) or a string like \"1m30s\"", b)
	}
	*d = Duration(math.Round(ms * float64(time.Millisecond)))
	return nil
}

// ExitCode is the process exit code for the report: the verdict's
// (0 valid, 1 invalid, 2 unknown), and 2 when the harness failed.
func (r *Report) ExitCode() int {
	if r.Ended == EndError && r.Verdict != check.Invalid {
		return 2
	}
	return r.Verdict.ExitCode()
}
