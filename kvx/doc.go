// Package kvx is the reference control plane workproof tests itself with: the
// seed's KVX key/value hosting service, built on the work-table pattern of
// package work, and a correct implementation of contract.System.
//
// A user request (Serve) writes the instance's desired state, a new
// generation, has_active_work and the work row in one transaction, with the
// "no active work" check and the set in one statement. One worker (Work)
// claims work rows and drives the fake cloud, Kubernetes and billing
// providers with idempotency keys derived from the instance's uid and the
// change's generation, so that any attempt can crash at any statement or
// provider call and the next attempt repeats exactly the same requests. The
// welcome email is at-most-once follow-up work: sent after its claiming
// transaction committed.
//
// Map of the package:
//
//	kvx.go     System, Options, Budget: Migrate, Work, Inspect, the runner set-up
//	serve.go   Serve, Accept (the atomic check-and-set), validation, refusals
//	steps.go   Steps, Env, Change: the worker's handlers and the steps they are made of
//	keys.go    the formats of client tokens, idempotency keys, billable events, names
//	schema.go  the instances table
//
// Behaviour is assembled from exported parts so that package kvx/mutants can
// build a broken variant by replacing exactly one of them (a step, the key
// derivation, Accept, or a runner option) while everything else stays the
// reference. kvx itself has no switch that makes it wrong.
package kvx
