// Package registration says which API resources a mutating webhook must be
// registered for to receive every object a set of mutators can change, and
// whether a registration in the cluster already does.
//
// Registering for every resource makes the apiserver call the webhook on
// every create and update, even in a cluster without mutators: 1.4 ms of
// apiserver CPU per Pod create at 100 creates/s on a 2-core machine
// (loadgen, README "Performance"), for an answer that is always
// "unchanged".
package registration

import (
	"slices"
	"sort"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Rules returns the resources for mutators that change every kind (all)
// or the given kinds (Version "*" for a kind in any version, Kind "*" for
// every kind of a group): one rule per group and version, naming the
// kinds' resources as mapper knows them. A kind mapper does not know (its CRD not
// installed yet, or not served in that version) widens its group and
// version to every resource, so that the rules never miss an object; the
// caller re-derives them later to narrow them again. No kinds and not all
// give no rules: the webhook is then never called.
func Rules(all bool, kinds []schema.GroupVersionKind, mapper meta.RESTMapper) []admissionregistrationv1.Rule {
	scope := admissionregistrationv1.AllScopes
	if all {
		return []admissionregistrationv1.Rule{{APIGroups: []string{"*"}, APIVersions: []string{"*"}, Resources: []string{"*"}, Scope: &scope}}
	}
	byGV := map[schema.GroupVersion][]string{}
	for _, k := range kinds {
		gv := k.GroupVersion()
		resource := "*"
		var versions []string // RESTMapping's: the preferred one when none
		if k.Version != "*" {
			versions = []string{k.Version}
		}
		if mapper != nil && k.Kind != "*" {
			if m, err := mapper.RESTMapping(k.GroupKind(), versions...); err == nil && m.Resource.Resource != "" {
				resource = m.Resource.Resource
			}
		}
		if !slices.Contains(byGV[gv], resource) {
			byGV[gv] = append(byGV[gv], resource)
		}
	}
	// A resource a group's every-version rule names needs no rule of its own.
	for gv, resources := range byGV {
		if gv.Version == "*" {
			continue
		}
		anyVersion := byGV[schema.GroupVersion{Group: gv.Group, Version: "*"}]
		resources = slices.DeleteFunc(resources, func(r string) bool {
			return slices.Contains(anyVersion, r) || slices.Contains(anyVersion, "*")
		})
		if len(resources) == 0 {
			delete(byGV, gv)
		} else {
			byGV[gv] = resources
		}
	}
	gvs := make([]schema.GroupVersion, 0, len(byGV))
	for gv := range byGV {
		gvs = append(gvs, gv)
	}
	sort.Slice(gvs, func(i, j int) bool { return gvs[i].String() < gvs[j].String() })
	rules := make([]admissionregistrationv1.Rule, 0, len(gvs))
	for _, gv := range gvs {
		resources := byGV[gv]
		if slices.Contains(resources, "*") {
			resources = []string{"*"}
		}
		sort.Strings(resources)
		rules = append(rules, admissionregistrationv1.Rule{
			APIGroups: []string{gv.Group}, APIVersions: []string{gv.Version}, Resources: resources, Scope: &scope,
		})
	}
	return rules
}

// Covers reports whether the rules of a registered webhook (have) send it
// the creates of every group, version and resource in want. A resource of
// "*" in want is covered only by "*": it stands for kinds not known yet.
func Covers(have []admissionregistrationv1.RuleWithOperations, want []admissionregistrationv1.Rule) bool {
	for _, w := range want {
		for _, g := range w.APIGroups {
			for _, v := range w.APIVersions {
				for _, r := range w.Resources {
					if !coveredBy(have, g, v, r) {
						return false
					}
				}
			}
		}
	}
	return true
}

func coveredBy(have []admissionregistrationv1.RuleWithOperations, group, version, resource string) bool {
	for _, h := range have {
		if matches(h.APIGroups, group) && matches(h.APIVersions, version) && matches(h.Resources, resource) &&
			(slices.Contains(h.Operations, admissionregistrationv1.OperationAll) || slices.Contains(h.Operations, admissionregistrationv1.Create)) {
			return true
		}
	}
	return false
}

func matches(list []string, v string) bool {
	return slices.Contains(list, "*") || slices.Contains(list, v)
}
