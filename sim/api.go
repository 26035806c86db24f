package sim

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/workproof/workproof/sim/history"
	"github.com/workproof/workproof/sim/netfault"
)

// apiClient is one API client's way to the database: requests of a client
// run through its own breakable link, so a fault can reach the request
// path (a crash of the request handler between two of its transactions, a
// COMMIT answer cut), as it reaches a worker's.
type apiClient struct {
	link *netfault.Link
	pool *pgxpool.Pool
}

// apiPool returns client's pool, making its link and pool on first use and
// again after CrashRequest severed them.
func (e *Env) apiPool(ctx context.Context, client string) (*pgxpool.Pool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.apis[client]; c != nil {
		return c.pool, nil
	}
	if e.closing {
		return nil, errors.New("sim: closing")
	}
	e.napis++
	l, err := e.net.Link(fmt.Sprintf("%s#%d/%s", APIActor(client), e.napis, Postgres), e.opts.Server.HostPort())
	if err != nil {
		return nil, fmt.Errorf("sim: API link of %s: %w", client, err)
	}
	pool, err := e.newPool(ctx, e.db.DSNVia(l.Addr()), "workproof-api "+client, e.apiTr)
	if err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("sim: API pool of %s: %w", client, err)
	}
	e.apis[client] = &apiClient{link: l, pool: pool}
	return pool, nil
}

// CrashRequest crashes client's request handler now, wherever it is: its
// database link is severed (Postgres rolls back what it had open), so what
// it sends next fails, and the request ends with an unknown outcome. The
// client's next request runs on a new link, as a restarted API process
// would. Aim it at a point with Gate().OnPoint(APIActor(client), …).
func (e *Env) CrashRequest(client string) {
	e.mu.Lock()
	c := e.apis[client]
	delete(e.apis, client)
	e.mu.Unlock()
	e.rec.Note(history.Event{Kind: history.EventCrash, Worker: APIActor(client), Detail: "request crashed"})
	if c == nil {
		return
	}
	if err := c.link.Sever(); err != nil {
		e.log.Warn("sim: sever API link", "client", client, "err", err)
	}
	// The pool is closed once the request in flight gave up its
	// connection; closing it now would wait for that.
	go c.pool.Close()
}

// APILinkFault applies f to client's database link (made now if the client
// has sent nothing yet), until HealLinks.
func (e *Env) APILinkFault(ctx context.Context, client string, f netfault.Fault) error {
	if _, err := e.apiPool(ctx, client); err != nil {
		return err
	}
	e.mu.Lock()
	c := e.apis[client]
	e.mu.Unlock()
	if c == nil {
		return nil
	}
	if err := c.link.Apply(f); err != nil && !errors.Is(err, netfault.ErrSevered) {
		return err
	}
	target := APIActor(client) + "/" + Postgres
	e.rec.FaultOn(target, f.String())
	e.mu.Lock()
	e.faults[target+" "+f.String()] = true
	e.apiFaulted = append(e.apiFaulted, c.link)
	e.mu.Unlock()
	return nil
}
