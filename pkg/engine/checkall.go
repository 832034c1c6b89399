package engine

import (
	"fmt"

	"github.com/bouncer-policy/bouncer/pkg/apis"
)

// CompileEveryEngine compiles a template as CompileTemplate does and, in
// addition, compiles the code of every other engine the template carries
// and this engine has a driver for. A template whose Rego is broken but
// whose CEL compiles would otherwise be accepted by a CEL-preferring
// replica and fail on every Rego-only one (`--engine rego`, older
// replicas), so admission of policies and the controllers check all of it.
// The returned Template is the one CompileTemplate would return.
func (e *Engine) CompileEveryEngine(t *apis.ConstraintTemplate) (*Template, error) {
	ct, err := e.compileTemplate(t)
	if err != nil {
		return nil, err
	}
	target := t.Spec.Targets[0]
	codes := target.Code
	if target.Rego != "" {
		codes = append([]apis.Code{legacyRegoCode(target)}, codes...)
	}
	for i, code := range codes {
		d, ok := e.drivers[code.Engine]
		if !ok || code.Engine == ct.Engine && sameSource(code, ct) {
			continue
		}
		if _, err := d.Compile(t, code); err != nil {
			where := fmt.Sprintf("spec.targets[0].code[%d] (%s)", i, code.Engine)
			if target.Rego != "" {
				where = fmt.Sprintf("spec.targets[0].code[%d] (%s)", i-1, code.Engine)
				if i == 0 {
					where = "spec.targets[0].rego"
				}
			}
			return nil, fmt.Errorf("template %q: %s: %w", ct.Name, where, err)
		}
	}
	return ct, nil
}

// sameSource reports whether code is the code ct was compiled from, so it
// is not compiled twice.
func sameSource(code apis.Code, ct *Template) bool {
	chosen, _, err := ct.chosenCode()
	if err != nil || code.Source == nil || chosen.Source == nil {
		return false
	}
	return string(code.Source.Raw) == string(chosen.Source.Raw)
}

// chosenCode is the code entry the template runs.
func (t *Template) chosenCode() (apis.Code, Driver, error) {
	if t.driver == nil {
		return apis.Code{}, nil, fmt.Errorf("template %q has no driver", t.Name)
	}
	target := t.Object.Spec.Targets[0]
	if t.Engine == apis.EngineRego && target.Rego != "" {
		return legacyRegoCode(target), t.driver, nil
	}
	for _, c := range target.Code {
		if c.Engine == t.Engine {
			return c, t.driver, nil
		}
	}
	return apis.Code{}, nil, fmt.Errorf("template %q: no %s code", t.Name, t.Engine)
}
