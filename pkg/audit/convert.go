package audit

import (
	"encoding/json"
	"time"

	utiljson "k8s.io/apimachinery/pkg/util/json"
)

// now is a variable so tests can fix the clock.
var now = func() time.Time { return time.Now().Truncate(time.Second) }

// decodeInto converts a JSON-shaped value into a typed one.
func decodeInto(v any, out any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return utiljson.Unmarshal(b, out)
}
