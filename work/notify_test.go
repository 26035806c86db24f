package work_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workproof/workproof/work"
)

// A chain of follow-ups sends one notification per NotifyEvery, not one per
// link, and still runs to its end at once: the worker that commits a
// follow-up claims it itself (polling is an hour here, so a link that
// waited for a wake-up would stall the chain past patience).
func TestFollowUpNotificationsSpaced(t *testing.T) {
	const links = 20
	for _, c := range []struct {
		name  string
		every time.Duration
		want  int // the request's notification, then the follow-ups'
	}{
		{"spaced", time.Hour, 1 + 1},
		{"every", -1, 1 + links},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			db := newDB(t)
			pool := newPool(t, db.DSN(), 4)
			ctx := context.Background()
			ln, err := pgx.Connect(ctx, db.DSN())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close(context.Background()) })
			if _, err := ln.Exec(ctx, `LISTEN `+work.Channel); err != nil {
				t.Fatal(err)
			}
			rec := &recorder{}
			opts := fastOpts(map[string]work.Handler{"link": func(ctx context.Context, tx *work.Tx, it work.Item) error {
				var n int
				if err := json.Unmarshal(it.Spec, &n); err != nil {
					return work.Intransient("bad spec", err)
				}
				if n == 0 {
					return nil
				}
				_, err := work.Enqueue(ctx, tx, work.Job{Kind: "link", Spec: n - 1})
				return err
			}}, rec, t, "runner")
			opts.PollInterval, opts.NotifyEvery = time.Hour, c.every
			start(t, pool, opts)
			enqueue(t, pool, work.Job{Kind: "link", Spec: links})
			waitFor(t, "the chain done", func() bool { return rec.count(work.OutcomeDone) == links+1 })

			got := 0
			for {
				wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				_, err := ln.WaitForNotification(wctx)
				cancel()
				if err != nil {
					break
				}
				got++
			}
			if got != c.want {
				t.Errorf("NotifyEvery %v: %d notifications for a request and %d follow-ups, want %d", c.every, got, links, c.want)
			}
		})
	}
}
