package domicile

import (
	"errors"
	"fmt"
)

// Code classifies an error for callers and for the HTTP adapter, which alone
// maps codes to statuses.
type Code string

// The error codes.
const (
	CodeInvalid      Code = "invalid"
	CodeNotFound     Code = "not_found"
	CodeConflict     Code = "conflict"
	CodeFenced       Code = "fenced" // retryable: a move holds the subject
	CodeMoved        Code = "moved"  // the subject lives elsewhere now
	CodeForbidden    Code = "forbidden"
	CodeUnauthorized Code = "unauthorized"
	CodeInternal     Code = "internal"
	// CodeUnavailable: a store cannot be reached now; retryable. Given to
	// errors wrapping ErrUnavailable.
	CodeUnavailable Code = "unavailable"
)

// CodeConsentRequired: a write would store a value of a category that a
// purpose gates, and the subject has no current consent to it.
const CodeConsentRequired Code = "consent_required"

// Error is domicile's application error. Message is safe to show to users;
// Err, if set, carries the detail for operators.
type Error struct {
	Code    Code
	Message string
	Region  string // CodeMoved: the subject's new region, when known
	Epoch   int64  // CodeMoved: the epoch of that placement, when known
	Err     error
}

func (e *Error) Error() string {
	switch {
	case e.Err == nil || e.Err == ErrNotFound && e.Message != "": // "… not found: not found" says it twice
		return e.Message
	case e.Message == "":
		return e.Err.Error()
	}
	return e.Message + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain,
// CodeUnavailable for another error wrapping ErrUnavailable, CodeInternal
// for any other non-nil error, and "" for nil.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code
	}
	if errors.Is(err, ErrUnavailable) {
		return CodeUnavailable
	}
	return CodeInternal
}

// ErrorMessage returns the user-facing message of err: the message of its
// first *Error, a fixed one for a store out of reach (whose error names
// the store's address), or "internal error" for anything else uncoded.
func ErrorMessage(err error) string {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Message
	}
	if errors.Is(err, ErrUnavailable) {
		return "the store holding this subject cannot be reached; retry later"
	}
	return "internal error"
}

// The refusals a regional store's triggers raise. Each has one fixed message,
// the only text the stores recognise from the database; Store methods return
// them wrapped in an *Error (CodeFenced or CodeMoved) so that errors.Is works.
var (
	ErrFenced   = errors.New("domicile: subject is fenced")
	ErrIncoming = errors.New("domicile: subject is incoming")
	ErrMoved    = errors.New("domicile: subject has moved")
	ErrUnknown  = errors.New("domicile: subject is not owned here")
)

// Other sentinels callers branch on.
var (
	ErrNotFound  = errors.New("not found")
	ErrLeaseLost = errors.New("move lease lost") // another process claimed the move
	// ErrPrecondition: a store's ownership rows are not in the state a move
	// step requires, so the step did nothing. The move cannot go on as
	// planned: before its commit it rolls back, after it an operator looks.
	ErrPrecondition = errors.New("ownership precondition failed")
	// ErrNotSupported: an optional fast path does not apply; use the
	// general one.
	ErrNotSupported = errors.New("not supported")
	// ErrUnavailable: a store could not be reached (its server down or
	// restarting, the network cut). The work may be retried once it is back;
	// the mover pauses such a move and goes on with the others.
	ErrUnavailable = errors.New("store unavailable")
)

// RefusalError returns the *Error a store in region answers for a
// trigger's refusal r (ErrFenced, ErrIncoming, ErrUnknown or ErrMoved) of
// a subject's write. For ErrMoved, tomb is the subject's ownership row when
// known: a Moved one gives where the subject went.
func RefusalError(r error, region string, tomb *Ownership) *Error {
	switch r {
	case ErrFenced:
		return &Error{Code: CodeFenced, Message: "subject is being moved; retry shortly", Err: r}
	case ErrIncoming:
		return &Error{Code: CodeFenced, Message: "subject is being moved here; retry shortly", Err: r}
	case ErrUnknown:
		return &Error{Code: CodeForbidden, Message: fmt.Sprintf("subject is not owned by region %s", region), Err: r}
	}
	e := &Error{Code: CodeMoved, Message: "subject has moved", Err: r}
	if tomb != nil && tomb.State == Moved {
		e.Region, e.Epoch = tomb.Region, tomb.Epoch
		e.Message = "subject has moved to region " + tomb.Region
	}
	return e
}

// Standing returns nil if a store in region may serve a write of the
// subject whose ownership row is o (with read, a read, which a fence does
// not stop), and otherwise the refusal, as RefusalError gives it. A store
// without a row for the subject decides by whether it accepts unknown
// subjects, not by this.
func Standing(o Ownership, read bool, region string) error {
	switch o.State {
	case Owned:
		return nil
	case Fenced:
		if read {
			return nil
		}
		return RefusalError(ErrFenced, region, nil)
	case Incoming:
		return RefusalError(ErrIncoming, region, nil)
	case Moved:
		return RefusalError(ErrMoved, region, &o)
	}
	return fmt.Errorf("ownership of %s in %s: unknown state %q", o.Subject, o.Dataset, o.State)
}
