package load

import (
	"encoding/json"
	"fmt"
)

// Into decodes a document's object into a typed value, rejecting unknown
// shapes with an error that names the document.
func Into(d *Document, v any) error {
	b, err := json.Marshal(d.Object)
	if err != nil {
		return &Error{File: d.File, Line: d.Line, Err: err}
	}
	if err := json.Unmarshal(b, v); err != nil {
		return &Error{File: d.File, Line: d.Line, Err: fmt.Errorf("%s %q: %w", d.Kind(), d.Name(), err)}
	}
	return nil
}
