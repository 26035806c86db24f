package fakes

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time (user + system) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Requests per second per fake, with 1 and 8 concurrent clients, each
// client its own worker (own connection pool), over real loopback HTTP with
// the full ledger on. The workload is create-or-replay: every key is used
// four times, one effect then three replays (email, which has no keys,
// sends every time). Run:
//
//	go test -run '^$' -bench . -benchtime 3s ./fakes
func BenchmarkCreateOrReplay(b *testing.B) {
	type op func(ctx context.Context, c clients, key string) error
	ops := []struct {
		name string
		op   op
	}{
		{"cloud", func(ctx context.Context, c clients, key string) error {
			_, err := c.cloud.CreateVM(ctx, CreateVMRequest{Owner: "i-" + key, Size: "small", Region: "eu-1", ClientToken: key})
			return err
		}},
		{"billing", func(ctx context.Context, c clients, key string) error {
			_, err := c.billing.CreateCharge(ctx, ChargeRequest{Customer: "cus", Owner: "i-" + key, Amount: 100, Event: "create:" + key, IdempotencyKey: key})
			return err
		}},
		{"kube", func(ctx context.Context, c clients, key string) error {
			_, err := c.kube.Apply(ctx, Deployment{Name: "d-" + key, Owner: "i-" + key, Size: "small", Replicas: 1})
			return err
		}},
		{"email", func(ctx context.Context, c clients, key string) error {
			_, err := c.email.Send(ctx, EmailRequest{To: "a@example.com", Owner: "i-" + key, Event: "welcome:" + key})
			return err
		}},
	}
	for _, o := range ops {
		for _, n := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/clients=%d", o.name, n), func(b *testing.B) {
				w := world(b, Options{Clock: NewOffsetClock()})
				ctx := ctxT(b)
				cs := make([]clients, n)
				for i := range cs {
					cs[i] = clientsFor(w, fmt.Sprintf("w%d", i))
				}
				var next atomic.Int64
				var failed atomic.Pointer[error]
				var wg sync.WaitGroup
				cpu0 := cpuTime()
				b.ResetTimer()
				for g := range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for j := 0; ; j++ {
							if next.Add(1) > int64(b.N) {
								return
							}
							key := fmt.Sprintf("k%d-%d", g, j/4)
							if err := o.op(ctx, cs[g], key); err != nil {
								failed.CompareAndSwap(nil, &err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				if p := failed.Load(); p != nil {
					b.Fatal(*p)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
				// CPU per request (client and server both in this process)
				// holds up when other processes share the cores.
				b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/req")
				var conns int64
				for _, s := range []*server{w.Cloud().server, w.Billing().server, w.Kube().server, w.Email().server} {
					conns += s.newConns.Load()
				}
				b.ReportMetric(float64(conns), "conns")
			})
		}
	}
}

// The fakes' own cost per request, without TCP or clients: the handler is
// called in-process, 1 and 8 goroutines at once. Its req/s bounds what a
// fake could serve if clients and the network were free.
func BenchmarkHandler(b *testing.B) {
	type target struct {
		name         string
		srv          func(*World) *server
		method, path string
		key          func(k string) string
		body         func(k string) string
	}
	for _, tg := range []target{
		{"cloud/CreateVM", func(w *World) *server { return w.Cloud().server }, "POST", "/vms", func(string) string { return "" },
			func(k string) string {
				return `{"owner":"i-` + k + `","size":"small","region":"eu-1","client_token":"` + k + `"}`
			}},
		{"billing/CreateCharge", func(w *World) *server { return w.Billing().server }, "POST", "/charges", func(k string) string { return k },
			func(k string) string {
				return `{"customer":"c","owner":"i-` + k + `","amount":100,"event":"e-` + k + `"}`
			}},
		{"kube/Apply", func(w *World) *server { return w.Kube().server }, "PATCH", "/deployments/d-", func(string) string { return "" },
			func(k string) string { return `{"owner":"i-` + k + `","size":"small","replicas":1}` }},
		{"email/Send", func(w *World) *server { return w.Email().server }, "POST", "/emails", func(string) string { return "" },
			func(k string) string { return `{"to":"a@b","owner":"i-` + k + `","event":"e-` + k + `"}` }},
	} {
		for _, n := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/goroutines=%d", tg.name, n), func(b *testing.B) {
				w := world(b, Options{Clock: NewOffsetClock()})
				s := tg.srv(w)
				var next atomic.Int64
				var failed atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				for g := range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for j := 0; next.Add(1) <= int64(b.N); j++ {
							k := "g" + strconv.Itoa(g) + "-" + strconv.Itoa(j/4)
							p := tg.path
							if tg.name == "kube/Apply" {
								p += k
							}
							if rw := serveRaw(s, tg.method, p, tg.key(k), tg.body(k)); rw.Code != http.StatusOK {
								failed.Add(1)
							}
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				if n := failed.Load(); n > 0 {
					b.Fatalf("%d requests failed", n)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
			})
		}
	}
}

// BenchmarkStateKept reports the live heap each kind of effect leaves in the
// fakes once World.Forget dropped its requests (B/kept): the provider state
// (VMs, charges with their idempotency records, emails, deployments) that a
// real provider keeps too, and so the part of a long soak's memory that
// grows with its traffic; and what an ended lifetime (a VM made and
// terminated, a charge, an email, of one of 8 owners the system no longer
// has) leaves once Forget was told it ended, forgetting every 100 effects
// as a soak does at each checkpoint: the latest ended lifetime of each
// owner stays, so this tends to zero as the run grows. Run:
//
//	go test -run '^$' -bench StateKept -benchtime 2000x ./fakes
func BenchmarkStateKept(b *testing.B) {
	effects := []struct {
		name  string
		do    func(ctx context.Context, c clients, id string) error
		ended func(owner string) bool // World.Forget's
	}{
		{"vm", func(ctx context.Context, c clients, id string) error {
			_, err := c.cloud.CreateVM(ctx, CreateVMRequest{Owner: id, Size: "small", Region: "eu-1", ClientToken: "tok-" + id})
			return err
		}, nil},
		{"charge", func(ctx context.Context, c clients, id string) error {
			_, err := c.billing.CreateCharge(ctx, ChargeRequest{Customer: "cus", Owner: id, Amount: 100, Event: "provision:" + id + ":g1", IdempotencyKey: "key-" + id})
			return err
		}, nil},
		{"email", func(ctx context.Context, c clients, id string) error {
			_, err := c.email.Send(ctx, EmailRequest{To: "a@example.com", Owner: id, Event: "provision:" + id + ":g1"})
			return err
		}, nil},
		{"deployment", func(ctx context.Context, c clients, id string) error {
			_, err := c.kube.Apply(ctx, Deployment{Name: "d-" + id, Owner: id, Size: "small", Replicas: 1})
			return err
		}, nil},
		{"ended-lifetime", func(ctx context.Context, c clients, id string) error {
			// Lifetimes of a few owners, as a soak's traffic runs on a
			// bounded set of instance ids; every lifetime its own keys.
			n, _ := strconv.Atoi(strings.TrimPrefix(id, "i"))
			owner := "o" + strconv.Itoa(n%8)
			vm, err := c.cloud.CreateVM(ctx, CreateVMRequest{Owner: owner, Size: "small", Region: "eu-1", ClientToken: "tok-" + id})
			if err == nil {
				_, err = c.cloud.TerminateVM(ctx, vm.ID)
			}
			if err == nil {
				_, err = c.billing.CreateCharge(ctx, ChargeRequest{Customer: "cus", Owner: owner, Amount: 100, Event: "provision:" + id + ":g1", IdempotencyKey: "key-" + id})
			}
			if err == nil {
				_, err = c.email.Send(ctx, EmailRequest{To: "a@example.com", Owner: owner, Event: "welcome:" + id + ":g1"})
			}
			return err
		}, func(string) bool { return true }},
	}
	// As a soak forgets at each checkpoint: what an ended lifetime leaves
	// is then the maps' and slices' room for one window, not its state.
	const forgetEvery = 100
	live := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	for _, e := range effects {
		b.Run(e.name, func(b *testing.B) {
			w := world(b, Options{})
			c := clientsFor(w, "w1")
			ctx := ctxT(b)
			// One effect first, so that connections and lazily built
			// tables are not counted as state.
			if err := e.do(ctx, c, "warm"); err != nil {
				b.Fatal(err)
			}
			w.Forget(w.Snapshot(), e.ended)
			before := live()
			b.ResetTimer()
			for i := range b.N {
				if err := e.do(ctx, c, "i"+strconv.Itoa(i)); err != nil {
					b.Fatal(err)
				}
				if i%forgetEvery == forgetEvery-1 {
					w.Forget(w.Snapshot(), e.ended)
				}
			}
			b.StopTimer()
			w.Forget(w.Snapshot(), e.ended)
			b.ReportMetric(float64(int64(live())-int64(before))/float64(b.N), "B/kept")
		})
	}
}
