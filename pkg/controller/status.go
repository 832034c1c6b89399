package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/client-go/util/retry"
)

// lastGoodStatus is status.lastGood: the newest version of an object that
// compiled and validated, which stays enforced while a newer one is broken.
type lastGoodStatus struct {
	Generation int64 `json:"generation"`
	Spec       any   `json:"spec"`
}

// objectStatus is what one reconcile found.
type objectStatus struct {
	gen         int64 // metadata.generation reconciled
	enforcedGen int64 // generation enforced by this replica, 0 for none
	problem     error // why gen is not enforced
	// notReadyReason overrides the Ready=False reason (e.g. TemplateNotReady).
	notReadyReason string
	lastGood       *lastGoodStatus // written when gen is good
	extra          map[string]any  // further status fields, leader only
	// mutator writes byPod in the mutators' shape; conflict is the schema
	// conflict that keeps an otherwise good mutator from applying.
	mutator  bool
	conflict error
	// noMAP says why --sync-map wrote no MutatingAdmissionPolicy for a
	// mutator the webhook applies.
	noMAP error
	// syncMAP and webhookOff say which of the two applies mutators here.
	syncMAP, webhookOff bool
	// unregistered says why the mutating webhook does not receive the
	// mutator's objects yet.
	unregistered error
}

// Condition reasons on Ready.
const (
	ReasonEnforced       = "Enforced"
	ReasonInvalid        = "Invalid"
	ReasonInvalidUpdate  = "InvalidUpdate"
	ReasonTemplateNotRdy = "TemplateNotReady"
	ReasonSchemaConflict = "SchemaConflict"
	// ReasonMAPUnsupported: with the mutating webhook off, a mutator with
	// no generated MutatingAdmissionPolicy applies nowhere.
	ReasonMAPUnsupported = "MAPUnsupported"
	// ReasonWebhookPending: the mutating webhook is not registered yet for
	// the resources the mutator changes.
	ReasonWebhookPending = "WebhookPending"
)

func (s objectStatus) byPod(podID string) apis.ByPodStatus {
	e := apis.ByPodStatus{ID: podID, ObservedGeneration: s.gen, Operations: []string{"webhook"}, Enforced: s.enforcedGen != 0}
	if s.problem != nil {
		code := "ingest_error"
		if s.enforcedGen != 0 {
			code = "ingest_error_last_good_enforced"
		}
		e.Errors = []apis.StatusError{{Code: code, Message: s.message()}}
	}
	return e
}

func (s objectStatus) message() string {
	switch {
	case s.problem == nil && s.enforcedGen == s.gen:
		return fmt.Sprintf("generation %d is enforced", s.gen)
	case s.problem == nil:
		return fmt.Sprintf("generation %d is loaded", s.gen)
	case s.enforcedGen != 0:
		return fmt.Sprintf("generation %d is not enforced: %v; generation %d (the last good one) stays enforced", s.gen, s.problem, s.enforcedGen)
	default:
		return fmt.Sprintf("not enforced: %v", s.problem)
	}
}

func (s objectStatus) condition() metav1.Condition {
	c := metav1.Condition{Type: "Ready", ObservedGeneration: s.gen, Message: s.message()}
	switch {
	case s.conflict != nil:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, ReasonSchemaConflict, "not applied: "+s.conflict.Error()
	case s.webhookOff && s.noMAP != nil:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, ReasonMAPUnsupported, "not applied: "+s.noMAP.Error()
	case s.problem == nil && s.unregistered != nil:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, ReasonWebhookPending, "not applied yet: "+s.unregistered.Error()
	case s.problem == nil:
		c.Status, c.Reason = metav1.ConditionTrue, ReasonEnforced
	case s.notReadyReason != "":
		c.Status, c.Reason = metav1.ConditionFalse, s.notReadyReason
	case s.enforcedGen != 0:
		c.Status, c.Reason = metav1.ConditionFalse, ReasonInvalidUpdate
	default:
		c.Status, c.Reason = metav1.ConditionFalse, ReasonInvalid
	}
	return c
}

// writeStatus records this replica's entry in status.byPod (other
// replicas' entries are left alone), status.lastGood when the generation
// is good, and, on the leader, the Ready condition and observedGeneration.
// It writes only when something changed, since every write comes back as
// an update event to every replica.
func (c *Controllers) writeStatus(ctx context.Context, obj *unstructured.Unstructured, s objectStatus) error {
	var entry map[string]any
	var err error
	if s.mutator {
		entry, err = toMap(s.mutatorByPod(c.opts.PodID))
	} else {
		entry, err = toMap(s.byPod(c.opts.PodID))
	}
	if err != nil {
		return err
	}
	leader := c.leader.Load()
	fromCache := obj.GetResourceVersion() != ""
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		// The first attempt builds on the reconciled object, read from the
		// informer's cache: a live read before every write doubled the
		// requests a big sync leaves behind. A stale copy fails the write
		// with a conflict (its resourceVersion), and the retries read live.
		var cur *unstructured.Unstructured
		if fromCache {
			fromCache = false
			cur = obj.DeepCopy()
		} else {
			cur = &unstructured.Unstructured{}
			cur.SetGroupVersionKind(obj.GroupVersionKind())
			if err := c.api.Get(ctx, types.NamespacedName{Namespace: obj.GetNamespace(), Name: obj.GetName()}, cur); err != nil {
				return err
			}
		}
		if cur.GetGeneration() != s.gen {
			return nil // a newer generation is on its way to this reconciler
		}
		status, _ := cur.Object["status"].(map[string]any)
		if status == nil {
			status = map[string]any{}
		}
		before, err := toMap(status)
		if err != nil {
			return err
		}
		list, _ := status["byPod"].([]any)
		out := make([]any, 0, len(list)+1)
		for _, e := range list {
			if em, ok := e.(map[string]any); ok && em["id"] == entry["id"] {
				continue
			}
			out = append(out, e)
		}
		status["byPod"] = append(out, entry)
		if s.lastGood != nil {
			lg, err := toMap(s.lastGood)
			if err != nil {
				return err
			}
			status["lastGood"] = lg
		}
		if leader {
			var conds []metav1.Condition
			if raw, ok := status["conditions"]; ok {
				_ = decodeInto(raw, &conds)
			}
			meta.SetStatusCondition(&conds, s.condition())
			cm, err := toAny(conds)
			if err != nil {
				return err
			}
			status["conditions"] = cm
			status["observedGeneration"] = s.gen
			for k, v := range s.extra {
				status[k] = v
			}
		}
		after, err := toMap(status)
		if err != nil {
			return err
		}
		if reflect.DeepEqual(before, after) {
			return nil
		}
		cur.Object["status"] = after
		return c.client.Status().Update(ctx, cur)
	})
}

// lastGoodObject returns a stored object with its spec replaced by
// status.lastGood's, and that version's generation; ok is false when the
// object has no usable last good version.
func lastGoodObject(u *unstructured.Unstructured) (obj map[string]any, gen int64, ok bool) {
	raw, found, _ := unstructured.NestedFieldNoCopy(u.Object, "status", "lastGood")
	if !found {
		return nil, 0, false
	}
	var lg lastGoodStatus
	if err := decodeInto(raw, &lg); err != nil || lg.Generation == 0 || lg.Spec == nil {
		return nil, 0, false
	}
	obj = u.DeepCopy().Object
	obj["spec"] = lg.Spec
	return obj, lg.Generation, true
}

// decodeInto converts a JSON-shaped value into a typed one.
func decodeInto(v any, out any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return utiljson.Unmarshal(b, out)
}

func toMap(v any) (map[string]any, error) {
	var m map[string]any
	return m, decodeInto(v, &m)
}

func toAny(v any) (any, error) {
	var out any
	return out, decodeInto(v, &out)
}
