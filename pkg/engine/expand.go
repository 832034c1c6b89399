package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"k8s.io/apimachinery/pkg/runtime"
)

func compileExpansion(x *apis.ExpansionTemplate) (*Expansion, error) {
	name := x.GetName()
	if name == "" {
		return nil, errors.New("ExpansionTemplate has no metadata.name")
	}
	s := x.Spec
	if s.TemplateSource == "" {
		return nil, fmt.Errorf("ExpansionTemplate %q: spec.templateSource is required", name)
	}
	if s.GeneratedGVK.Kind == "" || s.GeneratedGVK.Version == "" {
		return nil, fmt.Errorf("ExpansionTemplate %q: spec.generatedGVK needs version and kind", name)
	}
	if len(s.ApplyTo) == 0 {
		return nil, fmt.Errorf("ExpansionTemplate %q: spec.applyTo is empty", name)
	}
	switch strings.ToLower(s.EnforcementAction) {
	case "", apis.ActionDeny, apis.ActionDryRun, apis.ActionWarn:
	default:
		return nil, fmt.Errorf("ExpansionTemplate %q: spec.enforcementAction %q is not one of deny, dryrun, warn", name, s.EnforcementAction)
	}
	for i, a := range s.ApplyTo {
		if slices.Contains(a.Kinds, s.GeneratedGVK.Kind) && (len(a.Groups) == 0 || slices.Contains(a.Groups, s.GeneratedGVK.Group)) {
			return nil, fmt.Errorf("ExpansionTemplate %q: spec.applyTo[%d] includes the generated kind %s, which would expand forever", name, i, s.GeneratedGVK.Kind)
		}
	}
	return &Expansion{Name: name, Object: x, path: strings.Split(s.TemplateSource, ".")}, nil
}

func (x *Expansion) appliesTo(k GVK) bool {
	for _, a := range x.Object.Spec.ApplyTo {
		if anyOrContains(a.Groups, k.Group) && anyOrContains(a.Kinds, k.Kind) && anyOrContains(a.Versions, k.Version) {
			return true
		}
	}
	return false
}

func anyOrContains(set []string, s string) bool {
	return slices.Contains(set, "*") || slices.Contains(set, s)
}

// expand reviews the objects that expansion templates derive from r, and
// reports their violations against r with Gatekeeper's "[Implied by NAME]"
// message prefix.
func (e *Engine) expand(ctx context.Context, s *snapshot, r *Review, cfg *reviewConfig, resp *Response, depth int) error {
	if len(s.expansions) == 0 || r.Object == nil {
		return nil
	}
	names := make([]string, 0, len(s.expansions))
	for n, x := range s.expansions {
		if x.appliesTo(r.Kind) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		x := s.expansions[n]
		child, ok := x.generate(r)
		if !ok {
			continue
		}
		if cfg.mutate != nil {
			if err := cfg.mutate(child.Object, child.NamespaceObject, child.Operation); err != nil {
				return fmt.Errorf("mutating the %s expanded by %s: %w", child.Kind.Kind, x.Name, err)
			}
			// A mutator may have set the name or labels constraints match on.
			if meta, ok := child.Object["metadata"].(map[string]any); ok {
				if name, _ := meta["name"].(string); name != "" {
					child.Name = name
				}
			}
		}
		sub := &Response{}
		if err := e.review(ctx, s, child, cfg, sub, x.Name, depth+1); err != nil {
			return err
		}
		override := strings.ToLower(x.Object.Spec.EnforcementAction)
		for _, res := range sub.Results {
			res.Message = fmt.Sprintf("[Implied by %s] %s", x.Name, res.Message)
			if override != "" {
				res.EnforcementAction = override
				res.ScopedActions = nil
			}
			res.ExpansionTemplate = x.Name
			resp.Results = append(resp.Results, res)
		}
		resp.Errors = append(resp.Errors, sub.Errors...)
		resp.Evaluated += sub.Evaluated
		resp.Matched = append(resp.Matched, sub.Matched...)
	}
	return nil
}

// generate builds the resultant object from the source at templateSource.
func (x *Expansion) generate(r *Review) (*Review, bool) {
	var cur any = r.Object
	for _, p := range x.path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		cur = m[p]
	}
	src, ok := cur.(map[string]any)
	if !ok {
		return nil, false
	}
	obj := runtime.DeepCopyJSONValue(src).(map[string]any)
	gvk := x.Object.Spec.GeneratedGVK
	apiVersion := gvk.Version
	if gvk.Group != "" {
		apiVersion = gvk.Group + "/" + gvk.Version
	}
	obj["apiVersion"] = apiVersion
	obj["kind"] = gvk.Kind
	meta, _ := obj["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		obj["metadata"] = meta
	}
	// Gatekeeper names the resultant <parent>-<kind>, lowercased, so
	// policies that read the name see the same value in both.
	if r.Name != "" {
		meta["name"] = strings.ToLower(r.Name + "-" + gvk.Kind)
	}
	if _, ok := meta["namespace"]; !ok && r.Namespace != "" {
		meta["namespace"] = r.Namespace
	}
	name, _ := meta["name"].(string)
	return &Review{
		Kind:            GVK{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
		Resource:        GVR{Group: gvk.Group, Version: gvk.Version, Resource: strings.ToLower(gvk.Kind) + "s"},
		Name:            name,
		Namespace:       r.Namespace,
		Operation:       r.Operation,
		UserInfo:        r.UserInfo,
		Object:          obj,
		DryRun:          r.DryRun,
		NamespaceObject: r.NamespaceObject,
		Source:          apis.SourceGenerated,
	}, true
}
