package proc_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/workproof/workproof/sim/proc"
)

func TestReadSpec(t *testing.T) {
	for _, c := range []struct{ env, want string }{
		{"", "is not set"},
		{"{", "unexpected end"},
		{`{"worker":"w1.1"}`, "no DSN"},
	} {
		t.Setenv(proc.SpecEnv, c.env)
		if _, err := proc.ReadSpec(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ReadSpec with %q = %v, want an error with %q", c.env, err, c.want)
		}
	}
	t.Setenv(proc.SpecEnv, `{"worker":"w1.1","dsn":"postgres://x@127.0.0.1:1/db","services":{"kube":"http://127.0.0.1:2"},"seed":7}`)
	s, err := proc.ReadSpec()
	if err != nil || s.Worker != "w1.1" || s.Services["kube"] != "http://127.0.0.1:2" || s.Seed != 7 {
		t.Errorf("ReadSpec = %+v, %v", s, err)
	}
}

// A child's events reach on in order, with their own times; a line that
// is not an event makes the child's end an error.
func TestStartReadsEvents(t *testing.T) {
	script := `echo '{"at":1000,"seq":1,"begin":true,"item":"7","key":"i1"}'; echo '{"at":2000,"seq":1,"outcome":"done"}'; echo garbage; echo oops >&2`
	var got []proc.Event
	c, err := proc.Start([]string{"sh", "-c", script}, proc.Spec{Worker: "w1.1", DSN: "x"}, func(e proc.Event) { got = append(got, e) }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Err(); !errors.Is(err, proc.ErrBadEvent) {
		t.Errorf("Err = %v, want ErrBadEvent", err)
	}
	if len(got) != 2 || !got[0].Begin || got[0].Item != "7" || got[1].Outcome != "done" || got[1].Time().UnixNano() != 2000 {
		t.Errorf("events %+v", got)
	}
}
