// Command simrun runs workproof from the command line: long soak runs of a
// system under traffic and faults, and the named regression scenarios as a
// gate. Run `simrun help` for the subcommands, `simrun soak -h` for a
// subcommand's flags.
//
// Exit codes: 0 every invariant held; 1 an invariant was violated (the
// counterexample is in the report); 2 usage or infrastructure errors (bad
// flags, no Postgres) or an unknown verdict (interrupted before the final
// check); 3 a replay with -expect diverged.
//
// The command is package simrun (the library) with workproof's own systems:
// the reference kvx and its seeded bugs (main.go). A team that runs its own
// system builds the same few lines with its systems; see package simrun.
package main
