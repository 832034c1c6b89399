// Package fleet reads the policy state of several clusters — what each
// has synced from git, which templates and constraints it enforces and
// what its audit found — for `bouncer fleet status` and the dashboard;
// `bouncer controls` shares its resolution of kubeconfigs and contexts and
// its discovery of constraint kinds.
package fleet

import (
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Target is one cluster to read: a kubeconfig and one of its contexts.
type Target struct {
	// Name is how the cluster is shown: its context's name.
	Name string
	// Kubeconfig is the file it came from; empty for the default loading
	// rules ($KUBECONFIG, ~/.kube/config).
	Kubeconfig string
	Context    string
	Config     *rest.Config
}

// Targets resolves the clusters to read: every context named in contexts
// (or each kubeconfig's current context when none are named, or all of
// them with allContexts) of every kubeconfig (or the default loading rules
// when none are named).
func Targets(kubeconfigs, contexts []string, allContexts bool) ([]Target, error) {
	if len(kubeconfigs) == 0 {
		kubeconfigs = []string{""}
	}
	var out []Target
	for _, kc := range kubeconfigs {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		if kc != "" {
			rules.ExplicitPath = kc
		}
		raw, err := rules.Load()
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", describe(kc), err)
		}
		names := contexts
		switch {
		case allContexts:
			names = nil
			for name := range raw.Contexts {
				names = append(names, name)
			}
			sortStrings(names)
		case len(names) == 0:
			if raw.CurrentContext == "" {
				return nil, fmt.Errorf("kubeconfig %s has no current context; name one with --context", describe(kc))
			}
			names = []string{raw.CurrentContext}
		}
		for _, name := range names {
			if _, ok := raw.Contexts[name]; !ok {
				return nil, fmt.Errorf("kubeconfig %s has no context %q", describe(kc), name)
			}
			cfg, err := clientcmd.NewNonInteractiveClientConfig(*raw, name, &clientcmd.ConfigOverrides{}, rules).ClientConfig()
			if err != nil {
				return nil, fmt.Errorf("context %s of kubeconfig %s: %w", name, describe(kc), err)
			}
			out = append(out, Target{Name: name, Kubeconfig: kc, Context: name, Config: cfg})
		}
	}
	// One context name in two kubeconfigs would be two rows alike.
	seen := map[string]int{}
	for _, t := range out {
		seen[t.Name]++
	}
	for i, t := range out {
		if seen[t.Name] > 1 {
			out[i].Name = t.Kubeconfig + ":" + t.Name
		}
	}
	return out, nil
}

func describe(kc string) string {
	if kc == "" {
		return "($KUBECONFIG or ~/.kube/config)"
	}
	return kc
}
