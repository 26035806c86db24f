package work

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestClassify(t *testing.T) {
	pg := func(code string) error { return &pgconn.PgError{Severity: "ERROR", Code: code, Message: "m"} }
	base := errors.New("boom")
	for _, tc := range []struct {
		name        string
		err         error
		intransient bool
	}{
		{"plain", base, false},
		{"transient marker", Transient(base), false},
		{"intransient marker", Intransient("bad spec", base), true},
		{"intransient nil err", Intransient("bad spec", nil), true},
		{"wrapped intransient", fmt.Errorf("ctx: %w", Intransient("r", base)), true},
		{"outermost wins: transient over intransient", Transient(Intransient("r", base)), false},
		{"outermost wins: intransient over transient", Intransient("r", Transient(base)), true},
		{"marker beats pg code", Transient(pg("23505")), false},
		{"serialization", pg("40001"), false},
		{"deadlock", pg("40P01"), false},
		{"statement timeout", fmt.Errorf("q: %w", pg("57014")), false},
		{"lock timeout", pg("55P03"), false},
		{"terminated", pg("57P01"), false},
		{"idle in tx timeout", pg("25P03"), false},
		{"connection exception", pg("08006"), false},
		{"too many connections", pg("53300"), false},
		{"io error", pg("58030"), false},
		{"unique violation", pg("23505"), true},
		{"fk violation", pg("23503"), true},
		{"syntax", pg("42601"), true},
		{"undefined table", pg("42P01"), true},
		{"division by zero", pg("22012"), true},
		{"in failed tx", pg("25P02"), true},
		{"raise", pg("P0001"), true},
		{"40002 is a constraint", pg("40002"), true},
		{"deadline", context.DeadlineExceeded, false},
		{"canceled", fmt.Errorf("x: %w", context.Canceled), false},
		{"eof", io.ErrUnexpectedEOF, false},
		{"conn closed", pgconn.ErrConnClosed, false},
		{"no handler", fmt.Errorf("%w %q", ErrNoHandler, "k"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsIntransient(tc.err); got != tc.intransient {
				t.Errorf("IsIntransient(%v) = %v, want %v", tc.err, got, tc.intransient)
			}
			if got := IsTransient(tc.err); got != !tc.intransient {
				t.Errorf("IsTransient(%v) = %v, want %v", tc.err, got, !tc.intransient)
			}
		})
	}
	if IsTransient(nil) || IsIntransient(nil) {
		t.Error("nil classified as an error")
	}
	if Transient(nil) != nil {
		t.Error("Transient(nil) != nil")
	}
	var ie *IntransientError
	if err := fmt.Errorf("w: %w", Intransient("bad spec", base)); !errors.As(err, &ie) || ie.Reason != "bad spec" || ie.Error() != "bad spec: boom" {
		t.Errorf("IntransientError not recoverable with its reason: %v", err)
	}
}

func TestCommitFailedForCertain(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{pgx.ErrTxCommitRollback, true},
		{&pgconn.PgError{Severity: "ERROR", Code: "23505"}, true},
		{&pgconn.PgError{Severity: "ERROR", Code: "40001"}, true},
		{&pgconn.PgError{Severity: "FATAL", Code: "57P01"}, false},
		{io.ErrUnexpectedEOF, false},
		{context.DeadlineExceeded, false},
		{pgconn.ErrConnClosed, false},
	} {
		if got := commitFailedForCertain(tc.err); got != tc.want {
			t.Errorf("commitFailedForCertain(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
