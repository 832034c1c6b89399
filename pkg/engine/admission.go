package engine

import (
	"errors"
	"fmt"
	"strings"
)

// ReviewFromRequest builds a review from an admission/v1 AdmissionRequest
// in its JSON form (as found in an AdmissionReview's request).
//
// The apiserver always sends kind, name and namespace; hand-written
// requests (gator Suite cases for UPDATE and DELETE) often leave them out.
// Gatekeeper matches a request by its objects' own apiVersion, kind and
// metadata, so a request that omits them is evaluated as if they had been
// sent: each missing field is taken from the object (oldObject when there
// is no object).
func ReviewFromRequest(req map[string]any) (*Review, error) {
	r := &Review{}
	r.UID, _ = req["uid"].(string)
	r.Object, _ = req["object"].(map[string]any)
	r.OldObject, _ = req["oldObject"].(map[string]any)
	if r.Object == nil && r.OldObject == nil {
		return nil, errors.New("request has neither object nor oldObject")
	}
	src := r.Object
	if src == nil {
		src = r.OldObject
	}
	meta, _ := src["metadata"].(map[string]any)
	switch k := req["kind"].(type) {
	case map[string]any:
		r.Kind = GVK{Group: str(k, "group"), Version: str(k, "version"), Kind: str(k, "kind")}
		if r.Kind.Kind == "" || r.Kind.Version == "" {
			return nil, errors.New("request.kind needs version and kind")
		}
	case nil:
		r.Kind = kindOf(src)
		if r.Kind.Kind == "" || r.Kind.Version == "" {
			return nil, errors.New("request.kind is missing and the object has no apiVersion and kind to take it from")
		}
	default:
		return nil, fmt.Errorf("request.kind must be an object with group, version and kind, found %T", k)
	}
	if res, ok := req["resource"].(map[string]any); ok {
		r.Resource = GVR{Group: str(res, "group"), Version: str(res, "version"), Resource: str(res, "resource")}
	} else {
		r.Resource = GVR{Group: r.Kind.Group, Version: r.Kind.Version, Resource: Plural(r.Kind.Kind)}
	}
	r.SubResource = str(req, "subResource")
	r.Name = str(req, "name")
	if r.Name == "" {
		r.Name = str(meta, "name")
	}
	r.Namespace = str(req, "namespace")
	if r.Namespace == "" {
		r.Namespace = str(meta, "namespace")
	}
	r.Operation = str(req, "operation")
	if r.Operation == "" {
		r.Operation = "CREATE"
	}
	r.UserInfo, _ = req["userInfo"].(map[string]any)
	r.Options, _ = req["options"].(map[string]any)
	r.DryRun, _ = req["dryRun"].(bool)
	r.NamespaceObject, _ = req["namespaceObject"].(map[string]any)
	return r, nil
}

// kindOf reads an object's group, version and kind from its apiVersion and
// kind.
func kindOf(obj map[string]any) GVK {
	apiVersion := str(obj, "apiVersion")
	g := GVK{Version: apiVersion, Kind: str(obj, "kind")}
	if i := strings.Index(apiVersion, "/"); i >= 0 {
		g.Group, g.Version = apiVersion[:i], apiVersion[i+1:]
	}
	return g
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}
