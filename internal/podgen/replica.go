package podgen

import (
	"fmt"
	"math/rand/v2"
)

// Replica is a copy of the Pod p as a cluster admits it: its own name and
// uid, a ServiceAccount token volume with a random name mounted in every
// container, and other random fields no library template reads.
func Replica(p map[string]any, rnd *rand.Rand, i int) map[string]any {
	out := deepCopy(p).(map[string]any)
	meta := out["metadata"].(map[string]any)
	meta["name"] = fmt.Sprintf("%s-%d", meta["name"], i)
	meta["uid"] = fmt.Sprintf("uid-%d-%d", i, rnd.Int64())
	token := fmt.Sprintf("kube-api-access-%05x", rnd.IntN(1<<20))
	spec, _ := out["spec"].(map[string]any)
	if spec == nil {
		return out
	}
	spec["nodeName"] = fmt.Sprintf("node-%d", rnd.IntN(50))
	volumes, _ := spec["volumes"].([]any)
	spec["volumes"] = append(volumes, map[string]any{"name": token, "projected": map[string]any{
		"defaultMode": int64(420),
		"sources":     []any{map[string]any{"serviceAccountToken": map[string]any{"expirationSeconds": int64(3607), "path": "token"}}},
	}})
	for _, field := range []string{"containers", "initContainers"} {
		cs, _ := spec[field].([]any)
		for _, c := range cs {
			c, ok := c.(map[string]any)
			if !ok {
				continue
			}
			mounts, _ := c["volumeMounts"].([]any)
			c["volumeMounts"] = append(mounts, map[string]any{"name": token, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"})
			c["terminationMessagePath"] = fmt.Sprintf("/dev/termination-log-%d", rnd.IntN(1000))
		}
	}
	return out
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = deepCopy(e)
		}
		return l
	}
	return v
}
