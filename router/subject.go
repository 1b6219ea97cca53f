package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"unicode"
	"unicode/utf8"

	"github.com/domicile/domicile"
)

// MaxSubjectID is the longest subject id, in bytes, CreateSubject accepts.
const MaxSubjectID = 255

// CreateSubject registers a new subject, placing each dataset in the home
// region Config.Place names, and returns the placements. It writes the
// subject's ownership rows (Owned, epoch 1) in the home stores first and
// registers the subject in the directory last, so that a subject the
// directory knows can always be written; a create that failed half-way is
// completed by calling CreateSubject again. An id the directory knows is
// CodeConflict, and no store is touched.
func (r *Router) CreateSubject(ctx context.Context, s domicile.Subject) ([]domicile.Placement, error) {
	if err := validSubjectID(s.ID); err != nil {
		return nil, err
	}
	if s.Country == "" {
		return nil, domicile.Errorf(domicile.CodeInvalid, "missing country")
	}
	if r.place == nil {
		return nil, errors.New("router: no Place function configured")
	}
	switch _, err := r.dir.FindSubject(ctx, s.ID); {
	case err == nil:
		return nil, domicile.Errorf(domicile.CodeConflict, "subject %q already exists", s.ID)
	case !errors.Is(err, domicile.ErrNotFound):
		return nil, fmt.Errorf("find subject: %w", err)
	}

	placements := make([]domicile.Placement, 0, len(r.order))
	byRegion := make(map[string][]domicile.Ownership)
	var regions []string
	for _, name := range r.order {
		region, err := r.place(s, name)
		if err != nil {
			return nil, fmt.Errorf("place %s/%s: %w", s.ID, name, err)
		}
		if _, ok := r.stores[region]; !ok {
			return nil, fmt.Errorf("place %s/%s: region %q has no store", s.ID, name, region)
		}
		placements = append(placements, domicile.Placement{
			Subject: s.ID, Dataset: name, Region: region, Epoch: 1, State: domicile.Active,
		})
		if _, ok := byRegion[region]; !ok {
			regions = append(regions, region)
		}
		byRegion[region] = append(byRegion[region], domicile.Ownership{
			Subject: s.ID, Dataset: name, State: domicile.Owned, Epoch: 1,
		})
	}

	for _, region := range regions {
		st := r.stores[region]
		// A row other than the one an earlier attempt wrote means the
		// store knows this id from elsewhere: never overwrite it.
		for _, o := range byRegion[region] {
			cur, err := st.FindOwnership(ctx, o.Dataset, o.Subject)
			switch {
			case errors.Is(err, domicile.ErrNotFound):
			case err != nil:
				return nil, fmt.Errorf("find ownership in %s: %w", region, err)
			case cur.State != domicile.Owned || cur.Epoch != 1 || cur.Region != "":
				return nil, domicile.Errorf(domicile.CodeConflict, "subject %q is already known to region %s (%s, epoch %d)", s.ID, region, cur.State, cur.Epoch)
			}
		}
		if err := st.SetOwnership(ctx, byRegion[region]); err != nil {
			return nil, fmt.Errorf("set ownership in %s: %w", region, err)
		}
	}
	if err := r.dir.CreateSubject(ctx, s, placements); err != nil {
		if domicile.ErrorCode(err) == domicile.CodeConflict {
			// A concurrent create won, perhaps placing the subject
			// elsewhere: withdraw the ownership rows it does not use, or
			// two regions would accept the subject's writes.
			r.withdraw(ctx, s.ID, placements)
			return nil, err
		}
		// Whether the directory committed is unknown: leave the ownership
		// rows for a retry to complete.
		return nil, fmt.Errorf("create subject: %w", err)
	}
	for _, p := range placements {
		r.cache.put(p)
	}
	r.tombstoneElsewhere(ctx, placements)
	r.log.LogAttrs(ctx, slog.LevelDebug, "subject created", slog.String("subject", s.ID))
	return placements, nil
}

// withdraw deletes the ownership rows a failed CreateSubject wrote in
// regions the directory does not name.
func (r *Router) withdraw(ctx context.Context, id string, mine []domicile.Placement) {
	theirs, err := r.dir.FindPlacements(ctx, id)
	if err != nil {
		r.log.LogAttrs(ctx, slog.LevelWarn, "find placements after a create conflict",
			slog.String("subject", id), slog.String("error", err.Error()))
		return
	}
	home := make(map[string]string, len(theirs))
	for _, p := range theirs {
		home[p.Dataset] = p.Region
	}
	for _, p := range mine {
		if home[p.Dataset] == p.Region {
			continue
		}
		if err := r.stores[p.Region].DeleteOwnership(ctx, p.Dataset, []string{id}); err != nil {
			r.log.LogAttrs(ctx, slog.LevelWarn, "withdraw ownership after a create conflict",
				slog.String("subject", id), slog.String("dataset", p.Dataset),
				slog.String("region", p.Region), slog.String("error", err.Error()))
		}
	}
}

// Subject returns a subject and its placements, or CodeNotFound.
func (r *Router) Subject(ctx context.Context, id string) (domicile.Subject, []domicile.Placement, error) {
	s, err := r.dir.FindSubject(ctx, id)
	if err != nil {
		return s, nil, notFound(err, "subject %q not found", id)
	}
	ps, err := r.dir.FindPlacements(ctx, id)
	if err != nil {
		return s, nil, fmt.Errorf("find placements: %w", err)
	}
	return s, ps, nil
}

// UpdateCountry changes a subject's country (ISO 3166-1 alpha-2). The
// placements stay where they are until a plan moves them.
func (r *Router) UpdateCountry(ctx context.Context, id, country string) error {
	if country == "" {
		return domicile.Errorf(domicile.CodeInvalid, "missing country")
	}
	if err := r.dir.UpdateCountry(ctx, id, country); err != nil {
		return notFound(err, "subject %q not found", id)
	}
	return nil
}

// notFound gives ErrNotFound from the directory a user-facing message and
// passes other errors through.
func notFound(err error, format string, args ...any) error {
	if !errors.Is(err, domicile.ErrNotFound) {
		return err
	}
	e := domicile.Errorf(domicile.CodeNotFound, format, args...)
	e.Err = err
	return e
}

func validSubjectID(id string) error {
	switch {
	case id == "":
		return domicile.Errorf(domicile.CodeInvalid, "missing subject id")
	case len(id) > MaxSubjectID:
		return domicile.Errorf(domicile.CodeInvalid, "subject id longer than %d bytes", MaxSubjectID)
	case !utf8.ValidString(id):
		return domicile.Errorf(domicile.CodeInvalid, "subject id is not valid UTF-8")
	}
	for _, c := range id {
		if unicode.IsControl(c) {
			return domicile.Errorf(domicile.CodeInvalid, "subject id contains a control character")
		}
	}
	return nil
}

// tombstoneElsewhere leaves, in every store but a placement's home that has
// no row for the subject, a tombstone pointing at the home: a store that
// accepts unknown subjects (the original one, during adoption) would
// otherwise take writes for the new subject from writers that bypass
// domicile. A failure is logged: the subject exists, and domicile's own
// writes go to its home.
func (r *Router) tombstoneElsewhere(ctx context.Context, placements []domicile.Placement) {
	for region, st := range r.stores {
		var rows []domicile.Ownership
		for _, p := range placements {
			if p.Region == region {
				continue
			}
			_, err := st.FindOwnership(ctx, p.Dataset, p.Subject)
			if !errors.Is(err, domicile.ErrNotFound) {
				continue
			}
			rows = append(rows, domicile.Ownership{Subject: p.Subject, Dataset: p.Dataset, State: domicile.Moved, Region: p.Region, Epoch: p.Epoch})
		}
		if len(rows) == 0 {
			continue
		}
		if err := st.SetOwnership(ctx, rows); err != nil {
			r.log.Warn("leaving tombstones for a new subject", "region", region, "err", err)
		}
	}
}
