// Package netfault puts breakable network links between the harness's
// workers and their upstreams (Postgres and the fake cloud, billing,
// Kubernetes and email servers), using an in-process toxiproxy v2.12.0: no
// binary, no HTTP API, nothing written to the test's output.
//
// # Map
//
//   - Network (New, Close): one toxiproxy server. Safe for concurrent use.
//   - Link (Network.Link): one proxy, "127.0.0.1:port" → one upstream, with a
//     unique name; the harness makes one per worker incarnation and upstream
//     ("w1.2/postgres"). Addr never changes, also across Partition and Heal.
//   - Faults, applied with Link.Apply and lifted with Link.Remove or
//     Link.Heal: Latency, Blackhole, Reset, CutAfter (each with a Direction,
//     Downstream = server→client by default) and Partition. Each has a stable
//     String ("latency(200ms,down)", "blackhole(up)", "reset(down)",
//     "cut-after(120B,up)", "partition") for histories and reports.
//   - Link.Sever: a crash of the owning incarnation; the link is gone for good
//     (ErrSevered).
//   - fault.go: the fault types; toxics.go: netfault's own toxics (every
//     chain ends in one whose send can be interrupted, so no fault switch
//     hangs on a connection whose peer went away, and none leaks), and why
//     toxiproxy's are not enough.
//
// # Determinism
//
// toxiproxy's toxicity and jitter draw from an unseeded global random
// source, so netfault never uses them: a fault acts on every connection
// through the link, on connections already open as well as new ones, until
// it is removed. Scenarios switch faults on and off as whole steps chosen by
// their own seeded draws.
//
// A fault's identity on a link is its kind and direction: applying
// latency(200ms,down) while latency(50ms,down) is active replaces it, while
// latency(50ms,up) is a separate fault.
//
// # What a client sees
//
// Observed on loopback with Go's net package, pgx v5.13.0 (no pool) and
// net/http (keep-alive), and exercised by this package's tests:
//
//	fault              raw TCP                    pgx
//	latency(d)         data ≥ d late              query ≥ d slower
//	blackhole          hangs to the deadline      "timeout: context deadline exceeded" (pgconn.Timeout),
//	                                              conn closed; a new connect hangs to its timeout too
//	heal of blackhole  EOF on every connection    next query: "unexpected EOF" or "connection reset by peer"
//	reset              open conn: EOF (FIN);      open conn: "unexpected EOF";
//	                   new conn: ECONNRESET       connect: "connection reset by peer"
//	cut-after(n)       n bytes, then EOF          "unexpected EOF" (also mid-response); connect: same
//	partition          open: EOF; dial refused    open: "unexpected EOF"; connect: "connection refused"
//	sever              as partition, for good     COMMIT: "conn closed" (pgconn.ErrConnClosed); the server
//	                                              rolls the transaction back
//
// net/http: blackhole → context deadline exceeded; reset → "connection reset
// by peer"; cut-after inside the body → unexpected EOF, inside the status
// line → "malformed HTTP status code"; upstream cut → EOF; partition →
// "connection refused".
//
// pgx reports none of these as SafeToRetry: a lost connection around a
// statement leaves its outcome unknown. A query that hits its ctx deadline
// closes the pgx connection (default context watcher). Go's HTTP transport
// silently retries a request that failed on a reused connection before any
// response byte if it is idempotent, which includes any request carrying an
// Idempotency-Key header.
//
// An unreachable upstream is not refused: the proxy accepts, fails to dial
// and closes, so the client reads EOF.
//
// # toxiproxy caveats
//
//   - Leaks. In toxiproxy v2.12.0 a connection's data passes through a chain
//     of goroutines; when one stops reading (a toxic that closes, or the
//     goroutine writing to a socket that failed), the ones behind it block
//     forever as soon as more data arrives. netfault avoids every case it
//     causes: its Blackhole, Reset and CutAfter use leak-proof variants of
//     toxiproxy's toxics, and Partition, Sever and Close splice a sink onto
//     every connection before stopping the proxy (a stopped proxy is
//     replaced, never restarted). One case remains that netfault cannot
//     reach: an endpoint that closes or resets a connection while data is
//     still flowing towards it (say a client that gives up mid-response while
//     a Latency holds several chunks) leaves two goroutines blocked, with
//     github.com/Shopify/toxiproxy/v2/stream.(*ChanWriter).Write and a toxic's
//     Pipe (usually toxics.(*NoopToxic).Pipe) on top of their stacks.
//   - Apply, Remove, Heal, Sever and Close pause each connection's toxic
//     chain to splice it, and wait while a connection holds data that its
//     reader is not reading.
//   - Global state: New silences the global github.com/rs/zerolog/log Logger
//     (toxiproxy's bandwidth toxic writes there) and registers netfault's
//     toxics in toxiproxy's toxic registry, once per process.
package netfault
