package psscorpus

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
	corev1 "k8s.io/api/core/v1"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"
)

const libraryDir = "../../../library"

// bundle is the engine of one PSS bundle and the names of its constraints.
type bundle struct {
	name        string
	engine      *engine.Engine
	constraints []string
}

// loadBundles loads every library/pss-*/ template and sample constraint and
// files each into the bundles its bouncer.dev/bundles annotation names. The
// engines run only the language only names (apis.EngineRego or EngineCEL).
func loadBundles(t *testing.T, only string) map[string]*bundle {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(libraryDir, "pss-*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no library/pss-* directories found (err %v)", err)
	}
	sets := map[string]*policyset.Set{}
	names := map[string][]string{}
	for _, dir := range dirs {
		var tpl, con []*load.Document
		paths := []string{filepath.Join(dir, "template.yaml"), filepath.Join(dir, "constraint.yaml")}
		if err := load.Walk(paths, load.Options{}, func(d *load.Document) error {
			switch policyset.Classify(d) {
			case policyset.Template:
				tpl = append(tpl, d)
			case policyset.Constraint:
				con = append(con, d)
			default:
				return fmt.Errorf("%s: unexpected %s", d.Location(), d.Kind())
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(tpl) != 1 || len(con) != 1 {
			t.Fatalf("%s: want one template and one constraint, found %d and %d", dir, len(tpl), len(con))
		}
		meta, _ := tpl[0].Object["metadata"].(map[string]any)
		ann, _ := meta["annotations"].(map[string]any)
		list, _ := ann["bouncer.dev/bundles"].(string)
		if list == "" {
			t.Fatalf("%s: template has no bouncer.dev/bundles annotation", dir)
		}
		for _, b := range strings.Split(list, ",") {
			b = strings.TrimSpace(b)
			if sets[b] == nil {
				sets[b] = &policyset.Set{}
			}
			sets[b].Add(tpl[0])
			sets[b].Add(con[0])
			names[b] = append(names[b], con[0].Name())
		}
	}
	out := map[string]*bundle{}
	for name, s := range sets {
		e, err := policyset.NewEngine(0, only)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.LoadInto(e); err != nil {
			t.Fatalf("loading bundle %s: %v", name, err)
		}
		out[name] = &bundle{name: name, engine: e, constraints: names[name]}
	}
	return out
}

// bouncerVerdict is what a bundle says about a pod: the names of the
// constraints that deny it, with their messages.
type bouncerVerdict struct {
	denied   map[string]bool
	messages []string
}

func review(ctx context.Context, b *bundle, obj map[string]any) (bouncerVerdict, error) {
	resp, err := b.engine.Review(ctx, engine.ObjectReview(obj, "CREATE", nil))
	if err != nil {
		return bouncerVerdict{}, err
	}
	if len(resp.Errors) > 0 {
		return bouncerVerdict{}, resp.Errors[0]
	}
	v := bouncerVerdict{denied: map[string]bool{}}
	for _, r := range resp.Results {
		if r.EnforcementAction != "deny" {
			continue
		}
		v.denied[r.ConstraintName] = true
		v.messages = append(v.messages, r.ConstraintName+": "+r.Message)
	}
	return v, nil
}

// podObject is the pod in the JSON form the webhook and the CLI hand to the
// engine.
func podObject(p *corev1.Pod) (map[string]any, error) {
	c := p.DeepCopy()
	c.APIVersion, c.Kind = "v1", "Pod"
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	var obj map[string]any
	return obj, utiljson.Unmarshal(b, &obj)
}

// reasonControls maps PSA's forbidden reasons to the library constraint that
// implements the check. PSA reports the same reason for a baseline check and
// the restricted check that overrides it; which one applies depends on the
// level (see controlsFor).
var baselineReasons = map[string]string{
	"hostProcess":                 "pss-baseline-host-process",
	"host namespaces":             "pss-baseline-host-namespaces",
	"privileged":                  "pss-baseline-privileged",
	"non-default capabilities":    "pss-baseline-capabilities",
	"hostPath volumes":            "pss-baseline-host-path-volumes",
	"hostPort":                    "pss-baseline-host-ports",
	"forbidden AppArmor profile":  "pss-baseline-apparmor",
	"forbidden AppArmor profiles": "pss-baseline-apparmor",
	"seLinuxOptions":              "pss-baseline-selinux",
	"procMount":                   "pss-baseline-proc-mount",
	"seccompProfile":              "pss-baseline-seccomp",
	"forbidden sysctls":           "pss-baseline-sysctls",
	"probe or lifecycle host":     "pss-baseline-host-probes",
}

var restrictedReasons = map[string]string{
	"restricted volume types":           "pss-restricted-volume-types",
	"allowPrivilegeEscalation != false": "pss-restricted-privilege-escalation",
	"runAsNonRoot != true":              "pss-restricted-running-as-non-root",
	"runAsUser=0":                       "pss-restricted-running-as-non-root-user",
	"seccompProfile":                    "pss-restricted-seccomp",
	"unrestricted capabilities":         "pss-restricted-capabilities",
	"procMount":                         "pss-restricted-proc-mount",
}

type psaVerdict struct {
	allowed bool
	reasons []string // forbidden reasons
	details []string
}

func evaluate(ev policy.Evaluator, level api.Level, p *corev1.Pod) psaVerdict {
	res := policy.AggregateCheckResults(ev.EvaluatePod(api.LevelVersion{Level: level, Version: api.LatestVersion()}, &p.ObjectMeta, &p.Spec))
	return psaVerdict{allowed: res.Allowed, reasons: res.ForbiddenReasons, details: res.ForbiddenDetails}
}

func isWindows(p *corev1.Pod) bool { return p.Spec.OS != nil && p.Spec.OS.Name == corev1.Windows }

// deliberateRestricted lists the restricted-bundle constraints whose denials
// Bouncer adds on top of PSA's restricted level for a pod, with the reason.
// See README.md: PSA's restricted checks for capabilities and seccomp exempt
// Windows pods and replace the baseline checks of the same fields, so at
// restricted PSA no longer applies the baseline rule to Windows pods;
// Bouncer's restricted bundle keeps every baseline constraint.
func deliberateRestricted(p *corev1.Pod, base psaVerdict) map[string]string {
	out := map[string]string{}
	if !isWindows(p) {
		return out
	}
	for _, r := range base.reasons {
		switch r {
		case "non-default capabilities", "seccompProfile":
			out[baselineReasons[r]] = "Windows pod: the restricted bundle keeps baseline's " + r + " rule, which PSA's restricted override drops"
		}
	}
	return out
}

type counts struct {
	pods                                         int
	baselineDenied, restrictedDenied, deliberate int
	reasonSeen                                   map[string]int
	constraintSeen                               map[string]int
}

func TestPodSecurityStandardsMatchPSA(t *testing.T) {
	size, perMutation := 20000, 40
	if testing.Short() {
		size, perMutation = 3000, 10
	}
	ev, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// One corpus, encoded and judged by PSA once, for both languages: every
	// library PSS policy ships Rego and CEL, and each must agree with PSA.
	pods, labels := corpus(1, size, perMutation)
	judged := make([]judgedPod, len(pods))
	for i, p := range pods {
		judged[i].obj, judged[i].err = podObject(p)
		judged[i].base = evaluate(ev, api.LevelBaseline, p)
		judged[i].restricted = evaluate(ev, api.LevelRestricted, p)
	}
	// CEL costs about five times as much per pod as Rego here, so without
	// -short it reviews every single-mutation pod but only every third
	// random one, to keep the test within a few minutes on two cores.
	celStride := 3
	if testing.Short() {
		celStride = 1
	}
	for _, run := range []struct {
		only   string
		stride int
	}{{apis.EngineRego, 1}, {apis.EngineCEL, celStride}} {
		t.Run(run.only, func(t *testing.T) { matchPSA(t, run.only, size, run.stride, pods, labels, judged) })
	}
}

// judgedPod is a corpus pod in the engine's JSON form with PSA's verdicts.
type judgedPod struct {
	obj              map[string]any
	err              error
	base, restricted psaVerdict
}

// matchPSA reviews the corpus with the PSS bundles run by one language and
// requires the verdicts PSA reached: all of it, or with stride > 1 every
// stride-th random pod and all the single-mutation ones (after size).
func matchPSA(t *testing.T, only string, size, stride int, pods []*corev1.Pod, labels []string, judged []judgedPod) {
	bundles := loadBundles(t, only)
	base, restricted := bundles["pss-baseline"], bundles["pss-restricted"]
	if base == nil || restricted == nil {
		t.Fatalf("want bundles pss-baseline and pss-restricted, have %v", keys(bundles))
	}
	if len(base.constraints) != len(baselineReasons)-1 || len(restricted.constraints) != len(baselineReasons)-1+len(restrictedReasons) {
		t.Fatalf("bundle sizes: baseline %d %v, restricted %d %v", len(base.constraints), base.constraints, len(restricted.constraints), restricted.constraints)
	}
	ctx := context.Background()
	start := time.Now()
	var (
		mu       sync.Mutex
		failures []string
		c        = counts{reasonSeen: map[string]int{}, constraintSeen: map[string]int{}}
	)
	fail := func(i int, p *corev1.Pod, format string, args ...any) {
		y, _ := yaml.Marshal(p)
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, fmt.Sprintf("%s: %s\n--- pod\n%s", labels[i], fmt.Sprintf(format, args...), y))
	}

	check := func(i int) {
		p := pods[i]
		obj, psaBase, psaRes := judged[i].obj, judged[i].base, judged[i].restricted
		if judged[i].err != nil {
			fail(i, p, "encoding: %v", judged[i].err)
			return
		}
		bBase, err := review(ctx, base, obj)
		if err != nil {
			fail(i, p, "baseline review: %v", err)
			return
		}
		bRes, err := review(ctx, restricted, obj)
		if err != nil {
			fail(i, p, "restricted review: %v", err)
			return
		}
		// Baseline: same verdict, and the same controls.
		want := controls(psaBase.reasons, baselineReasons)
		if (len(bBase.denied) > 0) != !psaBase.allowed || !sameSet(want, bBase.denied) {
			fail(i, p, "baseline: PSA allowed=%v reasons=%q details=%q (controls %v); Bouncer denied by %v: %q",
				psaBase.allowed, psaBase.reasons, psaBase.details, sorted(want), sorted(bBase.denied), bBase.messages)
		}
		// Restricted: same verdict, once deliberate differences are
		// accounted for, and the same restricted-only controls.
		extra := deliberateRestricted(p, psaBase)
		wantDenied := !psaRes.allowed || len(extra) > 0
		wantRes := controls(psaRes.reasons, restrictedReasons)
		gotRes := map[string]bool{}
		for name := range bRes.denied {
			if strings.HasPrefix(name, "pss-restricted-") {
				gotRes[name] = true
			}
		}
		if (len(bRes.denied) > 0) != wantDenied || !sameSet(wantRes, gotRes) {
			fail(i, p, "restricted: PSA allowed=%v reasons=%q details=%q (restricted-only controls %v; deliberate extra %v); Bouncer denied by %v: %q",
				psaRes.allowed, psaRes.reasons, psaRes.details, sorted(wantRes), extra, sorted(bRes.denied), bRes.messages)
		}
		// Baseline constraints must agree between the two bundles.
		for name := range bBase.denied {
			if !bRes.denied[name] {
				fail(i, p, "constraint %s denies in the baseline bundle but not in the restricted one", name)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		c.pods++
		if !psaBase.allowed {
			c.baselineDenied++
		}
		if wantDenied {
			c.restrictedDenied++
		}
		if psaRes.allowed && len(extra) > 0 {
			c.deliberate++
		}
		for _, r := range append(append([]string{}, psaBase.reasons...), psaRes.reasons...) {
			c.reasonSeen[r]++
		}
		for name := range bRes.denied {
			c.constraintSeen[name]++
		}
	}

	var picked []int
	for i := range pods {
		if i >= size || i%stride == 0 {
			picked = append(picked, i)
		}
	}
	workers := min(runtime.GOMAXPROCS(0), 4)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := w; j < len(picked); j += workers {
				check(picked[j])
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	t.Logf("%s: %d pods reviewed by both bundles in %v (%v per pod, %d workers)", only, len(picked), elapsed.Round(time.Millisecond), (elapsed / time.Duration(max(len(picked), 1))).Round(time.Microsecond), workers)
	t.Logf("corpus: %d pods (%d random, %d single mutations); baseline: %d denied, %d allowed; restricted: %d denied, %d allowed (%d only through the documented Windows difference)",
		c.pods, size, len(pods)-size, c.baselineDenied, c.pods-c.baselineDenied, c.restrictedDenied, c.pods-c.restrictedDenied, c.deliberate)
	if len(failures) > 0 {
		sort.Strings(failures)
		show := failures
		if len(show) > 10 {
			show = show[:10]
		}
		t.Fatalf("%d of %d pods disagree with pod-security-admission; first %d:\n\n%s", len(failures), len(pods), len(show), strings.Join(show, "\n"))
	}

	// The corpus must exercise both verdicts and every control, or the
	// agreement above proves little.
	if len(pods) < 20000 && !testing.Short() {
		t.Errorf("corpus has %d pods, want at least 20000", len(pods))
	}
	for _, n := range []struct {
		level           string
		denied, allowed int
	}{{"baseline", c.baselineDenied, c.pods - c.baselineDenied}, {"restricted", c.restrictedDenied, c.pods - c.restrictedDenied}} {
		if n.denied < c.pods/10 || n.allowed < c.pods/20 {
			t.Errorf("%s: %d denied and %d allowed of %d: the corpus does not exercise both verdicts", n.level, n.denied, n.allowed, c.pods)
		}
	}
	for r := range baselineReasons {
		if r == "forbidden AppArmor profiles" {
			continue // plural form needs two distinct bad values; the singular suffices
		}
		if c.reasonSeen[r] == 0 {
			t.Errorf("PSA never reported %q in the corpus", r)
		}
	}
	for r := range restrictedReasons {
		if c.reasonSeen[r] == 0 {
			t.Errorf("PSA never reported %q in the corpus", r)
		}
	}
	minDenials := max(5, c.pods/500)
	for _, name := range restricted.constraints {
		if c.constraintSeen[name] < minDenials {
			t.Errorf("constraint %s denied only %d pods of the corpus", name, c.constraintSeen[name])
		}
	}
}

// controls maps PSA reasons to constraint names through table, ignoring
// reasons the table does not hold.
func controls(reasons []string, table map[string]string) map[string]bool {
	out := map[string]bool{}
	for _, r := range reasons {
		if name, ok := table[r]; ok {
			out[name] = true
		}
	}
	return out
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func sorted(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
