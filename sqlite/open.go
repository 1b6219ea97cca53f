package sqlite

import "database/sql"

// Open opens the SQLite database at path with the connection settings every
// store of this package uses (WAL, synchronous=NORMAL, busy timeout,
// immediate write transactions), for tools that need the raw database: the
// benchmark's baseline, tests, the example population.
func Open(path string) (*sql.DB, error) { return openDB(path) }
