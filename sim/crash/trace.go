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
	t.pass(ctx, StatementPoint(d.SQL), false)
	return ctx
}

func (t *tracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TraceBatchStart makes each statement of a batch a point, in order, all
// before the batch goes out: a crash "at" one of them sends none, and a
// rule "after" one of them fires at the worker's next point. (Package work
// claims with one batch: begin, the claiming delete, savepoint.)
func (t *tracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	if d.Batch == nil {
		return ctx
	}
	for i, q := range d.Batch.QueuedQueries {
		t.pass(ctx, StatementPoint(q.SQL), i > 0)
	}
	return ctx
}

// pass is one point: the worker's own, or the ctx's actor's (never parked).
func (t *tracer) pass(ctx context.Context, point string, batch bool) {
	if !t.actor {
		_ = t.g.point(ctx, t.worker, point, true, batch)
		return
	}
	name, _ := ctx.Value(actorKey{}).(string)
	if name == "" {
		name = t.worker
	}
	_ = t.g.point(ctx, name, point, false, batch)
}

func (t *tracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (t *tracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// StatementPoint names the point of a SQL statement by what it does:
// "sql:" and its verb, with the table it writes for insert, update and
// delete, and the first table it reads for select ("sql:select instances";
// "sql:select" for one that reads none, such as pg_notify). A statement
// that starts with WITH is named by the first statement in it that writes
// ("WITH ins AS (INSERT INTO work …) SELECT …" is "sql:insert work"), else
// as a select. Verbs without a table keep their first word ("sql:begin",
// "sql:commit", "sql:savepoint").
func StatementPoint(sql string) string {
	toks := sqlTokens(stripComments(sql))
	if len(toks) == 0 {
		return "sql:"
	}
	verb := toks[0]
	switch verb {
	case "with":
		if v, table, ok := firstWrite(toks); ok {
			return "sql:" + v + " " + table
		}
		verb = "select"
	case "insert", "update", "delete":
		if v, table, ok := firstWrite(toks); ok {
			return "sql:" + v + " " + table
		}
		return "sql:" + verb
	case "select":
	default:
		return "sql:" + verb
	}
	if table := tableAfter(toks, "from"); table != "" {
		return "sql:select " + table
	}
	return "sql:select"
}

// sqlTokens lowercases s and splits it into words and parentheses; string
// literals are dropped, so a keyword inside one is not read as SQL.
func sqlTokens(s string) []string {
	var toks []string
	var word strings.Builder
	flush := func() {
		if word.Len() > 0 {
			toks = append(toks, word.String())
			word.Reset()
		}
	}
	inString := false
	for _, r := range strings.ToLower(s) {
		switch {
		case inString:
			inString = r != '\''
		case r == '\'':
			flush()
			inString = true
		case r == '(' || r == ')' || r == ';' || r == ',':
			flush()
			if r != ',' {
				toks = append(toks, string(r))
			}
		case unicode.IsSpace(r):
			flush()
		default:
			word.WriteRune(r)
		}
	}
	flush()
	return toks
}

// firstWrite finds the first data-modifying statement among toks: INSERT
// INTO t, UPDATE t (not FOR UPDATE, DO UPDATE or NO KEY UPDATE), DELETE
// FROM t.
func firstWrite(toks []string) (verb, table string, ok bool) {
	for i, t := range toks {
		prev := ""
		if i > 0 {
			prev = toks[i-1]
		}
		switch {
		case t == "insert" && i+2 < len(toks) && toks[i+1] == "into":
			return t, tableName(toks[i+2]), true
		case t == "delete" && i+2 < len(toks) && toks[i+1] == "from":
			return t, tableName(toks[i+2]), true
		case t == "update" && i+1 < len(toks) && prev != "for" && prev != "do" && prev != "key":
			return t, tableName(toks[i+1]), true
		}
	}
	return "", "", false
}

// tableAfter returns the table named right after the first keyword kw, or
// "" when kw is followed by a subquery or nothing.
func tableAfter(toks []string, kw string) string {
	for i, t := range toks {
		if t == kw && i+1 < len(toks) && toks[i+1] != "(" {
			return tableName(toks[i+1])
		}
	}
	return ""
}

// tableName strips quotes and a schema: `"public"."work"` is "work".
func tableName(t string) string {
	t = strings.ReplaceAll(t, `"`, "")
	if i := strings.LastIndexByte(t, '.'); i >= 0 {
		t = t[i+1:]
	}
	return t
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

// Transport returns an http.RoundTripper for worker's client of a service:
// a point before each request, named by name(req) (the caller knows the
// service's endpoints, e.g. "cloud:CreateVM"), and one with ":done"
// appended after its response arrived. base zero: a clone of
// http.DefaultTransport.
func (g *Gate) Transport(worker string, name func(*http.Request) string, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport.(*http.Transport).Clone()
	}
	return &transport{g: g, worker: worker, name: name, base: base}
}

type transport struct {
	g      *Gate
	worker string
	name   func(*http.Request) string
	base   http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	p := t.name(req)
	if err := t.g.Point(req.Context(), t.worker, p); err != nil {
		return nil, err
	}
	resp, err := t.base.RoundTrip(req)
	if perr := t.g.Point(req.Context(), t.worker, p+DoneSuffix); perr != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return nil, perr
	}
	return resp, err
}

// DoneSuffix marks the point after a provider call's answer arrived.
const DoneSuffix = ":done"

// CloseIdle closes idle connections of the transport's base, so a severed
// link's pooled connections are not reused by a new incarnation.
func (t *transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
