package ledger

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Signed documents (a ledger head, an attestation) are JSON objects with two
// members of their own: "key_id", the KeyID of the key that signed, and
// "signature", the standard base64 of the Ed25519 signature of the
// document's canonical form (see Canonical). The signature covers key_id
// and every other member; the document's layout in the file does not matter.

// Errors of verifying a signed document, for callers that tell them apart.
var (
	// ErrOtherKey: the document names another key than the one given.
	ErrOtherKey = errors.New("signed by another key")
	// ErrSignature: the signature does not match the document.
	ErrSignature = errors.New("the signature does not match the content")
)

// Canonical returns the bytes a document's signature covers: the JSON
// object doc without its "signature" member, written with its object keys
// (at every depth) sorted by their UTF-8 bytes, no space between tokens,
// numbers as the document writes them, and strings as Go's encoding/json
// writes them with HTML escaping off (only '"', '\', control characters,
// U+2028 and U+2029 escaped). A document that is not UTF-8, is not one JSON
// object, or gives a key twice is refused: readers disagree on which of two
// values counts, so the signature could be made to vouch for either.
func Canonical(doc []byte) ([]byte, error) {
	if !utf8.Valid(doc) {
		return nil, errors.New("not UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("more than one JSON value")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("not a JSON object")
	}
	delete(obj, "signature")
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(obj); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// decodeValue reads one JSON value, refusing an object that gives a key
// twice.
func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	switch tok {
	case json.Delim('{'):
		obj := map[string]any{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return nil, fmt.Errorf("not JSON: %w", err)
			}
			key := k.(string)
			if _, dup := obj[key]; dup {
				return nil, fmt.Errorf("the key %q appears twice in one object", key)
			}
			if obj[key], err = decodeValue(dec); err != nil {
				return nil, err
			}
		}
		if _, err := dec.Token(); err != nil { // '}'
			return nil, fmt.Errorf("not JSON: %w", err)
		}
		return obj, nil
	case json.Delim('['):
		arr := []any{}
		for dec.More() {
			v, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		if _, err := dec.Token(); err != nil { // ']'
			return nil, fmt.Errorf("not JSON: %w", err)
		}
		return arr, nil
	}
	return tok, nil
}

// SignDocument returns the signature of doc (a value that encodes as a JSON
// object whose key_id is KeyID of key's public key, and whose signature
// member is empty or left out), for its signature member.
func SignDocument(key ed25519.PrivateKey, doc any) (string, error) {
	b, err := json.Marshal(doc)
	if err != nil {
		return "", err
	}
	c, err := Canonical(b)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(ed25519.Sign(key, c)), nil
}

// VerifyDocument checks the signature of a signed document with pub alone. The
// error says what is wrong, wrapping ErrOtherKey or ErrSignature when that
// is it.
func VerifyDocument(pub ed25519.PublicKey, doc []byte) error {
	c, err := Canonical(doc)
	if err != nil {
		return err
	}
	var sig struct {
		KeyID     string `json:"key_id"`
		Signature string `json:"signature"`
	}
	if err := json.Unmarshal(doc, &sig); err != nil {
		return fmt.Errorf("key_id or signature: %w", err)
	}
	if sig.Signature == "" {
		return errors.New("no signature")
	}
	if want := KeyID(pub); sig.KeyID != want {
		return fmt.Errorf("%w: the document names key %q, the key given is %s", ErrOtherKey, sig.KeyID, want)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(sig.Signature)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return fmt.Errorf("%w: the signature is not %d bytes of standard base64", ErrSignature, ed25519.SignatureSize)
	}
	if !ed25519.Verify(pub, c, raw) {
		return fmt.Errorf("%w: the document was altered after it was signed", ErrSignature)
	}
	return nil
}
