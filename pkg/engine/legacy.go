package engine

import (
	"encoding/json"

	"github.com/bouncer-policy/bouncer/pkg/apis"
)

// legacyRegoCode presents a target's top-level rego and libs as a code[]
// entry, so drivers see one form. Legacy rego is always Rego v0.
func legacyRegoCode(t apis.Target) apis.Code {
	raw, _ := json.Marshal(apis.RegoSource{Rego: t.Rego, Libs: t.Libs, Version: "v0"})
	return apis.Code{Engine: apis.EngineRego, Source: &apis.RawExtension{Raw: raw}}
}
