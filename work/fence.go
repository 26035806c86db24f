package work

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNoKey is returned by Tx.Fence for an item without a key: a fence is on
// a key, and an item without one has nothing to fence.
var ErrNoKey = errors.New("work: the item has no key to fence")

// fenceSQL sets or extends the fence on a key, in a statement of its own on
// the pool (committed at once, whatever becomes of the claim). A live fence
// of another claim keeps its owner and item: that claim's effects may still
// land, so only it may remove the fence early, and this one only extends it.
const fenceSQL = `INSERT INTO work_fence AS f (key, item, claim, until)
	VALUES ($1, $2, $3, now() + $4 * interval '1 microsecond')
	ON CONFLICT (key) DO UPDATE SET
		until = greatest(f.until, excluded.until),
		item  = CASE WHEN f.until > now() AND f.claim <> excluded.claim THEN f.item ELSE excluded.item END,
		claim = CASE WHEN f.until > now() AND f.claim <> excluded.claim THEN f.claim ELSE excluded.claim END
	RETURNING claim = $3`

// unfenceSQL removes a fence its claim owns, inside the claiming
// transaction: it goes if and only if the claim commits.
const unfenceSQL = `DELETE FROM work_fence WHERE key = $1 AND claim = $2`

// shortenSQL ends a fence its claim owns sooner, when the claim commits: at
// the latest end an unsettled effect needs, rather than at the end that
// covered every call the handler might still have made.
const shortenSQL = `UPDATE work_fence SET until = least(until, now() + $3 * interval '1 microsecond')
	WHERE key = $1 AND claim = $2`

// fence is the state of one claim's fence.
type fence struct {
	db      *pgxpool.Pool
	timeout time.Duration // each fence statement's deadline
	item    Item
	claim   string // unique among the claims of every runner

	mu       sync.Mutex
	until    time.Time // the latest end asked for and confirmed
	owned    bool      // this claim set the fence: it removes it on commit
	settleBy time.Time // the latest end an unsettled effect needs; zero: all settled
}

// Fence keeps every other item with this item's key from being claimed
// until end, even if this claim is lost meanwhile. It is written and
// committed at once on a connection of its own, before the handler acts.
//
// Why: a worker whose claiming session ends (terminated, restarted, cut)
// while a call to an external system is in flight cannot take the call
// back, and the item is claimable again at once. If the item is taken over
// and finished, and the key's next item (a newer change) is handled before
// the old call lands, the late call undoes the newer change. A fence makes
// the next item wait until every effect of this one has landed or can no
// longer land: end must be no earlier than the handler's deadline plus the
// longest an external system may take to act on a request it received. The
// item itself stays claimable, since a worker taking it over repeats the
// same change.
//
// The database's clock keeps the fence: end is sent as a duration from now.
// When the claim commits (done, retried or parked) the fence is removed with
// it, or after Unsettled shortened to what the unsettled effects need; when
// the claim is lost it ends by itself at end. A call with
// an end no later than an earlier call's does nothing, so a handler can call
// Fence before every effect at the cost of one round trip per item. An
// error (the database did not confirm the fence) means the handler must not
// act: it is transient. A Tx not made by a Runner has no item to fence, and
// Fence does nothing.
func (tx *Tx) Fence(ctx context.Context, end time.Time) error {
	f := tx.fence
	if f == nil {
		return nil
	}
	if f.item.Key == "" {
		return fmt.Errorf("work: fence item %d: %w", f.item.ID, ErrNoKey)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !end.After(f.until) {
		return nil
	}
	fctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	var owned bool
	if err := f.db.QueryRow(fctx, fenceSQL, f.item.Key, f.item.ID, f.claim, time.Until(end).Microseconds()).Scan(&owned); err != nil {
		return Transient(fmt.Errorf("work: fence %q: %w", f.item.Key, err))
	}
	f.until, f.owned = end, f.owned || owned
	return nil
}

// Unsettled records that an effect the handler started may still land, up
// to by: a call to an external system got no answer (it timed out, or the
// connection failed), and by is when it was sent plus the longest the
// system may take to act on it. The fence then outlives the claim's commit
// and ends at the latest such by (never later than it would have), so that
// the key's next item does not overtake that effect.
func (tx *Tx) Unsettled(by time.Time) {
	if f := tx.fence; f != nil {
		f.mu.Lock()
		if by.After(f.settleBy) {
			f.settleBy = by
		}
		f.mu.Unlock()
	}
}

// release ends the fence inside the claiming transaction before it
// commits, when this claim owns it: at once when every effect settled, else
// at the latest end an unsettled one needs.
func (f *fence) release(ctx context.Context, tx pgx.Tx) error {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	owned, by := f.owned, f.settleBy
	f.mu.Unlock()
	if !owned {
		return nil
	}
	var err error
	if by.IsZero() {
		_, err = tx.Exec(ctx, unfenceSQL, f.item.Key, f.claim)
	} else {
		_, err = tx.Exec(ctx, shortenSQL, f.item.Key, f.claim, max(0, time.Until(by).Microseconds()))
	}
	if err != nil {
		return fmt.Errorf("work: unfence %q: %w", f.item.Key, err)
	}
	return nil
}
