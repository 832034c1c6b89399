package apis

import (
	"encoding/json"
	"fmt"
)

// RawExtension keeps an engine-specific document as raw JSON. It decodes
// from any JSON value and encodes back unchanged.
type RawExtension struct {
	Raw json.RawMessage
}

// UnmarshalJSON keeps a copy of the raw bytes.
func (r *RawExtension) UnmarshalJSON(b []byte) error {
	r.Raw = append(r.Raw[:0], b...)
	return nil
}

// MarshalJSON returns the raw bytes, or null.
func (r RawExtension) MarshalJSON() ([]byte, error) {
	if len(r.Raw) == 0 {
		return []byte("null"), nil
	}
	return r.Raw, nil
}

// Into decodes the raw document into v.
func (r *RawExtension) Into(v any) error {
	if r == nil || len(r.Raw) == 0 {
		return fmt.Errorf("source is empty")
	}
	return json.Unmarshal(r.Raw, v)
}
