package engine

import (
	"fmt"
	"slices"
	"strings"

	"github.com/bouncer-policy/bouncer/pkg/apis"
)

// actionSet is a constraint's enforcement actions by enforcement point.
type actionSet struct {
	// plain is the action for every point when the constraint is not scoped.
	plain  string
	scoped []apis.ScopedEnforcementAction
}

func parseActions(spec apis.ConstraintSpec) (actionSet, error) {
	a := strings.ToLower(spec.EnforcementAction)
	switch a {
	case "":
		return actionSet{plain: apis.ActionDeny}, nil
	case apis.ActionDeny, apis.ActionDryRun, apis.ActionWarn:
		return actionSet{plain: a}, nil
	case apis.ActionScoped:
		if len(spec.ScopedEnforcementActions) == 0 {
			return actionSet{}, fmt.Errorf("spec.enforcementAction is scoped but spec.scopedEnforcementActions is empty")
		}
		for i, s := range spec.ScopedEnforcementActions {
			switch strings.ToLower(s.Action) {
			case apis.ActionDeny, apis.ActionDryRun, apis.ActionWarn:
			default:
				return actionSet{}, fmt.Errorf("spec.scopedEnforcementActions[%d].action: %q is not one of deny, dryrun, warn", i, s.Action)
			}
			if len(s.EnforcementPoints) == 0 {
				return actionSet{}, fmt.Errorf("spec.scopedEnforcementActions[%d].enforcementPoints is empty", i)
			}
		}
		return actionSet{scoped: spec.ScopedEnforcementActions}, nil
	default:
		return actionSet{}, fmt.Errorf("spec.enforcementAction: %q is not one of deny, dryrun, warn, scoped", spec.EnforcementAction)
	}
}

// at returns the actions that apply at point; none means the constraint is
// not enforced there.
func (a actionSet) at(point string) []string {
	if a.plain != "" {
		return []string{a.plain}
	}
	var out []string
	for _, s := range a.scoped {
		for _, p := range s.EnforcementPoints {
			if p.Name == apis.PointAll || p.Name == point {
				act := strings.ToLower(s.Action)
				if !slices.Contains(out, act) {
					out = append(out, act)
				}
				break
			}
		}
	}
	return out
}

// strongest orders deny over warn over dryrun.
func strongest(actions []string) string {
	best := ""
	rank := map[string]int{apis.ActionDryRun: 1, apis.ActionWarn: 2, apis.ActionDeny: 3}
	for _, a := range actions {
		if rank[a] > rank[best] {
			best = a
		}
	}
	return best
}

func scopedList(c *Constraint, actions []string) []string {
	if c.actions.plain != "" {
		return nil
	}
	return actions
}
