package mapgen

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/yaml"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/mutation"
)

func decodeMutator(t testing.TB, src string) *apis.Mutator {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	m := &apis.Mutator{}
	if err := utiljson.Unmarshal(j, m); err != nil {
		t.Fatal(err)
	}
	return m
}

func decodeObject(t testing.TB, src string) *unstructured.Unstructured {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := utiljson.Unmarshal(j, &obj); err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: obj}
}

const podHeader = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop, labels: {app: web}}\n"

func podsSrc() []string { return pods }

// pods are the objects every mutator form is tried on: no spec parts,
// some, all, several containers, values to keep and to replace.
var pods = []string{
	podHeader + "spec: {containers: [{name: app, image: nginx}]}",
	podHeader + "spec: {containers: [{name: app, image: nginx}, {name: sidecar, image: envoy, securityContext: {runAsNonRoot: false}}]}",
	podHeader + "spec: {containers: [{name: app, image: nginx, imagePullPolicy: IfNotPresent, securityContext: {capabilities: {drop: [NET_RAW], add: [NET_ADMIN]}}}]}",
	podHeader + "spec: {securityContext: {runAsNonRoot: true, seccompProfile: {type: Localhost, localhostProfile: p.json}}, containers: [{name: app, image: nginx, securityContext: {capabilities: {drop: [ALL]}, allowPrivilegeEscalation: true}}]}",
	podHeader + "spec: {initContainers: [{name: init, image: busybox}], containers: []}",
	podHeader + "spec: {securityContext: null, initContainers: null, containers: [{name: app, image: nginx, securityContext: {capabilities: {drop: null, add: null}}}, {name: sidecar, image: envoy, securityContext: null}]}",
	"apiVersion: v1\nkind: Pod\nmetadata: {name: bare, namespace: other, labels: {team: keep, app: db}, annotations: {note: x}}\nspec: {containers: [{name: db, image: postgres, ports: [{containerPort: 5432}]}]}",
}

const applyToPods = "applyTo: [{groups: [''], kinds: [Pod], versions: [v1]}]\n"

// forms holds one mutator per form the generator writes.
var forms = map[string]string{
	"assign scalar, parents created": `apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata: {name: non-root}
spec:
  ` + applyToPods + `  location: spec.securityContext.runAsNonRoot
  parameters: {assign: {value: true}}`,
	"assign object value replaces": `apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata: {name: seccomp}
spec:
  ` + applyToPods + `  location: spec.securityContext.seccompProfile
  parameters: {assign: {value: {type: RuntimeDefault}}}`,
	"assign with MustNotExist leaf": `apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata: {name: seccomp-default}
spec:
  ` + applyToPods + `  location: spec.securityContext.seccompProfile.type
  parameters:
    assign: {value: RuntimeDefault}
    pathTests: [{subPath: spec.securityContext.seccompProfile, condition: MustNotExist}]`,
	"assign with MustExist parent": `apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata: {name: only-with-pod-sc}
spec:
  ` + applyToPods + `  location: spec.securityContext.fsGroup
  parameters:
    assign: {value: 2000}
    pathTests: [{subPath: spec.securityContext, condition: MustExist}]`,
	"assign through a globbed list": `apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata: {name: pull-always}
spec:
  ` + applyToPods + `  location: 'spec.containers[name: *].imagePullPolicy'
  parameters: {assign: {value: Always}}`,
	"assign deep through a glob": `apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata: {name: no-escalation}
spec:
  ` + applyToPods + `  location: 'spec.containers[name: *].securityContext.allowPrivilegeEscalation'
  parameters: {assign: {value: false}}`,
	"assign through a keyed list (appends when missing)": `apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata: {name: sidecar-policy}
spec:
  ` + applyToPods + `  location: 'spec.containers[name: sidecar].imagePullPolicy'
  parameters: {assign: {value: Never}}`,
	"assign through a keyed list that must exist": `apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata: {name: sidecar-if-there}
spec:
  ` + applyToPods + `  location: 'spec.containers[name: sidecar].securityContext.runAsUser'
  parameters:
    assign: {value: 1000}
    pathTests: [{subPath: "spec.containers[name: sidecar]", condition: MustExist}]`,
	"assign a keyed list element": `apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata: {name: add-sidecar}
spec:
  ` + applyToPods + `  location: 'spec.containers[name: sidecar]'
  parameters: {assign: {value: {name: sidecar, image: envoy:v2}}}`,
	"assign with an integer list key": `apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata: {name: port-name}
spec:
  ` + applyToPods + `  location: 'spec.containers[name: *].ports[containerPort: 5432].name'
  parameters: {assign: {value: pg}}`,
	"assign fromMetadata namespace": `apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata: {name: sa-from-ns}
spec:
  ` + applyToPods + `  location: spec.serviceAccountName
  parameters: {assign: {fromMetadata: {field: namespace}}}`,
	"assign a null-free list value": `apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata: {name: tolerations}
spec:
  ` + applyToPods + `  location: spec.tolerations
  parameters: {assign: {value: [{key: a, operator: Exists}, {key: b, value: "1", effect: NoSchedule}]}}`,
	"modifyset merge": `apiVersion: mutations.gatekeeper.sh/v1
kind: ModifySet
metadata: {name: drop-all}
spec:
  ` + applyToPods + `  location: 'spec.containers[name: *].securityContext.capabilities.drop'
  parameters: {operation: merge, values: {fromList: [ALL, ALL]}}`,
	"modifyset prune": `apiVersion: mutations.gatekeeper.sh/v1
kind: ModifySet
metadata: {name: no-net-admin}
spec:
  ` + applyToPods + `  location: 'spec.containers[name: *].securityContext.capabilities.add'
  parameters: {operation: prune, values: {fromList: [NET_ADMIN, SYS_ADMIN]}}`,
	"assignmetadata value": `apiVersion: mutations.gatekeeper.sh/v1
kind: AssignMetadata
metadata: {name: team}
spec:
  location: metadata.labels.team
  parameters: {assign: {value: platform}}`,
	"assignmetadata annotation with a slash": `apiVersion: mutations.gatekeeper.sh/v1
kind: AssignMetadata
metadata: {name: owner}
spec:
  location: "metadata.annotations.\"example.com/owner~x\""
  parameters: {assign: {value: ops}}`,
	"assignmetadata fromMetadata namespace": `apiVersion: mutations.gatekeeper.sh/v1
kind: AssignMetadata
metadata: {name: ns-label}
spec:
  match: {kinds: [{apiGroups: [""], kinds: [Pod]}]}
  location: metadata.labels.namespace
  parameters: {assign: {fromMetadata: {field: namespace}}}`,
	"assign matching namespaces and name globs": `apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata: {name: shop-only}
spec:
  ` + applyToPods + `  match: {namespaces: ["sh*"], excludedNamespaces: [kube-system], name: "w*", kinds: [{apiGroups: [""], kinds: [Pod]}]}
  location: spec.priorityClassName
  parameters: {assign: {value: high}}`,
}

// TestGeneratedPolicyMutatesAsBouncer compiles each form's policy with the
// apiserver's compiler, runs it with the apiserver's JSON patcher, and
// holds the result to pkg/mutation's on every Pod.
func TestGeneratedPolicyMutatesAsBouncer(t *testing.T) {
	ctx := context.Background()
	for name, src := range forms {
		t.Run(name, func(t *testing.T) {
			in := decodeMutator(t, src)
			g, err := Generate(in, Options{})
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			if g.Binding.Spec.PolicyName != g.Policy.Name || g.Policy.Spec.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
				t.Fatalf("binding %q for policy %q, reinvocation %q", g.Binding.Spec.PolicyName, g.Policy.Name, g.Policy.Spec.ReinvocationPolicy)
			}
			p, err := Compile(g.Policy)
			if err != nil {
				t.Fatalf("Compile: %v\n%s", err, g.Policy.Spec.Mutations[0].JSONPatch.Expression)
			}
			m, err := mutation.Compile(in)
			if err != nil {
				t.Fatal(err)
			}
			sys := mutation.NewSystem()
			if err := sys.Add(m); err != nil {
				t.Fatal(err)
			}
			changedAny := false
			for _, src := range pods {
				obj := decodeObject(t, src)
				want := obj.DeepCopy()
				nsObj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": obj.GetNamespace()}}}
				changed, _, err := sys.Mutate(want, nsObj, "CREATE")
				if err != nil {
					t.Fatalf("mutation.Mutate: %v", err)
				}
				changedAny = changedAny || changed
				ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: obj.GetNamespace()}}
				got, _, err := p.Apply(ctx, obj, ns, "CREATE")
				if err != nil {
					t.Fatalf("Apply on %s: %v\n%s", obj.GetName(), err, g.Policy.Spec.Mutations[0].JSONPatch.Expression)
				}
				if !reflect.DeepEqual(normal(t, got.Object), normal(t, want.Object)) {
					gy, _ := yaml.Marshal(got.Object)
					wy, _ := yaml.Marshal(want.Object)
					t.Errorf("pod %s:\nMAP gives:\n%s\nBouncer gives:\n%s\nexpression:\n%s", src, gy, wy, g.Policy.Spec.Mutations[0].JSONPatch.Expression)
				}
			}
			if !changedAny {
				t.Errorf("the mutator changed none of the pods: the comparison proves nothing")
			}
		})
	}
}

// normal round-trips through JSON so that int and int64, and the patcher's
// float64 numbers, compare alike.
func normal(t testing.TB, obj map[string]any) map[string]any {
	t.Helper()
	b, err := utiljson.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := utiljson.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMatchConditionsSkipOtherObjects(t *testing.T) {
	g, err := Generate(decodeMutator(t, forms["assign matching namespaces and name globs"]), Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(g.Policy)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ns, name string
		match    bool
	}{
		{"shop", "web", true}, {"shopping", "worker", true}, {"kube-system", "web", false},
		{"other", "web", false}, {"shop", "api", false},
	} {
		obj := decodeObject(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: "+tc.name+", namespace: "+tc.ns+"}\nspec: {containers: [{name: a, image: b}]}")
		_, matched, err := p.Apply(context.Background(), obj, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tc.ns}}, "CREATE")
		if err != nil {
			t.Fatal(err)
		}
		if matched != tc.match {
			t.Errorf("%s/%s: matched %v, want %v", tc.ns, tc.name, matched, tc.match)
		}
	}
}

func TestMatchConstraints(t *testing.T) {
	in := decodeMutator(t, `apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata: {name: deploy}
spec:
  applyTo: [{groups: [apps], kinds: [Deployment, StatefulSet], versions: [v1], operations: [CREATE]}]
  match:
    scope: Namespaced
    labelSelector: {matchLabels: {tier: web}}
    namespaceSelector: {matchExpressions: [{key: env, operator: In, values: [prod]}]}
  location: spec.revisionHistoryLimit
  parameters: {assign: {value: 3}}`)
	g, err := Generate(in, Options{FailurePolicy: admissionregistrationv1.Ignore})
	if err != nil {
		t.Fatal(err)
	}
	mc := g.Policy.Spec.MatchConstraints
	r := mc.ResourceRules[0]
	if len(mc.ResourceRules) != 1 || !reflect.DeepEqual(r.Resources, []string{"deployments", "statefulsets"}) ||
		!reflect.DeepEqual(r.APIGroups, []string{"apps"}) || !reflect.DeepEqual(r.Operations, []admissionregistrationv1.OperationType{"CREATE"}) ||
		*r.Scope != admissionregistrationv1.NamespacedScope {
		t.Errorf("resource rules: %+v", mc.ResourceRules)
	}
	if mc.ObjectSelector.MatchLabels["tier"] != "web" || mc.NamespaceSelector.MatchExpressions[0].Key != "env" {
		t.Errorf("selectors: %+v %+v", mc.ObjectSelector, mc.NamespaceSelector)
	}
	if *g.Policy.Spec.FailurePolicy != admissionregistrationv1.Ignore {
		t.Errorf("failurePolicy %s", *g.Policy.Spec.FailurePolicy)
	}
	if g.Policy.Name != "bouncer-assign-deploy" || g.Policy.Annotations[MutatorAnnotation] != "Assign/deploy" {
		t.Errorf("meta: %+v", g.Policy.ObjectMeta)
	}
	// The typed API reads what was generated back unchanged.
	b, err := yaml.Marshal(g.Policy)
	if err != nil {
		t.Fatal(err)
	}
	back := &admissionregistrationv1.MutatingAdmissionPolicy{}
	if err := yaml.UnmarshalStrict(b, back); err != nil {
		t.Fatalf("decoding the generated policy: %v", err)
	}
	if !reflect.DeepEqual(back.Spec, g.Policy.Spec) {
		t.Errorf("round trip changed the policy")
	}
	var _ runtime.Object = back
}

func TestUnsupported(t *testing.T) {
	for name, tc := range map[string]struct{ src, part string }{
		"AssignImage": {`apiVersion: mutations.gatekeeper.sh/v1alpha1
kind: AssignImage
metadata: {name: mirror}
spec:
  ` + applyToPods + `  location: 'spec.containers[name: *].image'
  parameters: {assignDomain: mirror.example.com}`, "spec.parameters"},
		"source Generated": {`apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata: {name: gen}
spec:
  ` + applyToPods + `  match: {source: Generated}
  location: spec.priorityClassName
  parameters: {assign: {value: x}}`, "spec.match.source"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Generate(decodeMutator(t, tc.src), Options{})
			var ue *UnsupportedError
			if !errors.As(err, &ue) || ue.Part != tc.part || !errors.Is(err, ErrUnsupported) || ue.Reason == "" {
				t.Fatalf("got %v, want an UnsupportedError on %s", err, tc.part)
			}
		})
	}
}

func TestInvalidMutatorIsAnInputError(t *testing.T) {
	_, err := Generate(decodeMutator(t, `apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata: {name: bad}
spec:
  `+applyToPods+`  location: "spec.containers[name: *"
  parameters: {assign: {value: x}}`), Options{})
	if err == nil || errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "location") {
		t.Fatalf("got %v, want a location error", err)
	}
}

// A Namespace is matched by its own name, as pkg/match does.
func TestNamespaceMatchesByItsName(t *testing.T) {
	in := decodeMutator(t, `apiVersion: mutations.gatekeeper.sh/v1
kind: AssignMetadata
metadata: {name: ns-owner}
spec:
  match: {namespaces: ["shop*"], kinds: [{apiGroups: [""], kinds: [Namespace]}]}
  location: metadata.labels.owner
  parameters: {assign: {value: shop-team}}`)
	g, err := Generate(in, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rs := g.Policy.Spec.MatchConstraints.ResourceRules; len(rs) != 1 || !reflect.DeepEqual(rs[0].Resources, []string{"namespaces"}) {
		t.Fatalf("resource rules %+v", rs)
	}
	p, err := Compile(g.Policy)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"shop": true, "shopfront": true, "other": false} {
		obj := decodeObject(t, "apiVersion: v1\nkind: Namespace\nmetadata: {name: "+name+"}")
		got, matched, err := p.Apply(context.Background(), obj, nil, "CREATE")
		if err != nil {
			t.Fatal(err)
		}
		if matched != want || want && got.GetLabels()["owner"] != "shop-team" {
			t.Errorf("Namespace %s: matched %v, labels %v; want matched %v", name, matched, got.GetLabels(), want)
		}
	}
}
