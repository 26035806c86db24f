package work

import (
	"math/rand/v2"
	"sync"
	"time"
)

// jitter is a Runner's random source. It is shared by every worker (and
// every Run) of the Runner, and math/rand/v2.Rand is not safe for concurrent
// use: mu guards it.
type jitter struct {
	mu   sync.Mutex
	rand *rand.Rand
}

func (j *jitter) float64() float64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.rand.Float64()
}

// backoff computes retry delays.
type backoff struct {
	min, max time.Duration
	j        *jitter
}

// delay returns the wait before the next attempt of an item that had failed
// attempts times before the failure being recorded.
func (b backoff) delay(attempts int) time.Duration {
	return backoffDelay(attempts, b.min, b.max, b.j.float64())
}

// backoffDelay is d = min(max, min·2^attempts) with "equal jitter": a
// uniform draw u in [0, 1) places the delay in [d/2, d). Half the delay is
// certain, so retries are never immediate; the other half spreads apart
// workers that failed together (a database restart).
func backoffDelay(attempts int, min, max time.Duration, u float64) time.Duration {
	if attempts < 0 {
		attempts = 0
	}
	d := max
	// min·2^attempts ≤ max without overflowing: shift max down instead.
	if attempts < 63 && min <= max>>attempts {
		d = min << attempts
	}
	if d <= 0 {
		return 0
	}
	half := d / 2
	return half + time.Duration(u*float64(d-half))
}
