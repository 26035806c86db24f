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

// ErrFenceLapsed is returned by Tx.Fence (as a transient error) when the
// claim's fence may have ended before the new end would be written: another
// item of the key may have been claimed in the gap, and an effect started
// now could overtake it.
var ErrFenceLapsed = errors.New("work: the fence may have lapsed before it could be extended")

// ErrFenceLate is returned by Tx.FenceCall (as a transient error) when the
// fence was confirmed later than the end it was written for allows.
var ErrFenceLate = errors.New("work: the fence was confirmed too late for the call")

// fenceSQL sets or extends this claim's fence on a key, in a statement of
// its own on the pool (committed at once, whatever becomes of the claim),
// and deletes the key's dead rows. Other claims' rows are never changed
// while they live: their effects may still land. It writes nothing, and
// returns no row, once the claiming transaction ($5) is over: the claim is
// lost (the database ended the session, or it crashed, restarted, or timed
// out idle in its transaction), and another worker may have taken the item
// over and finished it, so the key's next item may be running.
const fenceSQL = `WITH dead AS (DELETE FROM work_fence WHERE key = $1 AND claim <> $3 AND until <= now())
	INSERT INTO work_fence AS f (key, item, claim, until)
	SELECT $1, $2, $3, now() + $4 * interval '1 microsecond'
	WHERE pg_xact_status($5::xid8) = 'in progress'
	ON CONFLICT (key, claim) DO UPDATE SET until = greatest(f.until, excluded.until)
	RETURNING true`

// unfenceSQL removes this claim's fence inside the claiming transaction: it
// goes if and only if the claim commits.
const unfenceSQL = `DELETE FROM work_fence WHERE key = $1 AND claim = $2`

// shortenSQL ends this claim's fence sooner, when the claim commits: at the
// latest end an unsettled effect needs, rather than at the end that covered
// every call the handler might still have made.
const shortenSQL = `UPDATE work_fence SET until = least(until, now() + $3 * interval '1 microsecond')
	WHERE key = $1 AND claim = $2`

// fence is the state of one claim's fence.
type fence struct {
	db      *pgxpool.Pool
	timeout time.Duration // each fence statement's deadline
	item    Item
	nonce   uint64 // the runner's (see claim)
	seq     uint64 // the claim's number in its runner (see claim)
	xid     string // the claiming transaction's id (pg_current_xact_id)

	mu       sync.Mutex
	until    time.Time // the latest end asked for and confirmed; zero: no fence yet
	ended    bool      // the claim committed: nothing is fenced in its name any more
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
// longer land: end must be no earlier than the latest an effect the handler
// starts under it can start, plus the longest an external system may take
// to act on a request it received (FenceCall computes that end for the next
// call). The item itself stays claimable, since a worker taking it over
// repeats the same change.
//
// The fence is written only while the claim holds: the statement checks on
// the database that the claiming transaction is still in progress, and
// returns ErrClaimLost when it is over (the session was ended, however
// silently for the worker), since the item may have been taken over and
// finished by then and the key's next item may be running. This is the
// check CheckClaim cannot make without a round trip.
//
// The database's clock keeps the fence: end is sent as a duration from now.
// When the claim commits (done, retried or parked) its fence is removed with
// it, or after Unsettled shortened to what the unsettled effects need; when
// the claim is lost it ends by itself at end. Each claim has a fence of its
// own: a takeover's commit lifts the takeover's, never the lost claim's.
//
// A call with an end no later than the live fence's does nothing, so a
// handler can call Fence before every effect. A later end extends the
// fence, but only while the fence still holds: if it could have ended
// before the extension is written (within FenceTimeout; the handler waited
// past it), another item of the key may have been claimed meanwhile, and
// Fence returns ErrFenceLapsed. An error (the database did not confirm the
// fence) means the handler must not act: it is transient. A Tx not made by
// a Runner has no item to fence, and Fence does nothing; nor does it once
// the claim has committed (in an AfterCommit hook), as CheckClaim: an
// effect after the commit is outside the claim, and the key's next item
// may be running already.
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
	if f.ended || !end.After(f.until) {
		return nil
	}
	// The statement lands within f.timeout of now or fails: the fence it
	// extends must outlast that.
	if !f.until.IsZero() && !time.Now().Add(f.timeout).Before(f.until) {
		return Transient(fmt.Errorf("work: fence %q: %w", f.item.Key, ErrFenceLapsed))
	}
	fctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	err := f.db.QueryRow(fctx, fenceSQL, f.item.Key, f.item.ID, f.claim(), time.Until(end).Microseconds(), f.xid).Scan(nil)
	if errors.Is(err, pgx.ErrNoRows) {
		return Transient(fmt.Errorf("work: fence %q: %w: its transaction is over", f.item.Key, ErrClaimLost))
	}
	if err != nil {
		return Transient(fmt.Errorf("work: fence %q: %w", f.item.Key, err))
	}
	f.until = end
	return nil
}

// FenceCall fences the key (Fence) before one call to an external system
// that the handler starts as soon as FenceCall returns nil: until effect
// after the latest that call can start. That is when this fence is
// confirmed, at most the runner's FenceTimeout from now, or ctx's deadline if
// sooner (a handler starts no call after it); effect is the longest the
// external system may take to act on a request it was sent. So a lost
// claim holds the key's next item for as long as its last call can still
// land, not for the rest of its handler's deadline.
//
// A fence confirmed after that latest start returns ErrFenceLate, as a
// transient error: the call must not be made.
func (tx *Tx) FenceCall(ctx context.Context, effect time.Duration) error {
	f := tx.fence
	if f == nil {
		return nil
	}
	f.mu.Lock()
	ended := f.ended
	f.mu.Unlock()
	if ended {
		return nil
	}
	last := time.Now().Add(f.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(last) {
		last = d
	}
	if err := tx.Fence(ctx, last.Add(effect)); err != nil {
		return err
	}
	if time.Now().After(last) {
		return Transient(fmt.Errorf("work: fence %q: %w", f.item.Key, ErrFenceLate))
	}
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

// claim names this claim uniquely across runners, in the fences it owns.
// (Made when a fence statement needs it: most claims take no fence.)
func (f *fence) claim() string { return fmt.Sprintf("%016x-%d", f.nonce, f.seq) }

// held reports whether this claim has written a fence (which its commit
// must remove or shorten).
func (f *fence) held() bool {
	if f == nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.until.IsZero()
}

// end marks the claim committed (see Fence).
func (f *fence) end() {
	f.mu.Lock()
	f.ended = true
	f.mu.Unlock()
}

// release ends this claim's fence inside the claiming transaction before it
// commits: at once when every effect settled, else at the latest end an
// unsettled one needs.
func (f *fence) release(ctx context.Context, tx pgx.Tx) error {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	set, by := !f.until.IsZero(), f.settleBy
	f.mu.Unlock()
	if !set {
		return nil
	}
	var err error
	if by.IsZero() {
		_, err = tx.Exec(ctx, unfenceSQL, f.item.Key, f.claim())
	} else {
		_, err = tx.Exec(ctx, shortenSQL, f.item.Key, f.claim(), max(0, time.Until(by).Microseconds()))
	}
	if err != nil {
		return fmt.Errorf("work: unfence %q: %w", f.item.Key, err)
	}
	return nil
}
