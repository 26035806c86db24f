package work

// Exported for the tests of package work_test.
const (
	ClaimSkipLockedSQL = claimSkipLockedSQL
	FloorEvery         = floorEvery
)
