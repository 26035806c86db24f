package work

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	const min, max = 100 * time.Millisecond, 30 * time.Second
	for _, tc := range []struct {
		attempts int
		u        float64
		want     time.Duration
	}{
		{0, 0, 50 * time.Millisecond},
		{0, 0.5, 75 * time.Millisecond},
		{1, 0, 100 * time.Millisecond},
		{3, 0, 400 * time.Millisecond},
		{8, 0, 12800 * time.Millisecond},
		{9, 0, 15 * time.Second}, // 51.2s capped to 30s
		{9, 0.999999999, 30 * time.Second},
		{62, 0, 15 * time.Second},
		{63, 0, 15 * time.Second},
		{1000, 0, 15 * time.Second},
		{-1, 0, 50 * time.Millisecond},
	} {
		got := backoffDelay(tc.attempts, min, max, tc.u)
		if d := got - tc.want; d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("backoffDelay(%d, u=%v) = %v, want %v", tc.attempts, tc.u, got, tc.want)
		}
	}
}

func TestBackoffSeeded(t *testing.T) {
	draw := func() []time.Duration {
		b := backoff{min: time.Millisecond, max: time.Second, j: &jitter{rand: rand.New(rand.NewPCG(7, 8))}}
		var out []time.Duration
		for a := range 12 {
			d := b.delay(a)
			lo := backoffDelay(a, b.min, b.max, 0)
			hi := backoffDelay(a, b.min, b.max, 1)
			if d < lo || d > hi {
				t.Errorf("delay(%d) = %v, outside [%v, %v]", a, d, lo, hi)
			}
			out = append(out, d)
		}
		return out
	}
	a, b := draw(), draw()
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed, different delays: %v vs %v", a, b)
		}
	}
}
