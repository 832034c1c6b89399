package podgen

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestDeterministic(t *testing.T) {
	for _, mix := range []Mix{Library, Engine} {
		var a, b bytes.Buffer
		if err := WriteYAML(&a, DefaultOptions(mix, 300)); err != nil {
			t.Fatal(err)
		}
		if err := WriteYAML(&b, DefaultOptions(mix, 300)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Errorf("%s: two runs with the same options differ", mix)
		}
		o := DefaultOptions(mix, 300)
		o.Seed++
		var c bytes.Buffer
		if err := WriteYAML(&c, o); err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(a.Bytes(), c.Bytes()) {
			t.Errorf("%s: another seed gives the same Pods", mix)
		}
	}
}

// The README's and bench/README's figures were measured on these exact
// sets; a change to the random draws would silently change the input of
// every figure. The digests are of the objects as YAML, in order (checked
// equal, object for object, to what hack/gen-pods and bench/internal/gen
// generated before they became this package).
func TestSameSetsAsTheFigures(t *testing.T) {
	for mix, want := range map[Mix]string{
		Engine:  engineDigest,
		Library: libraryDigest,
	} {
		h := sha256.New()
		pods, namespaces := 0, 0
		err := Generate(DefaultOptions(mix, 500), func(obj map[string]any) error {
			switch obj["kind"] {
			case "Pod":
				pods++
			case "Namespace":
				namespaces++
			}
			b, err := yaml.Marshal(obj)
			h.Write(b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			t.Errorf("%s: digest %s, want %s", mix, got, want)
		}
		if pods != 500 {
			t.Errorf("%s: %d Pods, want 500", mix, pods)
		}
		if wantNS := map[Mix]int{Library: 100, Engine: 0}[mix]; namespaces != wantNS {
			t.Errorf("%s: %d Namespaces, want %d", mix, namespaces, wantNS)
		}
	}
}

// About the asked share of Pods break a policy: in the Engine mix a
// violating Pod has one of seven recognisable defects.
func TestEngineViolatingShare(t *testing.T) {
	o := DefaultOptions(Engine, 2000)
	bad := 0
	err := Generate(o, func(obj map[string]any) error {
		b, _ := yaml.Marshal(obj)
		s := string(b)
		labels := obj["metadata"].(map[string]any)["labels"].(map[string]any)
		if strings.Contains(s, ":latest") || strings.Contains(s, "docker.io/") || strings.Contains(s, "privileged: true") ||
			labels["owner"] == nil || strings.Contains(s, "SYS_ADMIN") || strings.Contains(s, "hostPID: true") ||
			!limitsEverywhere(obj) {
			bad++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if share := bad * 100 / o.Pods; share < 22 || share > 28 {
		t.Errorf("%d%% of Pods violate, want about %d%%", share, o.ViolatingPercent)
	}
}

func limitsEverywhere(pod map[string]any) bool {
	for _, c := range pod["spec"].(map[string]any)["containers"].([]any) {
		r, _ := c.(map[string]any)["resources"].(map[string]any)
		if r["limits"] == nil {
			return false
		}
	}
	return true
}

func TestUnknownMix(t *testing.T) {
	err := Generate(Options{Mix: "nope", Pods: 1}, func(map[string]any) error { return nil })
	if err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Generate with an unknown mix = %v", err)
	}
}

const (
	engineDigest  = "a2e183d9fab66e631e38f682421add8463081fbe1623a548f899dd5d7040cc76"
	libraryDigest = "aae2df313eadc89de7ff67794dd927412983d24523b9ad41176a8ba072e81794"
)

// TestTemplatesStampReplicas checks that Templates stamps every Pod from
// that many pod templates: names and uids stay unique, and the containers'
// images (what the templates differ in) come in at most Templates shapes.
func TestTemplatesStampReplicas(t *testing.T) {
	o := DefaultOptions(Library, 200)
	o.Templates = 7
	names := map[string]bool{}
	uids := map[string]bool{}
	shapes := map[string]bool{}
	pods := 0
	if err := Generate(o, func(obj map[string]any) error {
		if obj["kind"] != "Pod" {
			return nil
		}
		pods++
		meta := obj["metadata"].(map[string]any)
		name, uid := meta["name"].(string), meta["uid"].(string)
		if names[name] || uids[uid] {
			t.Errorf("Pod %s (uid %s) repeats a name or uid", name, uid)
		}
		names[name], uids[uid] = true, true
		var shape []string
		for _, c := range obj["spec"].(map[string]any)["containers"].([]any) {
			shape = append(shape, fmt.Sprint(c.(map[string]any)["image"], c.(map[string]any)["securityContext"]))
		}
		shapes[meta["namespace"].(string)+fmt.Sprint(shape)] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if pods != 200 {
		t.Fatalf("generated %d Pods, want 200", pods)
	}
	if len(shapes) > 7 || len(shapes) < 2 {
		t.Errorf("%d distinct pod shapes from 7 templates, want 2..7", len(shapes))
	}
}
