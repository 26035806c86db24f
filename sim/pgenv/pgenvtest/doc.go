// Package pgenvtest gives tests a shared Postgres server per test binary and a
// fresh, migrated database per test.
//
//	func TestMain(m *testing.M) { pgenvtest.Main(m) }
//
//	func TestX(t *testing.T) {
//		db := pgenvtest.DB(t, "work", work.Migrate) // cloned from a template
//		pool := pgenvtest.Pool(t, db)
//		…
//	}
//
// The server is $WORKPROOF_DATABASE_URL when set, else a container when a
// Docker engine answers, else a private ephemeral cluster from the machine's
// binaries ($WORKPROOF_POSTGRES=dsn|container|local picks one; see package
// pgenv). It starts on first use and Main closes it after the tests, also
// when the run is interrupted (SIGINT, SIGTERM); Server fails the test when
// TestMain does not call Main.
//
// Conformance is the test every pgenv backend passes (like
// testing/fstest.TestFS); a ContainerEngine outside this module (package
// pgcontainer) runs it too.
//
// A template is made once per name per test binary by the first DB call for
// that name; later calls reuse it and ignore their migrate function. Use one
// name per schema. Clones cost ~20 ms on an ephemeral cluster on /dev/shm.
package pgenvtest
