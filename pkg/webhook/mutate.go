package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/mutation"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// PathMutate is the mutating webhook's path.
const PathMutate = "/v1/mutate"

// AnnotationMutations lists, on a mutated object, the mutators that changed
// it (kind/name, comma-separated), when the handler is asked to write it.
const AnnotationMutations = "bouncer.dev/mutations"

// mutationNotNeeded admits, unchanged, a request no mutator applies to,
// from its head alone.
func (h *Handler) mutationNotNeeded(head *requestHead) (*admissionv1.AdmissionResponse, string, bool) {
	k, op := head.Request.Kind, head.Request.Operation
	if (op == "CREATE" || op == "UPDATE") && h.Mutators.AppliesTo(k.Group, k.Version, k.Kind, op) {
		return nil, "", false
	}
	if h.Metrics != nil {
		// Counted, not timed: the head's decode is all it took.
		h.Metrics.MutationRequests.WithLabelValues("unchanged").Inc()
	}
	return allowed(), "unchanged", true
}

// reviewMutation applies the mutators to a CREATE or UPDATE and answers
// with the JSON patch that turns the request's object into the mutated one.
func (h *Handler) reviewMutation(ctx context.Context, _ map[string]any, r *engine.Review) (*admissionv1.AdmissionResponse, string) {
	start := time.Now()
	outcome := "error"
	var applied []mutation.ID
	defer func() {
		if h.Metrics == nil {
			return
		}
		h.Metrics.MutationRequests.WithLabelValues(outcome).Inc()
		h.Metrics.MutationDuration.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
		for _, id := range applied {
			h.Metrics.MutatorsApplied.WithLabelValues(id.Kind, id.Name).Inc()
		}
	}()
	if h.Mutators == nil || r.Object == nil || (r.Operation != "CREATE" && r.Operation != "UPDATE") {
		outcome = "unchanged"
		return allowed(), outcome
	}
	ns := r.Namespace
	isNamespace := r.Kind.Group == "" && r.Kind.Kind == "Namespace"
	if isNamespace {
		ns = r.Name
	}
	if ns != "" && h.Exempt != nil && h.Exempt(ns) {
		outcome = "exempt"
		return allowed(), outcome
	}
	var nsObj *unstructured.Unstructured
	switch {
	case isNamespace:
		nsObj = &unstructured.Unstructured{Object: r.Object}
	case r.Namespace != "" && h.Namespace != nil:
		if m := h.Namespace(ctx, r.Namespace); m != nil {
			nsObj = &unstructured.Unstructured{Object: m}
		}
	}
	original := r.Object
	obj := &unstructured.Unstructured{Object: runtime.DeepCopyJSONValue(original).(map[string]any)}
	// The admission request's object may lack apiVersion/kind on some
	// paths; mutators match on them.
	typeless := obj.GetKind() == ""
	if typeless {
		obj.SetAPIVersion(r.Kind.GroupVersion())
		obj.SetKind(r.Kind.Kind)
	}
	changed, ids, err := h.Mutators.Mutate(obj, nsObj, r.Operation)
	if typeless {
		// Only the mutators' changes go into the patch.
		delete(obj.Object, "apiVersion")
		delete(obj.Object, "kind")
	}
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil {
		h.logMutation(r, "error", ids, err)
		if h.FailurePolicy == "Fail" {
			return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
				Code: http.StatusInternalServerError, Message: "bouncer could not mutate the request (failurePolicy Fail): " + err.Error(),
			}}, outcome
		}
		outcome = "error-ignored"
		resp := allowed()
		resp.Warnings = []string{"bouncer could not mutate the request and admitted it unchanged (failurePolicy Ignore): " + err.Error()}
		return resp, outcome
	}
	if !changed {
		outcome = "unchanged"
		h.logMutation(r, outcome, nil, nil)
		return allowed(), outcome
	}
	applied = ids
	if h.MutationAnnotations {
		annotations := obj.GetAnnotations()
		if annotations == nil {
			annotations = map[string]string{}
		}
		annotations[AnnotationMutations] = idList(ids)
		obj.SetAnnotations(annotations)
	}
	patch, err := json.Marshal(mutation.Patch(original, obj.Object))
	if err != nil {
		// Values come from JSON and mutators' JSON values: unreachable in
		// practice, but never admit a half-built answer silently.
		h.logMutation(r, "error", ids, err)
		resp := allowed()
		resp.Warnings = []string{"bouncer could not encode its mutation and admitted the object unchanged: " + err.Error()}
		outcome = "error-ignored"
		return resp, outcome
	}
	jsonPatch := admissionv1.PatchTypeJSONPatch
	resp := allowed()
	resp.Patch, resp.PatchType = patch, &jsonPatch
	outcome = "mutated"
	h.logMutation(r, outcome, ids, nil)
	h.recordMutation(r, ids)
	return resp, outcome
}

func idList(ids []mutation.ID) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.String()
	}
	return strings.Join(s, ",")
}

// recordMutation emits one Event on a mutated object, when asked
// (--log-mutations), naming the mutators that changed it.
func (h *Handler) recordMutation(r *engine.Review, ids []mutation.ID) {
	if !h.LogMutations || h.Recorder == nil || r.DryRun {
		return
	}
	ref := &corev1.ObjectReference{Kind: r.Kind.Kind, APIVersion: r.Kind.GroupVersion(), Name: r.Name, Namespace: r.Namespace}
	if ref.Namespace == "" {
		ref.Namespace = metav1.NamespaceDefault
	}
	user, _ := r.UserInfo["username"].(string)
	h.Recorder.Eventf(ref, corev1.EventTypeNormal, "Mutated", "%s %s by %q mutated by %s",
		strings.ToLower(r.Operation), r.Kind.Kind, user, idList(ids))
}

func (h *Handler) logMutation(r *engine.Review, outcome string, ids []mutation.ID, err error) {
	if h.Log == nil {
		return
	}
	attrs := []any{"outcome", outcome, "operation", r.Operation, "kind", r.Kind.Kind, "group", r.Kind.Group,
		"namespace", r.Namespace, "name", r.Name, "uid", r.UID}
	if len(ids) > 0 {
		attrs = append(attrs, "mutators", idList(ids))
	}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	if err != nil || (h.LogMutations && outcome == "mutated") {
		h.Log.Info("mutation", attrs...)
		return
	}
	h.Log.Debug("mutation", attrs...)
}
