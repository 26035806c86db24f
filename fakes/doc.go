// Package fakes provides fake cloud, billing, Kubernetes and email
// providers for workproof: real HTTP servers on 127.0.0.1 that honour
// idempotency the way the real providers do, record every request and every
// effect in a ledger (the ground truth the invariant checkers read), and
// misbehave on command through fault plans. Each speaks two protocols onto
// one set of endpoints: its own small JSON API, which the package's
// standard-library clients use, and the real provider's — the EC2 Query
// API, Stripe's API, the Kubernetes API for apps/v1 Deployments — so that a
// team's aws-sdk-go-v2, stripe-go and client-go clients work unchanged
// (email has no SDK to match: JSON only). A request is recorded, faulted
// and named as a crash point by its endpoint, whichever protocol it came
// in. The package knows nothing of the harness.
//
// # Map
//
//   - api.go: the fixed contract — clients, request and resource types,
//     Snapshot and Record.
//   - client.go, errors.go: the clients' transport and methods; Error (the
//     service answered a status), TransportError (it did not answer
//     completely), and the predicates IsTransient, IsIntransient,
//     IsConflict, IsNotFound, IsMismatch, IsAmbiguous.
//   - cloud.go, billing.go, kube.go, email.go: the four servers, their
//     JSON API and the state behind every protocol.
//   - cloud_ec2.go, billing_stripe.go, kube_api.go: the real protocols in
//     front of the same state; kube_proto.go decodes the subset of
//     Kubernetes protobuf a Deployment uses (with protowire, so that
//     apimachinery stays out of every importer's build).
//   - wire.go: what the protocols share — how each writes its answers and
//     errors (a fault answers in the protocol of its request), and the
//     route that picks an endpoint from a request.
//   - services.go: Spec (a provider as the harness sees it), Endpoint, the
//     endpoint and key names (OwnerKey, SizeLabel, StripeOwner,
//     StripeEvent), Classify.
//   - server.go: what they share — lifecycle, request frame, ledger, limits.
//   - faults.go: Fault, Mode, Plan.
//   - ledger.go: pure queries on a Snapshot for checkers.
//   - world.go: Start, which starts the four servers as one World, and the
//     Server interface the four share (URL, Addr, Close, Snapshot, faults).
//   - clock.go: RealClock, ManualClock, OffsetClock.
//   - fakestest: a World closed in t.Cleanup, and clients for it.
//
// # Lifecycle
//
// Each server listens on 127.0.0.1 (an ephemeral port unless
// ServerOptions.Addr names one; non-loopback addresses are refused), like
// httptest.Server: URL, Addr (for a proxy's upstream), Close. Close drops
// requests held by latency or hang faults, closes every connection and waits
// for every handler. Start(Options) starts all four sharing one clock and
// one ledger sequence; World.Snapshot merges their ledgers.
//
// # Providers
//
// Cloud (EC2 RunInstances and ClientToken): the same token with the same
// parameters returns the same VM — also after it was terminated, while the
// token is bound; other parameters answer 400 IdempotentParameterMismatch.
// A token binds forever while its VM runs and for TokenTTL (24 h) after the
// VM was terminated, measured on the clock; then it is free and a create
// with it makes a new VM. With Lag, a new VM is invisible to DescribeVM,
// ListVMs and FindByToken (404) until Lag has passed on the clock.
// Terminated VMs stay describable. ResizeVM of a terminated VM is 409
// IncorrectInstanceState.
//
// Billing (Stripe Idempotency-Key): see BillingServer. The stored answer of
// a key is replayed byte for byte, a stored 500 included; mismatch is 400
// idempotency_error; a concurrent request is 409 idempotency_key_in_use;
// keys expire KeyTTL (24 h) after their answer was stored. A refund of a
// refunded charge is 400 charge_already_refunded.
//
// Kubernetes: Apply (server-side apply, by name, idempotent), Create (409
// AlreadyExists), Get, Update (409 Conflict on a stale resourceVersion),
// Delete (404 when absent), List by owner label, Discovery (the documents
// client-go reads first; the Kubernetes API only).
//
// # Naming a call before it is sent
//
// Spec.Classify names a request by the endpoint the server will record it
// under, before it goes out, which is how the harness names crash points.
// It reads the method, path, query and headers, and for EC2 the form
// body's Action (DescribeInstances is DescribeVM, FindByToken or ListVMs by
// its parameters) through GetBody; a body without GetBody (aws-sdk-go-v2
// sets none) is buffered and replaced by the same bytes first.
//
// Email: no idempotency; every request that reaches the server sends.
//
// # Requests and the ledger
//
// Every request is recorded (Record): caller (header X-Workproof-Caller),
// key, owner, parameters as canonical JSON, status (0 when the connection
// was dropped), whether it had an effect or was replayed, the fault that
// fired, and its in-flight interval on the clock, from arrival to answer.
// Start is taken when the request arrives, End when the answer was written;
// a request still in flight at snapshot time has a zero End. Seq orders
// requests; the servers of a World share one sequence. Bad input (malformed
// JSON, unknown fields, missing fields, bodies over 64 KiB, keys over 255
// bytes or not visible ASCII) is answered with a 4xx and a JSON error body
// {"error":{"code","message"}} (on a real protocol's route, that protocol's
// error: EC2's XML, Stripe's {"error":{"type",…}}, a metav1.Status) and
// recorded; no fault applies to it.
//
// # Faults
//
// A Plan is data (JSON round-trips) and is set, added to and cleared at
// run time. For each request the server draws, in plan order, every
// matching latency fault plus the first matching fault of another mode;
// probabilities come from a stream seeded by Plan.Seed and the service
// name, never from a global source. Latency is slept before the effect and
// holds no lock. Fail-before, intransient and down answer before any
// effect; fail-after lets the effect happen and then answers 500, drops the
// connection, or hangs until the client times out — the ambiguous case.
//
// Long soaks can set OmitReads to keep reads (describe, list, get) out of
// the ledger; mutations are always recorded.
//
// # Clocks
//
// Servers read one Clock for timestamps, TTLs and lag. OffsetClock (real
// time plus an offset that only grows) is what a run wants: intervals move
// with real time and the harness can jump a day ahead to expire keys.
// ManualClock is for exact tests; intervals on it have zero length.
// Latency and hang durations are real time, whatever the clock.
//
// # Clients
//
// Clients take a base URL (which may be a proxy), send ctx on every call
// and bound each call by ClientOptions.Timeout. An answered error is an
// *Error; anything else is a *TransportError, which says whether the
// request had been fully sent (then the outcome is unknown: IsAmbiguous).
// A call ended by the caller's own ctx is not transient.
package fakes
