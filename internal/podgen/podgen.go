// Package podgen generates Pods for tests and benchmarks: deterministic for
// given Options, realistic (labels, resources, security contexts, sidecars)
// and a chosen share of them breaking policies. Two mixes exist, one per
// policy set the benchmarks run:
//
//   - Library: Namespaces (half named prod-*, which some library constraints
//     select) followed by Pods judged by the built-in library; a violating
//     Pod breaks one to three of its policies. bench/ uses it.
//   - Engine: Pods only, judged by the 30 constraints in
//     pkg/engine/testdata/bench; a violating Pod breaks one of them. The
//     README's `bouncer test` figures use it.
//
// Development tooling: nothing under pkg/ may import it.
package podgen

import (
	"fmt"
	"io"
	"math/rand/v2"

	"sigs.k8s.io/yaml"
)

// Mix chooses which policy set the generated Pods are shaped for.
type Mix string

// The mixes.
const (
	Library Mix = "library"
	Engine  Mix = "engine"
)

// Options shape a generated set.
type Options struct {
	Mix        Mix
	Pods       int
	Namespaces int
	// ViolatingPercent of the Pods break at least one policy.
	ViolatingPercent int
	Seed             uint64
	// Templates, when above zero, stamps the Pods from that many pod
	// templates (Library mix only), as a cluster's Pods come from a few
	// hundred Deployments: the first Templates Pods are generated as usual,
	// and every Pod is a Replica of one of them, with its own name, uid and
	// random ServiceAccount token volume.
	Templates int
}

// DefaultOptions is each mix's usual shape: Library as bench/run uses it
// (100 namespaces, 30% violating), Engine as the README's figures (200
// namespaces, 25% violating).
func DefaultOptions(mix Mix, pods int) Options {
	if mix == Engine {
		return Options{Mix: Engine, Pods: pods, Namespaces: 200, ViolatingPercent: 25, Seed: 1}
	}
	return Options{Mix: Library, Pods: pods, Namespaces: 100, ViolatingPercent: 30, Seed: 6}
}

// Generate calls fn for each generated object, in a fixed order.
func Generate(o Options, fn func(obj map[string]any) error) error {
	if o.Namespaces <= 0 {
		o.Namespaces = 1
	}
	switch o.Mix {
	case Library, "":
		return generateLibrary(o, fn)
	case Engine:
		return generateEngine(o, fn)
	}
	return fmt.Errorf("unknown pod mix %q (want %s or %s)", o.Mix, Library, Engine)
}

// WriteYAML writes the generated objects as one multi-document YAML stream.
func WriteYAML(w io.Writer, o Options) error {
	return Generate(o, func(obj map[string]any) error {
		b, err := yaml.Marshal(obj)
		if err != nil {
			return err
		}
		if _, err := io.WriteString(w, "---\n"); err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	})
}

func newRand(o Options, stream uint64) *rand.Rand { return rand.New(rand.NewPCG(o.Seed, stream)) }
