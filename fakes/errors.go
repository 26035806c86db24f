package fakes

import (
	"errors"
	"fmt"
)

// Error codes the fakes answer with (Error.Code). They follow the provider
// each fake is modelled on, so worker code reads like code written against
// the real thing.
const (
	// Any service.
	CodeInvalidRequest  = "invalid_request"   // 400: malformed JSON, unknown fields, missing or bad fields
	CodeTooLarge        = "request_too_large" // 413: body over the server's limit
	CodeUnknownEndpoint = "unknown_endpoint"  // 404: no such route
	CodeUnavailable     = "service_unavailable"
	CodeThrottled       = "throttled"
	CodeInternal        = "internal_error"
	CodeDeployedBug     = "deployed_bug" // the default code of an intransient fault
	CodeShuttingDown    = "shutting_down"

	// Cloud (EC2).
	CodeIdempotentParameterMismatch = "IdempotentParameterMismatch" // 400
	CodeInstanceNotFound            = "InvalidInstanceID.NotFound"  // 404
	CodeIncorrectInstanceState      = "IncorrectInstanceState"      // 409: resize of a terminated VM

	// Billing (Stripe).
	CodeIdempotencyError      = "idempotency_error"       // 400: key reused with other parameters
	CodeIdempotencyKeyInUse   = "idempotency_key_in_use"  // 409: a request with the key is in flight
	CodeResourceMissing       = "resource_missing"        // 404
	CodeChargeAlreadyRefunded = "charge_already_refunded" // 400

	// Kubernetes.
	CodeAlreadyExists = "AlreadyExists" // 409 on create
	CodeConflict      = "Conflict"      // 409: stale resourceVersion
	CodeNotFound      = "NotFound"      // 404
	CodeInvalid       = "Invalid"       // 422
)

// Error is a status a fake answered with.
type Error struct {
	Service  string // "cloud", "billing", "kube", "email"
	Endpoint string // e.g. "CreateVM"
	Status   int    // HTTP status
	Code     string // see the Code constants
	Message  string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s %s: %d %s: %s", e.Service, e.Endpoint, e.Status, e.Code, e.Message)
}

// TransportError is a call that got no complete answer: the connection was
// refused, reset or dropped, the response was cut, or the call timed out.
type TransportError struct {
	Service  string
	Endpoint string
	// Sent is true once the request was fully written: from then on the
	// service may have acted on it.
	Sent bool
	// Canceled is true when the caller's own ctx ended the call (as opposed
	// to the client's Timeout or the network): not a provider property, so
	// not transient — but still ambiguous when Sent.
	Canceled bool
	// Timeout is true when the client's Timeout (or the HTTP client's)
	// expired.
	Timeout bool
	Err     error
}

func (e *TransportError) Error() string {
	what := "not sent"
	if e.Sent {
		what = "sent, outcome unknown"
	}
	return fmt.Sprintf("%s %s: transport (%s): %v", e.Service, e.Endpoint, what, e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

// IsTransient reports whether retrying the same call (with the same key)
// may succeed: 408, 429, 5xx, timeouts and connection errors. A call the
// caller's own ctx cancelled is not transient.
func IsTransient(err error) bool {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Status == 408 || e.Status == 429 || e.Status >= 500
	}
	if e, ok := errors.AsType[*TransportError](err); ok {
		return !e.Canceled
	}
	return false
}

// IsIntransient reports whether the service rejected the call in a way no
// retry will fix until something changes (a fix is deployed, the caller's
// code is corrected): a 4xx other than 404, 408, 409 and 429. Mismatches
// are intransient.
func IsIntransient(err error) bool {
	e, ok := errors.AsType[*Error](err)
	if !ok {
		return false
	}
	switch e.Status {
	case 404, 408, 409, 429:
		return false
	}
	return e.Status >= 400 && e.Status < 500
}

// IsConflict reports a 409: AlreadyExists, a stale resourceVersion, a
// concurrent request with the same idempotency key, or a VM in the wrong
// state.
func IsConflict(err error) bool {
	e, ok := errors.AsType[*Error](err)
	return ok && e.Status == 409
}

// IsNotFound reports a 404 (for the cloud, also a VM still invisible
// because of read-after-write lag).
func IsNotFound(err error) bool {
	e, ok := errors.AsType[*Error](err)
	return ok && e.Status == 404
}

// IsMismatch reports an idempotency key (or client token) reused with
// different parameters.
func IsMismatch(err error) bool {
	e, ok := errors.AsType[*Error](err)
	return ok && (e.Code == CodeIdempotentParameterMismatch || e.Code == CodeIdempotencyError)
}

// IsAmbiguous reports whether the call may have taken effect although it
// failed: any 5xx, and a transport error after the request was sent
// (dropped connection, cut response, timeout).
func IsAmbiguous(err error) bool {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Status >= 500
	}
	if e, ok := errors.AsType[*TransportError](err); ok {
		return e.Sent
	}
	return false
}
