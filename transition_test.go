package domicile

import (
	"errors"
	"reflect"
	"testing"
)

// TestTransitionWrites checks the precondition every backend applies to a
// transition: a step run again writes nothing, a row in a From state is
// written (with Own deciding whose move it may be under), anything else
// fails the whole transition or, Lenient, is skipped, and MaxEpoch keeps a
// stale move off rows a later one has passed.
func TestTransitionWrites(t *testing.T) {
	have := map[string]Ownership{
		"owned":   {Subject: "owned", Dataset: "d", State: Owned, Region: "a", Epoch: 3},
		"mine":    {Subject: "mine", Dataset: "d", State: Fenced, Region: "a", Epoch: 3, MoveID: "m1"},
		"done":    {Subject: "done", Dataset: "d", State: Moved, Region: "b", Epoch: 4, MoveID: "m1"},
		"other":   {Subject: "other", Dataset: "d", State: Fenced, Region: "a", Epoch: 3, MoveID: "m0"},
		"later":   {Subject: "later", Dataset: "d", State: Owned, Region: "a", Epoch: 9},
		"givenup": {Subject: "givenup", Dataset: "d", State: Owned, Region: "a", Epoch: 3, MoveID: "m1"},
	}
	fence := Transition{Dataset: "d", MoveID: "m1", From: []OwnerState{Owned}, To: Fenced, Region: "a"}
	cases := []struct {
		name     string
		tr       Transition
		subjects []string
		want     []string // subjects written, in order
		refused  bool
	}{
		{"fence an owned subject", fence, []string{"owned"}, []string{"owned"}, false},
		{"named twice, written once", fence, []string{"owned", "owned"}, []string{"owned"}, false},
		{"a step run again writes nothing", Transition{Dataset: "d", MoveID: "m1", From: []OwnerState{Owned}, To: Fenced}, []string{"mine"}, nil, false},
		{"a row under another move is refused", fence, []string{"owned", "other"}, nil, true},
		{"lenient skips it", func() Transition { tr := fence; tr.Lenient = true; return tr }(), []string{"other", "owned"}, []string{"owned"}, false},
		{"a move never re-fences a subject it gave back", fence, []string{"givenup"}, nil, true},
		{"a tombstone the same move left is not prepared again", Transition{Dataset: "d", MoveID: "m1", From: []OwnerState{"", Moved}, To: Incoming, Region: "b"}, []string{"new", "done"}, nil, true},
		{"prepare over a missing row", Transition{Dataset: "d", MoveID: "m1", From: []OwnerState{""}, To: Incoming, Region: "b"}, []string{"new"}, []string{"new"}, false},
		{"own: only rows under this move", Transition{Dataset: "d", MoveID: "m1", From: []OwnerState{Fenced}, Own: true, To: Moved, Region: "b"}, []string{"mine"}, []string{"mine"}, false},
		{"own refuses another move's row", Transition{Dataset: "d", MoveID: "m1", From: []OwnerState{Fenced}, Own: true, To: Moved, Region: "b"}, []string{"other"}, nil, true},
		{"max epoch keeps a stale move off", func() Transition { tr := fence; tr.MaxEpoch = map[string]int64{"later": 3}; return tr }(), []string{"later"}, nil, true},
		{"skip later: a later move's row is left alone", Transition{Dataset: "d", MoveID: "m1", From: []OwnerState{Fenced}, Own: true, To: Moved, Region: "b", SkipLater: true,
			Epochs: map[string]int64{"mine": 4, "later": 4}}, []string{"later", "mine"}, []string{"mine"}, false},
		{"skip later: one at the epoch this move writes, under another move", Transition{Dataset: "d", MoveID: "m1", From: []OwnerState{Incoming}, Own: true, To: Owned, Region: "b", SkipLater: true,
			Epochs: map[string]int64{"other": 3}}, []string{"other"}, nil, false},
		{"skip later: an older row under another move is still refused", Transition{Dataset: "d", MoveID: "m1", From: []OwnerState{Fenced}, Own: true, To: Moved, Region: "b", SkipLater: true,
			Epochs: map[string]int64{"other": 4}}, []string{"other"}, nil, true},
		{"skip later: this move's own row in another state is still refused", Transition{Dataset: "d", MoveID: "m1", From: []OwnerState{Fenced}, Own: true, To: Moved, Region: "b", SkipLater: true,
			Epochs: map[string]int64{"givenup": 3}}, []string{"givenup"}, nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr := c.tr
			tr.Subjects = c.subjects
			writes, err := tr.Writes(have)
			if c.refused {
				if !errors.Is(err, ErrPrecondition) || ErrorCode(err) != CodeConflict {
					t.Fatalf("got %v, %v; want a conflict wrapping ErrPrecondition", writes, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, o := range writes {
				got = append(got, o.Subject)
				if o.State != tr.To || o.MoveID != tr.MoveID || o.Region != tr.Region || o.Dataset != "d" {
					t.Errorf("write %+v does not carry the transition's state, move, region and dataset", o)
				}
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("wrote %v, want %v", got, c.want)
			}
		})
	}
	// Epochs are the transition's where given, the row's otherwise.
	tr := fence
	tr.Subjects = []string{"owned"}
	if w, _ := tr.Writes(have); w[0].Epoch != 3 {
		t.Fatalf("epoch kept: %d, want 3", w[0].Epoch)
	}
	tr.Epochs = map[string]int64{"owned": 4}
	if w, _ := tr.Writes(have); w[0].Epoch != 4 {
		t.Fatalf("epoch given: %d, want 4", w[0].Epoch)
	}
	if err := (Transition{Dataset: "d", MoveID: "m", To: "gone"}).Validate(); ErrorCode(err) != CodeInvalid {
		t.Fatalf("invalid state: %v", err)
	}
	if err := (Transition{To: Owned}).Validate(); ErrorCode(err) != CodeInvalid {
		t.Fatalf("no dataset or move: %v", err)
	}
}
