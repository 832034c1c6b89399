package engine

import (
	"errors"
	"fmt"
)

// ReviewFromRequest builds a review from an admission/v1 AdmissionRequest
// in its JSON form (as found in an AdmissionReview's request).
func ReviewFromRequest(req map[string]any) (*Review, error) {
	r := &Review{}
	r.UID, _ = req["uid"].(string)
	k, ok := req["kind"].(map[string]any)
	if !ok {
		return nil, errors.New("request.kind is missing")
	}
	r.Kind = GVK{Group: str(k, "group"), Version: str(k, "version"), Kind: str(k, "kind")}
	if r.Kind.Kind == "" || r.Kind.Version == "" {
		return nil, fmt.Errorf("request.kind needs version and kind")
	}
	if res, ok := req["resource"].(map[string]any); ok {
		r.Resource = GVR{Group: str(res, "group"), Version: str(res, "version"), Resource: str(res, "resource")}
	} else {
		r.Resource = GVR{Group: r.Kind.Group, Version: r.Kind.Version, Resource: Plural(r.Kind.Kind)}
	}
	r.SubResource = str(req, "subResource")
	r.Name = str(req, "name")
	r.Namespace = str(req, "namespace")
	r.Operation = str(req, "operation")
	if r.Operation == "" {
		r.Operation = "CREATE"
	}
	r.UserInfo, _ = req["userInfo"].(map[string]any)
	r.Object, _ = req["object"].(map[string]any)
	r.OldObject, _ = req["oldObject"].(map[string]any)
	r.Options, _ = req["options"].(map[string]any)
	r.DryRun, _ = req["dryRun"].(bool)
	r.NamespaceObject, _ = req["namespaceObject"].(map[string]any)
	if r.Object == nil && r.OldObject == nil {
		return nil, errors.New("request has neither object nor oldObject")
	}
	if r.Name == "" {
		src := r.Object
		if src == nil {
			src = r.OldObject
		}
		if m, ok := src["metadata"].(map[string]any); ok {
			r.Name = str(m, "name")
		}
	}
	return r, nil
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}
