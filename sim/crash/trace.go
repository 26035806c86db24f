package crash

import (
	"context"
	"net/http"
	"strings"
	"unicode"

	"github.com/jackc/pgx/v5"
)

// Tracer returns a pgx.QueryTracer to install on worker's pool
// (ConnConfig.Tracer): every statement becomes a point.
func (g *Gate) Tracer(worker string) pgx.QueryTracer {
	return &tracer{g: g, worker: worker}
}

type tracer struct {
	g      *Gate
	worker string
	actor  bool // take the name from the ctx (WithActor); never park
}

type actorKey struct{}

// WithActor names who runs the statements sent with ctx on a pool traced by
// ActorTracer, e.g. "api:user1".
func WithActor(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, actorKey{}, name)
}

// ActorTracer returns a tracer for a pool shared by many actors, such as the
// API's: each statement's point belongs to the actor named in its ctx
// (fallback when none). Its points can crash or run OnPoint actions, but
// never park in scheduled mode: the scenario that sends a request waits for
// it, so parking it would deadlock the scenario.
func (g *Gate) ActorTracer(fallback string) pgx.QueryTracer {
	return &tracer{g: g, worker: fallback, actor: true}
}

// TraceQueryStart blocks before the statement goes out; pgx offers no way to
// fail a query from a tracer, and none is needed: a crashed worker's links
// are severed, so whatever it sends after Close fails.
func (t *tracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	t.pass(ctx, StatementPoint(d.SQL))
	return ctx
}

func (t *tracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TraceBatchStart makes each statement of a batch a point, in order, all
// before the batch goes out: a crash "at" one of them sends none, and a
// rule "after" one of them fires at the worker's next point. (Package work
// claims with one batch: begin, set_config, the claiming delete, savepoint.)
func (t *tracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	if d.Batch == nil {
		return ctx
	}
	for _, q := range d.Batch.QueuedQueries {
		t.pass(ctx, StatementPoint(q.SQL))
	}
	return ctx
}

// pass is one point: the worker's own, or the ctx's actor's (never parked).
func (t *tracer) pass(ctx context.Context, point string) {
	if !t.actor {
		_ = t.g.Point(ctx, t.worker, point)
		return
	}
	name, _ := ctx.Value(actorKey{}).(string)
	if name == "" {
		name = t.worker
	}
	_ = t.g.point(ctx, name, point, false)
}

func (t *tracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (t *tracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// StatementPoint names the point of a SQL statement: "sql:" and its verb,
// with the table for insert, update and delete.
func StatementPoint(sql string) string {
	f := strings.Fields(strings.ToLower(stripComments(sql)))
	if len(f) == 0 {
		return "sql:"
	}
	verb := strings.TrimRight(f[0], ";")
	table := ""
	switch verb {
	case "insert", "delete":
		if len(f) > 2 { // insert into T / delete from T
			table = f[2]
		}
	case "update":
		if len(f) > 1 {
			table = f[1]
		}
	case "with":
		verb = "with"
	}
	if table != "" {
		return "sql:" + verb + " " + strings.Trim(table, `"();`)
	}
	return "sql:" + verb
}

func stripComments(s string) string {
	for {
		s = strings.TrimSpace(s)
		switch {
		case strings.HasPrefix(s, "--"):
			i := strings.IndexByte(s, '\n')
			if i < 0 {
				return ""
			}
			s = s[i+1:]
		case strings.HasPrefix(s, "/*"):
			i := strings.Index(s, "*/")
			if i < 0 {
				return ""
			}
			s = s[i+2:]
		default:
			return s
		}
	}
}

// Transport returns an http.RoundTripper for worker's client of service:
// a point before each request and one (":done") after its response arrived.
// base zero: http.DefaultTransport's behaviour via a fresh http.Transport.
func (g *Gate) Transport(worker, service string, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport.(*http.Transport).Clone()
	}
	return &transport{g: g, worker: worker, service: service, base: base}
}

type transport struct {
	g               *Gate
	worker, service string
	base            http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	p := CallPoint(t.service, req)
	if err := t.g.Point(req.Context(), t.worker, p); err != nil {
		return nil, err
	}
	resp, err := t.base.RoundTrip(req)
	if perr := t.g.Point(req.Context(), t.worker, p+":done"); perr != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return nil, perr
	}
	return resp, err
}

// CallPoint names the point of a provider call: "<service>:<METHOD> <path>"
// with id-like path segments replaced by "*".
func CallPoint(service string, req *http.Request) string {
	segs := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	for i, s := range segs {
		if i > 0 && idLike(s) {
			segs[i] = "*"
		}
	}
	return service + ":" + req.Method + " /" + strings.Join(segs, "/")
}

func idLike(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool {
		return unicode.IsDigit(r) || r == '-' || r == '_' || r == ':' || r == '.'
	}) >= 0
}

// CloseIdle closes idle connections of the transport's base, so a severed
// link's pooled connections are not reused by a new incarnation.
func (t *transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
