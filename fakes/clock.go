package fakes

import (
	"sync"
	"sync/atomic"
	"time"
)

// RealClock returns the wall clock.
func RealClock() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// ManualClock stands still until told to move: for tests that expire tokens
// and keys exactly. In-flight intervals measured on it have zero length
// unless the test advances it.
type ManualClock struct {
	mu sync.Mutex
	t  time.Time
}

// NewManualClock returns a clock reading start.
func NewManualClock(start time.Time) *ManualClock { return &ManualClock{t: start} }

func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d (backwards when d < 0).
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Set moves the clock to t.
func (c *ManualClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// OffsetClock is real time plus an offset that only grows: timestamps move
// with real time (so in-flight intervals mean something) and the harness can
// jump forward (to expire client tokens and idempotency keys) without ever
// making time run backwards.
type OffsetClock struct {
	offset atomic.Int64 // nanoseconds
}

// NewOffsetClock returns a clock reading real time (offset 0).
func NewOffsetClock() *OffsetClock { return &OffsetClock{} }

func (c *OffsetClock) Now() time.Time {
	return time.Now().Add(time.Duration(c.offset.Load()))
}

// Advance jumps the clock forward by d; d <= 0 is ignored (monotonic).
func (c *OffsetClock) Advance(d time.Duration) {
	if d > 0 {
		c.offset.Add(int64(d))
	}
}

// Offset reports how far the clock is ahead of real time.
func (c *OffsetClock) Offset() time.Duration { return time.Duration(c.offset.Load()) }
