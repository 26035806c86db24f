package soak

import (
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"

	"github.com/workproof/workproof/reports"
)

// footprint fills s with this process's goroutines, live heap, resident set
// and open descriptors. RSS and descriptors come from /proc (Linux); what
// cannot be read is -1, never a guess.
func footprint(s *reports.Sample) {
	s.Goroutines = runtime.NumGoroutine()
	// The heap marked live by the last GC: a trend of it is a leak, where
	// the allocated heap also swings with the garbage between two GCs.
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(live)
	s.HeapBytes = -1
	if live[0].Value.Kind() == metrics.KindUint64 {
		s.HeapBytes = int64(live[0].Value.Uint64())
	}
	s.RSSBytes, s.OpenFDs = -1, -1
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		// statm: size resident shared … in pages.
		if f := strings.Fields(string(b)); len(f) > 1 {
			if pages, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				s.RSSBytes = pages * int64(os.Getpagesize())
			}
		}
	}
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		s.OpenFDs = len(ents) - 1 // ReadDir's own descriptor is among them
	}
}
