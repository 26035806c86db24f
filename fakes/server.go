package fakes

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	pathpkg "path"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// DefaultMaxBody caps request bodies (413 above it).
	DefaultMaxBody = 64 << 10
	// MaxKeyLen caps idempotency keys, client tokens, ids and names (400
	// above it).
	MaxKeyLen = 255
)

// ServerOptions is common to the four servers.
type ServerOptions struct {
	// Clock stamps effects and in-flight intervals and drives TTLs and lag;
	// zero: real time.
	Clock Clock
	// Logger logs what the server cannot answer for (a failed write, a
	// recovered panic); zero: discard.
	Logger *slog.Logger
	// Addr is the loopback address to listen on; zero: "127.0.0.1:0".
	Addr string
	// MaxBody caps request bodies; zero: DefaultMaxBody.
	MaxBody int64
	// OmitReads leaves read-only requests (describe, list, get) out of the
	// ledger, to bound memory in long soaks; zero: every request is recorded.
	OmitReads bool
	// Faults is the initial fault plan; zero: none.
	Faults Plan

	seq *atomic.Int64 // shared with the other servers of a World; nil: own
}

// server is the machinery the four fakes share: a loopback HTTP server with
// an httptest-like lifecycle, the ledger of requests, and the fault plan.
type server struct {
	service   string
	clock     Clock
	log       *slog.Logger
	maxBody   int64
	omitReads bool
	seq       *atomic.Int64
	faults    *faultSet
	mux       *http.ServeMux
	rootH     http.Handler

	ln        net.Listener
	hs        *http.Server
	url       string
	closing   chan struct{}
	serveDone chan struct{}
	closeOnce sync.Once
	closeErr  error

	lifeMu   sync.RWMutex
	closed   bool
	inflight sync.WaitGroup

	ledgerMu sync.Mutex
	records  []*Record
	newConns atomic.Int64

	// beforeEffect, when set (tests only), is called once a request passed
	// its faults and is about to take effect.
	beforeEffect func(c *rctx)
}

// now reads the clock in UTC and without the monotonic reading, so that
// recorded times survive a JSON round trip unchanged.
func (s *server) now() time.Time { return s.clock.Now().UTC() }

func newServer(service string, o ServerOptions) (*server, error) {
	s := &server{
		service:   service,
		clock:     o.Clock,
		log:       o.Logger,
		maxBody:   o.MaxBody,
		omitReads: o.OmitReads,
		seq:       o.seq,
		faults:    newFaultSet(service),
		mux:       http.NewServeMux(),
		closing:   make(chan struct{}),
		serveDone: make(chan struct{}),
	}
	if s.clock == nil {
		s.clock = realClock{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBody
	}
	if s.seq == nil {
		s.seq = new(atomic.Int64)
	}
	if err := s.faults.set(o.Faults); err != nil {
		return nil, fmt.Errorf("%s: %w", service, err)
	}
	unknown := s.handle("unknown", false, func(c *rctx) {
		io.Copy(io.Discard, http.MaxBytesReader(c.w, c.r.Body, c.s.maxBody))
		c.reject(http.StatusNotFound, CodeUnknownEndpoint, c.r.Method+" "+c.r.URL.Path)
	})
	s.mux.HandleFunc("/", unknown)
	// ServeMux would answer a non-canonical path ("/vms/../x") with a
	// redirect; a provider API answers 404, in JSON.
	s.rootH = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; p == "" || p[0] != '/' || pathpkg.Clean(p) != p {
			unknown(w, r)
			return
		}
		s.mux.ServeHTTP(w, r)
	})
	return s, nil
}

// start listens on loopback and serves.
func (s *server) start(addr string) error {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s: listen address %q: %w", s.service, addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s: listen address %q is not a loopback IP", s.service, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: listen: %w", s.service, err)
	}
	s.ln = ln
	s.url = "http://" + ln.Addr().String()
	s.hs = &http.Server{
		Handler:           s.rootH,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.newConns.Add(1)
			}
		},
	}
	go func() {
		defer close(s.serveDone)
		if err := s.hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("fake server stopped", "service", s.service, "err", err)
		}
	}()
	return nil
}

func (s *server) root() http.Handler { return s.rootH }

// URL is the base URL, "http://127.0.0.1:port".
func (s *server) URL() string { return s.url }

// Addr is the listening address, "127.0.0.1:port" (for a proxy upstream).
func (s *server) Addr() string { return s.ln.Addr().String() }

// Close stops the server: requests held by latency or hang faults are
// dropped, open connections closed, and Close waits for every handler.
func (s *server) Close() error {
	s.closeOnce.Do(func() {
		s.lifeMu.Lock()
		s.closed = true
		s.lifeMu.Unlock()
		close(s.closing)
		s.closeErr = s.hs.Close()
		s.inflight.Wait()
		<-s.serveDone
	})
	return s.closeErr
}

// SetFaults replaces the fault plan (faults for other services are
// ignored) and reseeds its stream from p.Seed.
func (s *server) SetFaults(p Plan) error { return s.faults.set(p) }

// AddFault appends a fault to the plan (ignored when it names another
// service).
func (s *server) AddFault(f Fault) error { return s.faults.add(f) }

// ClearFaults removes every fault ("the fix was deployed", "back up").
func (s *server) ClearFaults() { s.faults.clear("") }

// ClearFault removes the faults with this ID and reports how many.
func (s *server) ClearFault(id string) int {
	if id == "" {
		return 0
	}
	return s.faults.clear(id)
}

// Faults returns the active plan, with the remaining Times of each fault.
func (s *server) Faults() Plan { return s.faults.plan() }

// requests copies the ledger; a request still in flight has a zero End.
func (s *server) requests() []Record {
	s.ledgerMu.Lock()
	defer s.ledgerMu.Unlock()
	out := make([]Record, len(s.records))
	for i, r := range s.records {
		out[i] = *r
	}
	return out
}

// forget drops the oldest records with Seq below mark, as far as they
// have ended (see World.Forget).
func (s *server) forget(mark int64) {
	s.ledgerMu.Lock()
	defer s.ledgerMu.Unlock()
	n := 0
	for n < len(s.records) && s.records[n].Seq < mark && !s.records[n].End.IsZero() {
		n++
	}
	s.records = slices.Clone(s.records[n:])
}

func (s *server) recordCount() int {
	s.ledgerMu.Lock()
	defer s.ledgerMu.Unlock()
	return len(s.records)
}

// rctx is one request on its way through the frame: decode, begin (enter the
// ledger, draw and apply faults before the effect), reply (apply faults
// after the effect, answer, close the ledger record).
type rctx struct {
	s         *server
	w         http.ResponseWriter
	r         *http.Request
	rec       Record
	slot      *Record
	dec       decision
	responded bool
	finished  bool
	proto     protocol // how answers are written: the fakes' JSON API or a real provider's protocol
}

// handle wraps an endpoint handler with the lifecycle and the safety net: a
// handler that panics or forgets to answer yields a recorded 500, and the
// server keeps serving.
func (s *server) handle(endpoint string, mutation bool, h func(*rctx)) http.HandlerFunc {
	return s.handleWith(endpoint, mutation, jsonAPI{}, h)
}

// handleWith is handle for a route that answers in protocol p.
func (s *server) handleWith(endpoint string, mutation bool, p protocol, h func(*rctx)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.lifeMu.RLock()
		if s.closed {
			s.lifeMu.RUnlock()
			w.Header().Set("Content-Type", p.contentType())
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write(p.errorBody(http.StatusServiceUnavailable, CodeShuttingDown, "server closed"))
			return
		}
		s.inflight.Add(1)
		s.lifeMu.RUnlock()
		defer s.inflight.Done()

		caller := r.Header.Get(HeaderCaller)
		if caller == "" || len(caller) > MaxKeyLen || !printable(caller) {
			caller = "anonymous"
		}
		c := &rctx{s: s, w: w, r: r, proto: p, rec: Record{
			Service:  s.service,
			Endpoint: endpoint,
			Caller:   caller,
			Mutation: mutation,
			Start:    s.now(),
		}}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("fake handler panicked", "service", s.service, "endpoint", endpoint, "panic", p)
				if !c.responded {
					c.rec.Error = fmt.Sprint("panic: ", p)
					c.reject(http.StatusInternalServerError, CodeInternal, "internal error")
				}
				return
			}
			if !c.responded {
				c.reject(http.StatusInternalServerError, CodeInternal, "handler did not answer")
			}
		}()
		h(c)
	}
}

// body reads the whole request body; an oversized or unreadable one is
// rejected (answered and recorded).
func (c *rctx) body() ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, c.s.maxBody))
	if err != nil {
		c.rejectBody(err)
		return nil, false
	}
	return b, true
}

func (c *rctx) rejectBody(err error) {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		c.reject(http.StatusRequestEntityTooLarge, CodeTooLarge,
			fmt.Sprintf("request body over %d bytes", c.s.maxBody))
		return
	}
	c.reject(http.StatusBadRequest, CodeInvalidRequest, "read body: "+err.Error())
}

// decode reads a JSON body into v, strictly: unknown fields, trailing data,
// an empty or oversized body are rejected (answered and recorded).
func (c *rctx) decode(v any) bool {
	b, ok := c.body()
	if !ok {
		return false
	}
	if len(b) == 0 {
		c.reject(http.StatusBadRequest, CodeInvalidRequest, "missing JSON body")
		return false
	}
	if err := strictUnmarshal(b, v); err != nil {
		c.reject(http.StatusBadRequest, CodeInvalidRequest, "malformed JSON: "+err.Error())
		return false
	}
	return true
}

// drain consumes a body the endpoint does not take, so that the server
// notices a client that goes away while the request is held.
func (c *rctx) drain() bool {
	n, _ := io.Copy(io.Discard, http.MaxBytesReader(c.w, c.r.Body, c.s.maxBody))
	if n > 0 {
		c.reject(http.StatusBadRequest, CodeInvalidRequest, "this endpoint takes no body")
		return false
	}
	return true
}

// params records the request parameters as canonical JSON.
func (c *rctx) params(v any) {
	if b, err := json.Marshal(v); err == nil {
		c.rec.Params = b
	}
}

func (c *rctx) recorded() bool { return c.rec.Mutation || !c.s.omitReads }

func (c *rctx) enter() {
	if c.slot != nil || !c.recorded() {
		return
	}
	c.slot = new(Record)
	c.s.ledgerMu.Lock()
	c.rec.Seq = c.s.seq.Add(1)
	*c.slot = c.rec
	c.s.records = append(c.s.records, c.slot)
	c.s.ledgerMu.Unlock()
}

// finish closes the request's ledger record; only its first call counts.
func (c *rctx) finish() {
	if c.finished {
		return
	}
	c.finished = true
	c.responded = true
	c.rec.End = c.s.now()
	if c.rec.Status != 0 && c.r.Context().Err() != nil {
		c.rec.Error = joinErr(c.rec.Error, "client gone before the answer")
	}
	if !c.recorded() {
		return
	}
	c.enter()
	c.s.ledgerMu.Lock()
	*c.slot = c.rec
	c.s.ledgerMu.Unlock()
}

// reject answers a request that never reached the effect stage (bad input,
// an idempotency conflict): no faults apply.
func (c *rctx) reject(status int, code, msg string) {
	c.rec.Status = status
	c.rec.Error = joinErr(c.rec.Error, code+": "+msg)
	c.write(status, c.proto.errorBody(status, code, msg))
	c.finish()
}

// begin enters the request into the ledger and applies the faults that act
// before the effect. It returns false when a fault answered (or dropped) the
// request: the handler must then do nothing more.
func (c *rctx) begin() bool {
	c.enter()
	c.dec = c.s.faults.decide(c.rec.Endpoint, c.rec.Owner, c.rec.Caller)
	if len(c.dec.modes) > 0 {
		c.rec.Fault = c.dec.label()
	}
	if c.dec.latency > 0 {
		t := time.NewTimer(c.dec.latency)
		select {
		case <-t.C:
		case <-c.s.closing:
			t.Stop()
			c.rec.Error = "server closed during latency"
			c.drop()
			c.finish()
			return false
		}
	}
	f := c.dec.before
	if f == nil {
		if h := c.s.beforeEffect; h != nil {
			h(c)
		}
		return true
	}
	switch {
	case f.Drop:
		c.drop()
	case f.Hang:
		c.hang(f.Latency)
	default:
		status, body, msg := faultAnswer(f, c.proto)
		c.rec.Status = status
		c.rec.Error = msg
		c.write(status, body)
	}
	c.finish()
	return false
}

// faultAnswer is the status answer of a fault, written in protocol p.
func faultAnswer(f *Fault, p protocol) (status int, body []byte, errText string) {
	status, code, msg := f.Status, f.Code, f.Message
	switch f.Mode {
	case ModeFailAfter:
		status, code, msg = or(status, 500), orS(code, CodeInternal), orS(msg, "injected failure after the effect")
	case ModeIntransient:
		status, code, msg = or(status, 422), orS(code, CodeDeployedBug), orS(msg, "a bug was deployed")
	case ModeDown:
		status, code, msg = or(status, 503), orS(code, CodeUnavailable), orS(msg, "service down")
	default:
		status = or(status, 503)
		dc := CodeUnavailable
		if status == 429 {
			dc = CodeThrottled
		}
		code, msg = orS(code, dc), orS(msg, "injected failure before the effect")
	}
	return status, p.errorBody(status, code, msg), code + ": " + msg
}

// afterAnswer is the status answer a fail-after fault will replace the
// response with, if it answers with a status (billing stores it).
func (c *rctx) afterAnswer() (status int, body []byte, ok bool) {
	f := c.dec.after
	if f == nil || f.Drop || f.Hang {
		return 0, nil, false
	}
	status, body, _ = faultAnswer(f, c.proto)
	return status, body, true
}

// reply answers a request that went through begin, with body as the
// handler's answer and effect whether the state changed; a fail-after fault
// replaces the answer.
func (c *rctx) reply(status int, body []byte, effect bool, errText string) {
	c.rec.Effect = effect
	if f := c.dec.after; f != nil {
		switch {
		case f.Drop:
			c.rec.Error = joinErr(c.rec.Error, errText)
			c.drop()
			c.finish()
			return
		case f.Hang:
			c.rec.Error = joinErr(c.rec.Error, errText)
			c.hang(f.Latency)
			c.finish()
			return
		default:
			status, body, errText = faultAnswer(f, c.proto)
		}
	}
	c.rec.Status = status
	c.rec.Error = joinErr(c.rec.Error, errText)
	c.write(status, body)
	c.finish()
}

// ok answers 200 with v.
func (c *rctx) ok(v any, effect bool) {
	c.reply(http.StatusOK, mustJSON(v), effect, "")
}

// fail answers a handler error (after begin: fail-after faults still apply).
func (c *rctx) fail(status int, code, msg string) {
	c.reply(status, c.proto.errorBody(status, code, msg), false, code+": "+msg)
}

// failWith answers an apiError (see fail).
func (c *rctx) failWith(e *apiError) { c.fail(e.status, e.code, e.msg) }

func (c *rctx) write(status int, body []byte) {
	h := c.w.Header()
	h.Set("Content-Type", c.proto.contentType())
	if c.rec.Seq != 0 {
		h.Set(HeaderSeq, strconv.FormatInt(c.rec.Seq, 10))
	}
	c.w.WriteHeader(status)
	if _, err := c.w.Write(body); err != nil {
		c.rec.Error = joinErr(c.rec.Error, "write: "+err.Error())
	}
}

// drop closes the connection without an answer.
func (c *rctx) drop() {
	c.rec.Status = 0
	c.rec.Error = joinErr(c.rec.Error, "connection dropped without an answer")
	if hj, ok := c.w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			// The ledger first: a client that saw the connection drop (and,
			// say, re-sent the request) finds this request recorded whole.
			c.finish()
			conn.Close()
			return
		}
	}
	// Not hijackable (a test recorder, HTTP/2): abort the connection from
	// the server's side after recording.
	c.finish()
	panic(http.ErrAbortHandler)
}

// hang holds the request until the client gives up, limit elapses (if set)
// or the server closes, then drops it.
func (c *rctx) hang(limit time.Duration) {
	var tc <-chan time.Time
	if limit > 0 {
		t := time.NewTimer(limit)
		defer t.Stop()
		tc = t.C
	}
	select {
	case <-c.r.Context().Done():
	case <-tc:
	case <-c.s.closing:
	}
	c.drop()
}

// ---- helpers ----------------------------------------------------------------

func errorJSON(code, msg string) []byte {
	var eb errorBody
	eb.Error.Code, eb.Error.Message = code, msg
	return mustJSON(eb)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own plain types are marshalled here.
		panic(fmt.Sprintf("fakes: marshal %T: %v", v, err))
	}
	return b
}

func strictUnmarshal(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func joinErr(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

func or(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func orS(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// printable reports whether s is printable ASCII (spaces allowed, no
// controls, nothing beyond ASCII).
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// checkKey validates an idempotency key or client token ("" is allowed:
// no idempotency).
func checkKey(what, k string) error {
	if len(k) > MaxKeyLen {
		return fmt.Errorf("%s longer than %d bytes", what, MaxKeyLen)
	}
	if !printable(k) {
		return fmt.Errorf("%s must be printable ASCII", what)
	}
	return nil
}

// checkField validates a required identifier-like field.
func checkField(what, v string) error {
	if v == "" {
		return fmt.Errorf("missing %s", what)
	}
	if len(v) > MaxKeyLen {
		return fmt.Errorf("%s longer than %d bytes", what, MaxKeyLen)
	}
	for i := 0; i < len(v); i++ {
		if v[i] < ' ' || v[i] == 0x7f {
			return fmt.Errorf("%s has control characters", what)
		}
	}
	return nil
}
