package engine

import (
	"strings"
)

// ObjectReview builds the review of an object as if it were being created
// (operation CREATE): the form the CLI and the audit use, as Gatekeeper's
// gator and audit do.
func ObjectReview(obj map[string]any, operation string, namespace map[string]any) *Review {
	gvk := kindOf(obj)
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	ns, _ := meta["namespace"].(string)
	if operation == "" {
		operation = "CREATE"
	}
	r := &Review{
		Kind:            gvk,
		Resource:        GVR{Group: gvk.Group, Version: gvk.Version, Resource: Plural(gvk.Kind)},
		Name:            name,
		Namespace:       ns,
		Operation:       operation,
		NamespaceObject: namespace,
	}
	if operation == "DELETE" {
		r.OldObject = obj
	} else {
		r.Object = obj
	}
	return r
}

// Plural guesses a kind's resource name the way kubectl's default RESTMapper
// does for unknown kinds.
func Plural(kind string) string {
	k := strings.ToLower(kind)
	switch {
	case k == "":
		return ""
	case strings.HasSuffix(k, "s"), strings.HasSuffix(k, "x"), strings.HasSuffix(k, "ch"), strings.HasSuffix(k, "sh"):
		return k + "es"
	case strings.HasSuffix(k, "y") && len(k) > 1 && !strings.ContainsRune("aeiou", rune(k[len(k)-2])):
		return k[:len(k)-1] + "ies"
	default:
		return k + "s"
	}
}
