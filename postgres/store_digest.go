package postgres

import (
	"context"

	"github.com/domicile/domicile"
)

// DigestSubjects computes the canonical digest of each subject's rows: the
// one domicile.DigestBatch computes from ReadSubjects' batch, over the
// dataset's columns as declared here when the caller's description lacks
// them. Values are read as every engine's store reads them (see the
// package's documentation), so equal rows digest alike in any store.
func (s *Store) DigestSubjects(ctx context.Context, ds *domicile.Dataset, subjects []string) (map[string]domicile.SubjectDigest, error) {
	tables, _, err := s.describedDataset(ctx, ds)
	if err != nil {
		return nil, err
	}
	described := &domicile.Dataset{Name: ds.Name, Tables: tables}
	b, err := s.readSubjects(ctx, described, subjects, false)
	if err != nil {
		return nil, err
	}
	return domicile.DigestBatch(described, subjects, b)
}
