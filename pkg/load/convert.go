package load

import (
	"encoding/json"
	"fmt"

	utiljson "k8s.io/apimachinery/pkg/util/json"
)

// Into decodes a document's object into a typed value, rejecting unknown
// shapes with an error that names the document.
func Into(d *Document, v any) error {
	b, err := json.Marshal(d.Object)
	if err != nil {
		return &Error{File: d.File, Line: d.Line, Err: err}
	}
	// utiljson keeps integers as int64 inside map[string]any fields, as the
	// apiserver does, so parameters validate the same way everywhere.
	if err := utiljson.Unmarshal(b, v); err != nil {
		return &Error{File: d.File, Line: d.Line, Err: fmt.Errorf("%s %q: %w", d.Kind(), d.Name(), err)}
	}
	return nil
}
