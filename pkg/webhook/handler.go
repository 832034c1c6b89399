// Package webhook answers admission/v1 AdmissionReview requests with the
// engine's verdict: deny lists every violated constraint, warn returns
// admission warnings, dryrun admits and records. Its mutating path applies
// the mutators of a mutation.System and answers with a JSON patch. It also checks
// ConstraintTemplates and constraints themselves, so broken policies are
// refused at apply time with the reason.
//
// The handler never panics on bad input: malformed or oversized bodies,
// wrong content types and unknown API versions get an HTTP error; anything
// that parses gets a well-formed AdmissionReview response.
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/metrics"
	"github.com/bouncer-policy/bouncer/pkg/mutation"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utiljson "k8s.io/apimachinery/pkg/util/json"
)

// MaxBodyBytes bounds a request body. The apiserver caps objects at about
// 3 MiB and a review carries at most two of them.
const MaxBodyBytes = 8 << 20

// Paths served.
const (
	PathResources = "/v1/admit"
	PathPolicies  = "/v1/admit-policies"
	// PathDrift refuses manual edits of git-synced objects (preventDrift).
	PathDrift = "/v1/admit-drift"
)

// EventRecorder records a Kubernetes Event about an object.
type EventRecorder interface {
	Eventf(ref *corev1.ObjectReference, eventType, reason, messageFmt string, args ...any)
}

// Handler serves both webhooks.
type Handler struct {
	Engine *engine.Engine
	// Exempt reports whether a namespace is exempt from the webhook
	// (Config's excludedNamespaces for "webhook", Bouncer's own namespace…).
	Exempt func(namespace string) bool
	// Namespace returns a Namespace object by name for namespaceSelector;
	// nil when unknown.
	Namespace func(ctx context.Context, name string) map[string]any
	Recorder  EventRecorder
	Metrics   *metrics.Metrics
	Log       *slog.Logger
	// Timeout bounds one review; it must be below the webhook's timeout.
	Timeout time.Duration
	// FailurePolicy is what an evaluation error or a review out of time
	// leads to: "Fail" denies with the reason, anything else ("Ignore")
	// admits with a warning. A CEL template's own failurePolicy: Ignore is
	// applied by the engine, and its explicit Fail denies whatever this says.
	FailurePolicy string
	// Drift returns why an update or deletion of a git-synced object (its
	// old version) by user is refused, or "" to admit it; nil admits all.
	Drift func(oldObject map[string]any, user string) string
	// Mutators, when set, are applied on PathMutate (the mutating webhook).
	Mutators *mutation.System
	// ExpansionMutators, when set, are applied to the resultants of
	// expansion instead of Mutators: with mutation moved into the
	// apiserver (serve --sync-map --mutation=false) the Pods are still
	// stored mutated.
	ExpansionMutators *mutation.System
	// MutationAnnotations writes AnnotationMutations on mutated objects.
	MutationAnnotations bool
	// LogMutations logs every mutation and records an Event on the object.
	LogMutations bool
}

// Routes registers the handler's paths on mux.
func (h *Handler) Routes(mux *http.ServeMux) {
	mux.HandleFunc(PathResources, h.serve(h.reviewResource, h.resourceNotConcerned, "resources"))
	mux.HandleFunc(PathPolicies, h.serve(h.reviewPolicy, nil, "policies"))
	mux.HandleFunc(PathDrift, h.serve(h.reviewDrift, nil, "drift"))
	if h.Mutators != nil {
		mux.HandleFunc(PathMutate, h.serve(h.reviewMutation, h.mutationNotNeeded, "mutation"))
	}
}

type reviewFunc func(ctx context.Context, req map[string]any, r *engine.Review) (*admissionv1.AdmissionResponse, string)

// requestHead is the part of an AdmissionReview that says what a request
// is about, without its objects.
type requestHead struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Request    *struct {
		UID       string                  `json:"uid"`
		Kind      metav1.GroupVersionKind `json:"kind"`
		Operation string                  `json:"operation"`
	} `json:"request"`
}

// shortcutFunc answers a request from its head alone, or says (ok false)
// that it needs the whole review. Decoding the objects into maps is most
// of what a request that no policy concerns costs.
type shortcutFunc func(head *requestHead) (resp *admissionv1.AdmissionResponse, verdict string, ok bool)

func (h *Handler) serve(review reviewFunc, shortcut shortcutFunc, webhook string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		verdict := "error"
		defer func() {
			if h.Metrics != nil {
				h.Metrics.Requests.WithLabelValues(webhook, verdict).Inc()
				h.Metrics.Latency.WithLabelValues(verdict).Observe(time.Since(start).Seconds())
			}
		}()
		if r.Method != http.MethodPost {
			http.Error(w, "method not allowed: use POST", http.StatusMethodNotAllowed)
			return
		}
		if ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || ct != "application/json" {
			http.Error(w, "unsupported content type: want application/json", http.StatusUnsupportedMediaType)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
		if err != nil {
			http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
			return
		}
		if len(body) > MaxBodyBytes {
			http.Error(w, fmt.Sprintf("body larger than %d bytes", MaxBodyBytes), http.StatusRequestEntityTooLarge)
			return
		}
		if shortcut != nil {
			var head requestHead
			// A head that does not decode, or names no kind, falls
			// through to the full decode, which reports what is wrong.
			if json.Unmarshal(body, &head) == nil && head.APIVersion == "admission.k8s.io/v1" && head.Kind == "AdmissionReview" &&
				head.Request != nil && head.Request.Kind.Kind != "" {
				if resp, v, ok := shortcut(&head); ok {
					verdict = v
					h.respond(w, head.Request.UID, resp)
					return
				}
			}
		}
		var doc map[string]any
		if err := utiljson.Unmarshal(body, &doc); err != nil {
			http.Error(w, "malformed AdmissionReview: "+err.Error(), http.StatusBadRequest)
			return
		}
		if av, _ := doc["apiVersion"].(string); av != "admission.k8s.io/v1" || doc["kind"] != "AdmissionReview" {
			http.Error(w, fmt.Sprintf("unsupported review %v %v: want admission.k8s.io/v1 AdmissionReview", doc["apiVersion"], doc["kind"]), http.StatusBadRequest)
			return
		}
		req, _ := doc["request"].(map[string]any)
		if req == nil {
			http.Error(w, "AdmissionReview has no request", http.StatusBadRequest)
			return
		}
		uid, _ := req["uid"].(string)
		var resp *admissionv1.AdmissionResponse
		er, err := engine.ReviewFromRequest(req)
		if err != nil {
			resp = &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
				Code: http.StatusBadRequest, Message: "bouncer could not read the request: " + err.Error(),
			}}
			verdict = "error"
		} else {
			ctx := r.Context()
			if h.Timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, h.Timeout)
				defer cancel()
			}
			resp, verdict = review(ctx, req, er)
		}
		h.respond(w, uid, resp)
	}
}

// respond writes resp as the AdmissionReview answering request uid.
func (h *Handler) respond(w http.ResponseWriter, uid string, resp *admissionv1.AdmissionResponse) {
	resp.UID = types.UID(uid)
	out := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Response: resp,
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(out); err != nil && h.Log != nil {
		h.Log.Error("writing admission response", "err", err)
	}
}

func allowed() *admissionv1.AdmissionResponse { return &admissionv1.AdmissionResponse{Allowed: true} }

// failClosed reports whether an evaluation error denies: a template's own
// explicit policy wins, else the webhook's.
func (h *Handler) failClosed(templatePolicy string) bool {
	if templatePolicy != "" {
		return templatePolicy == "Fail"
	}
	return h.FailurePolicy == "Fail"
}

// templatePolicy is the failurePolicy a constraint kind's template sets
// itself (K8sNativeValidation source.failurePolicy), or "".
func (h *Handler) templatePolicy(kind string) string {
	for _, t := range h.Engine.Templates() {
		if t.Kind != kind || t.Engine != apis.EngineCEL {
			continue
		}
		for _, c := range t.Object.Spec.Targets[0].Code {
			if c.Engine != apis.EngineCEL || c.Source == nil {
				continue
			}
			var src struct {
				FailurePolicy string `json:"failurePolicy"`
			}
			if json.Unmarshal(c.Source.Raw, &src) == nil {
				return src.FailurePolicy
			}
		}
	}
	return ""
}

func (h *Handler) countError(ctx context.Context, denied bool) {
	outcome := "admitted"
	if denied {
		outcome = "denied"
	}
	if ctx.Err() != nil {
		outcome += "_timeout"
	}
	if h.Metrics != nil {
		h.Metrics.EvalErrors.WithLabelValues(outcome).Inc()
	}
}

// resourceNotConcerned admits, from its head alone, a request for a kind
// no constraint, expansion template or native policy concerns.
func (h *Handler) resourceNotConcerned(head *requestHead) (*admissionv1.AdmissionResponse, string, bool) {
	k := head.Request.Kind
	if h.Engine.Concerns(engine.GVK{Group: k.Group, Version: k.Version, Kind: k.Kind}) {
		return nil, "", false
	}
	return allowed(), "allow", true
}

// reviewResource evaluates an ordinary object.
func (h *Handler) reviewResource(ctx context.Context, _ map[string]any, r *engine.Review) (*admissionv1.AdmissionResponse, string) {
	ns := r.Namespace
	if r.Kind.Group == "" && r.Kind.Kind == "Namespace" {
		ns = r.Name
	}
	if ns != "" && h.Exempt != nil && h.Exempt(ns) {
		return allowed(), "exempt"
	}
	if r.Namespace != "" && r.NamespaceObject == nil && h.Namespace != nil {
		r.NamespaceObject = h.Namespace(ctx, r.Namespace)
	}
	if r.Kind.Group == "" && r.Kind.Kind == "Namespace" && r.NamespaceObject == nil {
		r.NamespaceObject = r.Object
	}
	opts := []engine.ReviewOption{engine.AtEnforcementPoint(apis.PointWebhook)}
	if m := h.expansionMutators(); m != nil {
		// The object itself arrives mutated (mutating webhooks run first);
		// the Pods a Deployment will create must be judged mutated too.
		opts = append(opts, engine.MutateExpanded(m.MutateJSON))
	}
	res, err := h.Engine.Review(ctx, r, opts...)
	if err != nil {
		// The whole review failed (e.g. it ran out of time before any
		// constraint answered): the failure policy decides.
		h.logDecision(r, "error", nil, err)
		h.countError(ctx, h.failClosed(""))
		if h.failClosed("") {
			return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
				Code: http.StatusInternalServerError, Message: "bouncer could not evaluate the request (failurePolicy Fail): " + err.Error(),
			}}, "error"
		}
		resp := allowed()
		resp.Warnings = []string{"bouncer could not evaluate the request and admitted it (failurePolicy Ignore): " + err.Error()}
		return resp, "error-ignored"
	}
	var denies, warns []string
	for _, v := range res.Results {
		if h.Metrics != nil {
			h.Metrics.Violations.WithLabelValues(v.EnforcementAction).Inc()
		}
		line := fmt.Sprintf("[%s] %s", v.ConstraintName, v.Message)
		switch v.EnforcementAction {
		case apis.ActionDeny:
			denies = append(denies, line)
		case apis.ActionWarn:
			warns = append(warns, line)
		}
		// Scoped constraints may ask for a warning besides a denial.
		for _, a := range v.ScopedActions {
			if a == apis.ActionWarn && v.EnforcementAction != apis.ActionWarn {
				warns = append(warns, line)
			}
		}
	}
	var evalErrs []string
	for _, e := range res.Errors {
		fail := h.failClosed(h.templatePolicy(e.ConstraintKind))
		h.countError(ctx, fail)
		if fail {
			evalErrs = append(evalErrs, e.Error())
			continue
		}
		warns = append(warns, "admitted despite an evaluation error (failurePolicy Ignore): "+e.Error())
	}
	sort.Strings(denies)
	sort.Strings(warns)
	h.record(r, res.Results)
	verdict := "allow"
	resp := allowed()
	resp.Warnings = warns
	if len(warns) > 0 {
		verdict = "warn"
	}
	if len(denies) > 0 || len(evalErrs) > 0 {
		verdict = "deny"
		msg := strings.Join(append(denies, evalErrs...), "\n")
		resp.Allowed = false
		resp.Result = &metav1.Status{Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden, Message: msg}
	}
	h.logDecision(r, verdict, res, nil)
	return resp, verdict
}

// record emits one Event per denial, warning and dry-run violation, on the
// object (in its namespace), so platform teams see refusals with kubectl.
func (h *Handler) record(r *engine.Review, results []engine.Result) {
	if h.Recorder == nil || len(results) == 0 || r.DryRun {
		return
	}
	ref := &corev1.ObjectReference{
		Kind:       r.Kind.Kind,
		APIVersion: r.Kind.GroupVersion(),
		Name:       r.Name,
		Namespace:  r.Namespace,
	}
	if ref.Namespace == "" {
		ref.Namespace = metav1.NamespaceDefault
	}
	for _, v := range results {
		reason, eventType := "FailedAdmission", corev1.EventTypeWarning
		switch v.EnforcementAction {
		case apis.ActionWarn:
			reason = "WarningAdmission"
		case apis.ActionDryRun:
			reason, eventType = "DryrunViolation", corev1.EventTypeNormal
		}
		user, _ := r.UserInfo["username"].(string)
		h.Recorder.Eventf(ref, eventType, reason, "%s %s by %q: [%s/%s] %s",
			strings.ToLower(r.Operation), r.Kind.Kind, user, v.ConstraintKind, v.ConstraintName, v.Message)
	}
}

func (h *Handler) logDecision(r *engine.Review, verdict string, res *engine.Response, err error) {
	if h.Log == nil {
		return
	}
	attrs := []any{"verdict", verdict, "operation", r.Operation, "kind", r.Kind.Kind, "group", r.Kind.Group,
		"namespace", r.Namespace, "name", r.Name, "uid", r.UID}
	if res != nil {
		var cs []string
		for _, v := range res.Results {
			cs = append(cs, v.ConstraintKind+"/"+v.ConstraintName+":"+v.EnforcementAction)
		}
		attrs = append(attrs, "violations", cs, "evaluated", res.Evaluated, "errors", len(res.Errors))
	}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	if verdict == "allow" || verdict == "exempt" {
		h.Log.Debug("admission", attrs...)
		return
	}
	h.Log.Info("admission", attrs...)
}

// reviewPolicy checks ConstraintTemplates and constraints before they are
// stored, so a broken template or bad parameters are refused with the reason.
func (h *Handler) reviewPolicy(_ context.Context, _ map[string]any, r *engine.Review) (*admissionv1.AdmissionResponse, string) {
	if r.Operation == "DELETE" || r.Object == nil {
		return allowed(), "allow"
	}
	raw, err := json.Marshal(r.Object)
	if err != nil {
		return deny(err), "deny"
	}
	switch r.Kind.Group {
	case apis.TemplatesGroup:
		var t apis.ConstraintTemplate
		if err := json.Unmarshal(raw, &t); err != nil {
			return deny(fmt.Errorf("decoding ConstraintTemplate: %w", err)), "deny"
		}
		if _, err := h.Engine.CompileEveryEngine(&t); err != nil {
			return deny(err), "deny"
		}
	case apis.ConstraintsGroup:
		var c apis.Constraint
		if err := json.Unmarshal(raw, &c); err != nil {
			return deny(fmt.Errorf("decoding constraint: %w", err)), "deny"
		}
		if err := h.Engine.CheckConstraint(&c); err != nil {
			var nt *engine.NoTemplateError
			if errors.As(err, &nt) {
				// This replica may not have loaded the template yet; the CRD's
				// schema still checks the parameters.
				resp := allowed()
				resp.Warnings = []string{err.Error()}
				return resp, "warn"
			}
			return deny(err), "deny"
		}
	case apis.MutationsGroup:
		// As Gatekeeper does, a mutator that would not load is refused;
		// one stored anyway (Bouncer down: this webhook fails open) is
		// reported in its status, and its last good version stays.
		if _, err := mutation.Decode(r.Object); err != nil {
			return deny(err), "deny"
		}
	}
	return allowed(), "allow"
}

// reviewDrift refuses changes of objects a PolicySync keeps, when it
// prevents drift.
func (h *Handler) reviewDrift(_ context.Context, _ map[string]any, r *engine.Review) (*admissionv1.AdmissionResponse, string) {
	if h.Drift == nil || r.OldObject == nil || (r.Operation != "UPDATE" && r.Operation != "DELETE") {
		return allowed(), "allow"
	}
	user, _ := r.UserInfo["username"].(string)
	if msg := h.Drift(r.OldObject, user); msg != "" {
		return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
			Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden, Message: msg,
		}}, "deny"
	}
	return allowed(), "allow"
}

func deny(err error) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
		Code: http.StatusUnprocessableEntity, Reason: metav1.StatusReasonInvalid, Message: err.Error(),
	}}
}

func (h *Handler) expansionMutators() *mutation.System {
	if h.ExpansionMutators != nil {
		return h.ExpansionMutators
	}
	return h.Mutators
}
