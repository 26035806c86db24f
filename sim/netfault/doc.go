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
//   - fault.go: the fault types; toxics.go: how they act (one switch per
//     direction in every proxy, set through the Link's control; no toxic
//     is ever added to a live proxy), and why.
//
// # Determinism
//
// netfault uses no randomness (toxiproxy's toxicity and jitter draw from an
// unseeded global source): a fault acts on every connection
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
//	reset              EOF (FIN) on next data     "unexpected EOF"
//	cut-after(n)       n bytes, then EOF          "unexpected EOF" (also mid-response); connect: same
//	partition          open: EOF; dial refused    open: "unexpected EOF"; connect: "connection refused"
//	sever              as partition, for good     COMMIT: "conn closed" (pgconn.ErrConnClosed); the server
//	                                              rolls the transaction back
//
// net/http: blackhole → context deadline exceeded; reset → EOF; cut-after
// inside the body → unexpected EOF, inside the status line → "malformed
// HTTP status code"; upstream cut → EOF; partition → "connection refused".
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
//   - toxiproxy's own toxics, added and removed on a live proxy, can hang a
//     fault switch forever, panic, or leak goroutines when a connection's
//     peer goes away mid-stream (toxics.go says how). netfault adds its
//     switches before a proxy starts and never touches its toxics again, and
//     every chain ends when the Link retires the proxy (Partition, Sever,
//     Close), so a test's goleak check sees nothing. A connection whose peer
//     went away while data was in flight to it keeps two goroutines until
//     then.
//   - No RST: toxiproxy closes with RST (SO_LINGER 0) only connections whose
//     chain held its reset_peer toxic when they started, so every close
//     netfault causes is a FIN.
//   - Global state: New silences the global github.com/rs/zerolog/log Logger
//     (toxiproxy's bandwidth toxic writes there) and registers netfault's
//     switch in toxiproxy's toxic registry, once per process.
package netfault
