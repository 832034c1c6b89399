package cel

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"

	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/engine/cel/internal/celeval"
)

// Request is a review in the apiserver's admission form: what the
// Kubernetes CEL admission code (ValidatingAdmissionPolicy's validator and
// matchers) reads. It is built once per review and shared by every template
// and policy evaluated for it; it must not be used by two goroutines at once.
type Request struct {
	// Attributes carries the objects, converted to CEL values lazily and once.
	Attributes *admission.VersionedAttributes
	// Resource is the matched resource (request.resource).
	Resource schema.GroupVersionResource
	// Namespace is the object's Namespace (namespaceObject), nil for
	// cluster-scoped objects and Namespaces themselves.
	Namespace *corev1.Namespace

	vals *celeval.Values // the CEL values, built on first use by a template
}

// values converts the request once, on first use by a template.
func (r *Request) values() (*celeval.Values, error) {
	if r.vals == nil {
		vals, err := celeval.NewValues(r.Attributes, r.Resource, r.Namespace)
		if err != nil {
			return nil, err
		}
		r.vals = vals
	}
	return r.vals, nil
}

// NewRequest converts a review. A namespaced review without a Namespace
// object gets one with only its name and the kubernetes.io/metadata.name
// label, which the apiserver sets on every Namespace.
func NewRequest(r *engine.Review) (*Request, error) {
	var obj, old runtime.Object
	if r.Object != nil {
		obj = &unstructured.Unstructured{Object: r.Object}
	}
	if r.OldObject != nil {
		old = &unstructured.Unstructured{Object: r.OldObject}
	}
	var opts runtime.Object
	if r.Options != nil {
		opts = &unstructured.Unstructured{Object: r.Options}
	}
	gvk := schema.GroupVersionKind{Group: r.Kind.Group, Version: r.Kind.Version, Kind: r.Kind.Kind}
	gvr := schema.GroupVersionResource{Group: r.Resource.Group, Version: r.Resource.Version, Resource: r.Resource.Resource}
	op := r.Operation
	if op == "" {
		op = "CREATE"
	}
	attrs := admission.NewAttributesRecord(obj, old, gvk, r.Namespace, r.Name, gvr, r.SubResource,
		admission.Operation(op), opts, r.DryRun, userInfo(r.UserInfo))
	va := &admission.VersionedAttributes{
		Attributes:         attrs,
		VersionedKind:      gvk,
		VersionedObject:    admission.NewLazyObject(obj),
		VersionedOldObject: admission.NewLazyObject(old),
	}
	req := &Request{Attributes: va, Resource: gvr}
	isNamespace := gvk.Group == "" && gvk.Kind == "Namespace"
	if r.Namespace != "" && !isNamespace {
		ns, err := NamespaceFrom(r.NamespaceObject, r.Namespace)
		if err != nil {
			return nil, err
		}
		req.Namespace = ns
	}
	return req, nil
}

// NamespaceFrom converts a Namespace object in JSON form; a nil object
// gives a Namespace with only name and the kubernetes.io/metadata.name label.
func NamespaceFrom(obj map[string]any, name string) (*corev1.Namespace, error) {
	if obj == nil {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name:   name,
			Labels: map[string]string{"kubernetes.io/metadata.name": name},
		}}, nil
	}
	ns := &corev1.Namespace{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj, ns); err != nil {
		return nil, fmt.Errorf("namespace %q: %w", name, err)
	}
	return ns, nil
}

func userInfo(m map[string]any) user.Info {
	info := &user.DefaultInfo{}
	if m == nil {
		return info
	}
	info.Name, _ = m["username"].(string)
	info.UID, _ = m["uid"].(string)
	info.Groups = stringList(m["groups"])
	if extra, ok := m["extra"].(map[string]any); ok {
		info.Extra = map[string][]string{}
		for k, v := range extra {
			info.Extra[k] = stringList(v)
		}
	}
	return info
}

func stringList(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
