// Package engine benchmarks Bouncer's engine against Gatekeeper's engine
// library (github.com/open-policy-agent/frameworks/constraint with its Rego
// driver and Gatekeeper's admission target, as gator builds it) on the same
// templates, constraints and objects. Only this separate module depends on
// Gatekeeper; the main module never does.
package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/bouncer-policy/bouncer/bench/internal/corpus"
	"github.com/bouncer-policy/bouncer/pkg/apis"
	bengine "github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
	templatesv1 "github.com/open-policy-agent/frameworks/constraint/pkg/apis/templates/v1"
	constraintclient "github.com/open-policy-agent/frameworks/constraint/pkg/client"
	fwrego "github.com/open-policy-agent/frameworks/constraint/pkg/client/drivers/rego"
	"github.com/open-policy-agent/frameworks/constraint/pkg/client/reviews"
	mutationtypes "github.com/open-policy-agent/gatekeeper/v3/pkg/mutation/types"
	"github.com/open-policy-agent/gatekeeper/v3/pkg/target"
	"github.com/open-policy-agent/gatekeeper/v3/pkg/util"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// Pair is the same policy set loaded into both engines.
type Pair struct {
	Bouncer    *bengine.Engine
	Frameworks *constraintclient.Client
	// Skipped lists library policies the frameworks client could not load,
	// with the reason; they are left out of both engines.
	Skipped []string
	// Constraints loaded into each engine.
	Constraints int
}

// NewPair loads the library policies kept by keep into both engines, with
// Bouncer's expansion templates when expansion is set.
//
// Mode is "rego" (both engines run only Rego: the like-for-like comparison)
// or "auto" (Bouncer's default: K8sNativeValidation where a template has it,
// as Gatekeeper does; the frameworks client still runs Rego, because
// Gatekeeper's K8sNativeValidation driver (pkg/drivers/k8scel) does not
// compile against k8s.io/apiserver v0.37.2, see bench/README.md).
func NewPair(ctx context.Context, lib *corpus.Library, mode string, expansion bool, keep func(corpus.Policy) bool) (*Pair, error) {
	fw, err := newFrameworks(mode)
	if err != nil {
		return nil, err
	}
	p := &Pair{Frameworks: fw}
	loaded := map[string]bool{}
	for _, pol := range lib.Policies {
		if keep != nil && !keep(pol) {
			continue
		}
		if reason := addToFrameworks(ctx, fw, pol); reason != "" {
			p.Skipped = append(p.Skipped, pol.Dir+": "+reason)
			continue
		}
		loaded[pol.Dir] = true
		p.Constraints += len(pol.Constraints)
	}
	sort.Strings(p.Skipped)
	only := ""
	if mode == ModeRego {
		only = apis.EngineRego
	}
	// Without the evaluation cache: the benchmarks review the same Pod
	// over and over, and the target is one fresh Pod; the cache's gain on
	// repeated Pods is measured by the throughput streams instead.
	p.Bouncer, err = policyset.NewEngineCaching(5*time.Second, only, -1)
	if err != nil {
		return nil, err
	}
	set := lib.Set(expansion, func(pol corpus.Policy) bool { return loaded[pol.Dir] })
	if err := set.LoadInto(p.Bouncer); err != nil {
		return nil, fmt.Errorf("loading into bouncer: %w", err)
	}
	return p, nil
}

// Engine modes of NewPair.
const (
	ModeAuto = "auto"
	ModeRego = "rego"
)

// newFrameworks builds the client the way gator does (pkg/gator/test):
// Gatekeeper's K8sValidationTarget and the Rego driver at the gator
// enforcement point. gator also registers Gatekeeper's K8sNativeValidation
// driver, which does not build in this module (k8s.io/apiserver v0.37.2
// changed admission.Attributes to LazyObject), so every template runs Rego.
func newFrameworks(_ string) (*constraintclient.Client, error) {
	opts := []constraintclient.Opt{constraintclient.Targets(&target.K8sValidationTarget{})}
	driver, err := fwrego.New()
	if err != nil {
		return nil, err
	}
	opts = append(opts, constraintclient.Driver(driver), constraintclient.EnforcementPoints(util.GatorEnforcementPoint))
	return constraintclient.NewClient(opts...)
}

// addToFrameworks adds one policy and returns why it could not, or "".
func addToFrameworks(ctx context.Context, c *constraintclient.Client, pol corpus.Policy) string {
	// As gator's reader does: JSON round trip into the v1 type, then the
	// versionless form.
	b, err := json.Marshal(pol.Template.Object)
	if err != nil {
		return err.Error()
	}
	var v1 templatesv1.ConstraintTemplate
	if err := json.Unmarshal(b, &v1); err != nil {
		return "decoding template: " + err.Error()
	}
	t, err := v1.ToVersionless()
	if err != nil {
		return "converting template: " + err.Error()
	}
	if _, err := c.AddTemplate(ctx, t); err != nil {
		return "AddTemplate: " + err.Error()
	}
	for _, d := range pol.Constraints {
		u := &unstructured.Unstructured{Object: runtime.DeepCopyJSON(d.Object)}
		if _, err := c.AddConstraint(ctx, u); err != nil {
			_, _ = c.RemoveTemplate(ctx, t)
			return fmt.Sprintf("AddConstraint %s: %v", d.Name(), err)
		}
	}
	return ""
}

// BouncerReview reviews obj the way `bouncer test` does.
func BouncerReview(ctx context.Context, e *bengine.Engine, obj, ns map[string]any) (*bengine.Response, error) {
	return e.Review(ctx, bengine.ObjectReview(obj, "CREATE", ns))
}

// FrameworksInput is an object prepared for the frameworks client the way
// gator prepares it (AugmentedUnstructured with its Namespace).
func FrameworksInput(obj, ns map[string]any) (target.AugmentedUnstructured, error) {
	au := target.AugmentedUnstructured{
		Object: unstructured.Unstructured{Object: runtime.DeepCopyJSON(obj)},
		Source: mutationtypes.SourceTypeOriginal,
	}
	if ns != nil {
		var n corev1.Namespace
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(ns, &n); err != nil {
			return au, err
		}
		au.Namespace = &n
	}
	return au, nil
}

// FrameworksReview reviews an input at gator's enforcement point.
func FrameworksReview(ctx context.Context, c *constraintclient.Client, au target.AugmentedUnstructured) ([]string, error) {
	resp, err := c.Review(ctx, au, reviews.EnforcementPoint(util.GatorEnforcementPoint))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range resp.Results() {
		out = append(out, r.Constraint.GetName())
	}
	return out, nil
}
