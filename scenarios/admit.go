package scenarios

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Priorities of admission: a waiter of a higher one goes first, so that the
// examples that take longest start first and the slowest of a gate does not
// start last.
const (
	prioShort     = 0 // explore's experiments, and drawn programs that do not waitsOut
	prioMaybeLong = 1 // the named scenarios not marked Long
	// prioLong: the named scenarios marked Long, and the drawn programs
	// with a fault after which the system may wait out a bound
	// (Program.waitsOut). (Putting the other named scenarios here too made
	// the gate slower: they then crowd out the long drawn programs.)
	prioLong = 2
)

// Admission by load: the cores' busy share is sampled at most once per
// loadWindow, one example starts at most every admitGap, and none while the
// last sample was at or above busyTarget (unless fewer than the floor run).
const (
	loadWindow = 100 * time.Millisecond // /proc/stat counts 10ms ticks: 20 per window on 2 cores
	admitGap   = 40 * time.Millisecond  // an example's start-up shows in the next sample, not at once
	admitPoll  = 20 * time.Millisecond
	busyTarget = 0.9
)

// admission bounds how many examples of a Run (or Verify) run at once, over
// all its families.
//
// With Options.Parallel set it is a plain semaphore of that many. Without,
// it admits by the machine's load: examples mostly wait (a fence, a
// takeover, a backoff), so a fixed count leaves the cores idle while they
// do, and overloads them when many start or check at once, which stretches
// every run's own deadlines (a loaded machine must make a gate slower, never
// wrong). It then admits up to floor examples at once, and more, up to max,
// while the cores keep up: see the constants above. Where the load cannot be
// read (no /proc/stat) the bound is floor.
type admission struct {
	max, floor int
	// load reads the cores' busy and total time, in any unit; nil: a fixed
	// bound of max.
	load func() (busy, total uint64, ok bool)
	now  func() time.Time

	mu        sync.Mutex
	inflight  int
	waiting   [prioLong + 1]int // waiters by priority
	lastAdmit time.Time
	sampled   time.Time
	busy      uint64
	total     uint64
	share     float64       // busy share over the last window; -1: none yet
	changed   chan struct{} // a release happened (capacity 1: a hint, not a count)
}

func fixedAdmission(n int) *admission {
	return &admission{max: n, floor: n, now: time.Now, share: -1, changed: make(chan struct{}, 1)}
}

// loadAdmission admits by the machine's load, between floor and max at once.
func loadAdmission(floor, max int) *admission {
	a := fixedAdmission(max)
	a.floor = floor
	if _, _, ok := procStat(); ok {
		a.load = procStat
	} else {
		a.max = floor
	}
	return a
}

// acquire waits for admission at prio; it returns the release, or false when
// ctx ended first.
func (a *admission) acquire(ctx context.Context, prio int) (func(), bool) {
	a.mu.Lock()
	a.waiting[prio]++
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.waiting[prio]--
		a.mu.Unlock()
	}()
	for {
		if a.tryAdmit(prio) {
			var once sync.Once
			return func() { once.Do(a.release) }, true
		}
		t := time.NewTimer(admitPoll)
		select {
		case <-a.changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, false
		}
		t.Stop()
	}
}

func (a *admission) release() {
	a.mu.Lock()
	a.inflight--
	a.mu.Unlock()
	select {
	case a.changed <- struct{}{}:
	default:
	}
}

func (a *admission) tryAdmit(prio int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, n := range a.waiting[prio+1:] {
		if n > 0 {
			return false
		}
	}
	if a.inflight >= a.max {
		return false
	}
	if a.inflight >= a.floor && a.load != nil {
		now := a.now()
		if now.Sub(a.lastAdmit) < admitGap {
			return false
		}
		a.sample(now)
		if a.share < 0 || a.share >= busyTarget {
			return false
		}
		a.lastAdmit = now
	}
	a.inflight++
	return true
}

// sample refreshes share when the last reading is a window old.
func (a *admission) sample(now time.Time) {
	if !a.sampled.IsZero() && now.Sub(a.sampled) < loadWindow {
		return
	}
	busy, total, ok := a.load()
	if !ok {
		return
	}
	if !a.sampled.IsZero() && total > a.total {
		a.share = float64(busy-a.busy) / float64(total-a.total)
	}
	a.sampled, a.busy, a.total = now, busy, total
}

// procStat reads the busy and total ticks of every core from /proc/stat
// (its first line: idle and iowait are the idle ones).
func procStat() (busy, total uint64, ok bool) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, false
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, false
		}
		if i >= 8 { // guest and guest_nice are counted in user and nice already
			break
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total, true
}
