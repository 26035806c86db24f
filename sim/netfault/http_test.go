package netfault

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestHTTPThroughLink shows what Go's HTTP client reports for each fault
// (the fakes' clients see the same).
func TestHTTPThroughLink(t *testing.T) {
	body := strings.Repeat("b", 10000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	upstream := strings.TrimPrefix(srv.URL, "http://")

	// One keep-alive client per link, as the fakes' clients are: the GET
	// after Apply reuses the connection opened before it, and the transport
	// retries on a new connection if that one was closed idle.
	get := func(c *http.Client, l *Link, timeout time.Duration) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+l.Addr()+"/", nil)
		if err != nil {
			return "", err
		}
		resp, err := c.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	deadline := func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }
	failed := func(err error) bool { return err != nil && !deadline(err) }

	for _, tc := range []struct {
		f     Fault
		check func(err error) bool
	}{
		{Latency{Delay: 10 * time.Millisecond}, func(err error) bool { return err == nil }},
		{Blackhole{}, deadline},
		{Blackhole{Dir: Upstream}, deadline},
		{Reset{}, isConnError},
		{Reset{Dir: Upstream}, isConnError},
		{CutAfter{Bytes: 500}, func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }},
		{CutAfter{Bytes: 10}, failed}, // "malformed HTTP status code": the status line was cut
		{CutAfter{Bytes: 10, Dir: Upstream}, isConnError},
		{Partition{}, isRefused},
	} {
		t.Run(tc.f.String(), func(t *testing.T) {
			l := newLink(t, newNetwork(t), "billing", upstream)
			tr := &http.Transport{}
			t.Cleanup(tr.CloseIdleConnections)
			c := &http.Client{Transport: tr}
			if got, err := get(c, l, stuck); err != nil || got != body {
				t.Fatalf("healthy GET: %d bytes, %v", len(got), err)
			}
			apply(t, l, tc.f)
			got, err := get(c, l, 300*time.Millisecond)
			t.Logf("GET: %d bytes, %v", len(got), err)
			if !tc.check(err) {
				t.Errorf("GET through %v: %v", tc.f, err)
			}
			heal(t, l)
			if got, err := get(c, l, stuck); err != nil || got != body {
				t.Fatalf("GET after heal: %d bytes, %v", len(got), err)
			}
		})
	}
}
