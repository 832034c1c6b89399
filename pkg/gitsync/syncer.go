package gitsync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/apply"
	"github.com/bouncer-policy/bouncer/pkg/gitsource"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/vet"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// syncer is one PolicySync's loop on the leader.
type syncer struct {
	c               *Controller
	namespace, name string
	fetcherDir      string
	// deleted is set when the PolicySync is gone: its cache goes too.
	deleted  atomic.Bool
	cancel   func()
	wake     chan struct{}
	fetchNow atomic.Bool

	// Owned by run's goroutine.
	good     []*unstructured.Unstructured // the last commit applied
	goodAt   time.Time                    // when it was last fetched
	fullAt   time.Time                    // when all of it was last applied, with prune
	failures int
	watches  *driftWatches
	// origins are the file and line of each object of the commit being
	// applied, so that an object the apiserver refuses is reported where
	// it is written.
	origins map[apply.ObjectRef]apis.SyncResource
}

// trigger wakes the loop; fetch asks for a fetch even before the period
// is up (a spec change, the receiver), otherwise the last good commit is
// applied again (drift).
func (s *syncer) trigger(fetch bool) {
	if fetch {
		s.fetchNow.Store(true)
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *syncer) run(ctx context.Context) {
	s.watches = newDriftWatches(s.c.meta, apply.SecretParent(s.namespace, s.name).ID(), func() { s.trigger(false) }, s.c.Log)
	defer s.watches.stopAll()
	defer func() {
		// A deleted PolicySync's clone is of no more use; a PolicySync
		// created again under the name clones afresh.
		if s.deleted.Load() {
			if err := os.RemoveAll(s.fetcherDir); err != nil {
				s.c.Log.Warn("git sync: removing the fetch cache of a deleted PolicySync", "policysync", s.key(), "err", err)
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		wait := s.passBounded(ctx)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
			s.fetchNow.Store(true)
			s.trigger(true)
		case <-s.wake:
			timer.Stop()
			s.trigger(false) // put the wake back for the loop's head
		}
	}
}

func (s *syncer) passBounded(ctx context.Context) time.Duration {
	select {
	case s.c.passes <- struct{}{}:
	case <-ctx.Done():
		return 0
	}
	defer func() { <-s.c.passes }()
	return s.pass(ctx)
}

// pass runs fetch → render/validate → apply → prune → report once and
// returns how long to wait for the next pass.
func (s *syncer) pass(ctx context.Context) time.Duration {
	u, err := s.c.lister.ByNamespace(s.namespace).Get(s.name)
	if err != nil {
		return DefaultPeriod // deleted; the informer stops this loop
	}
	ps, err := decode(u.(*unstructured.Unstructured))
	if err != nil {
		s.c.Log.Error("git sync", "policysync", s.key(), "err", err)
		return DefaultPeriod
	}
	period := ps.Spec.Git.Period.Duration
	if period <= 0 {
		period = DefaultPeriod
	}
	start := time.Now()
	old := ps.Status
	st := old
	st.Conditions = append([]metav1.Condition(nil), old.Conditions...)
	st.ObservedGeneration = ps.Generation
	t := now()
	outcome, wait := "synced", jitter(period)
	defer func() {
		if s.c.metrics != nil {
			s.c.metrics.Duration.WithLabelValues(s.key(), outcome).Observe(time.Since(start).Seconds())
		}
	}()
	fail := func(reason string, errs []apis.SyncError) {
		setConditions(&st, ps.Generation, reason, errs, "")
		for _, e := range errs {
			if s.c.metrics != nil {
				s.c.metrics.Errors.WithLabelValues(s.key(), e.Code).Inc()
			}
		}
	}
	// retry reports a failure worth retrying soon (fetch, apply).
	retry := func(reason string, errs []apis.SyncError) time.Duration {
		outcome = "error"
		fail(reason, errs)
		s.failures++
		s.report(ctx, ps, old, st)
		return backoff(s.failures, period)
	}

	// Drift only, with a fresh enough commit: apply it again, no fetch.
	fetch := s.fetchNow.Swap(false) || s.good == nil || time.Since(s.goodAt) >= period
	if !fetch {
		var errs []apis.SyncError
		st.Sync, errs = s.applyStep(ctx, s.good, true, st.LastSyncedCommit, old.Sync, t)
		if len(errs) > 0 {
			return retry("ApplyFailed", errs)
		}
		s.report(ctx, ps, old, st)
		return wait
	}

	stageAt := time.Now()
	var stages []any // name, duration pairs for the pass's debug log
	stage := func(name string) {
		stages = append(stages, name, time.Since(stageAt).Round(time.Millisecond))
		stageAt = time.Now()
	}
	defer func() {
		s.c.Log.Debug("git sync pass", append([]any{"policysync", s.key(), "outcome", outcome}, stages...)...)
	}()
	spec, err := s.gitSpec(ctx, ps)
	var co gitsource.Checkout
	if err == nil {
		co, err = (&gitsource.Fetcher{CacheDir: s.fetcherDir, Log: s.c.Log, Timeout: fetchTimeout}).Fetch(ctx, spec)
	}
	stage("fetch")
	if err != nil {
		errs := []apis.SyncError{sourceError(err)}
		st.Source = step(old.Source, old.Source.Commit, errs, t)
		return retry("SourceError", errs)
	}

	objs, renderErrs, sourceErrs := s.validate(ctx, ps, co)
	stage("validate")
	st.Rendering = step(old.Rendering, co.Commit, renderErrs, t)
	st.Source = step(old.Source, co.Commit, sourceErrs, t)
	if errs := append(renderErrs, sourceErrs...); len(errs) > 0 {
		// A new commit is needed; polling at the period finds it.
		outcome = "invalid"
		fail("InvalidCommit", errs)
		s.failures = 0
		s.report(ctx, ps, old, st)
		return wait
	}

	if co.Commit != old.LastSyncedCommit {
		st.Sync.Commit = co.Commit
		reconciling := st
		setConditionsReconciling(&reconciling, ps.Generation, co.Commit)
		s.report(ctx, ps, old, reconciling)
		old = reconciling
		stage("reportReconciling")
	}
	var errs []apis.SyncError
	todo, full := s.plan(objs, period)
	st.Sync, errs = s.applyStep(ctx, todo, full, co.Commit, old.Sync, t)
	stage("apply")
	if len(errs) > 0 {
		return retry("ApplyFailed", errs)
	}
	s.failures = 0
	s.good, s.goodAt = objs, time.Now()
	st.LastSyncedCommit = co.Commit
	st.Sync.ObjectCount = len(objs)
	setConditions(&st, ps.Generation, "", nil, fmt.Sprintf("commit %s applied: %d objects", short(co.Commit), len(objs)))
	if s.c.metrics != nil {
		s.c.metrics.LastSynced.WithLabelValues(s.key()).SetToCurrentTime()
	}
	s.watches.set(ctx, s.c.applier, objs)
	stage("watches")
	s.report(ctx, ps, old, st)
	stage("report")
	return wait
}

func (s *syncer) key() string { return s.namespace + "/" + s.name }

func (s *syncer) report(ctx context.Context, ps *apis.PolicySync, old, st apis.PolicySyncStatus) {
	if err := writeStatus(ctx, s.c.dyn, ps, old, st); err != nil && ctx.Err() == nil {
		s.c.Log.Error("git sync", "policysync", s.key(), "err", err)
	}
}

// plan says what a pass over objs applies. All of them, pruning, when
// nothing is known of earlier passes, when the commit removes objects, or
// when the last full apply is older than ten periods (at least a minute);
// otherwise only the objects that differ from the last good commit,
// without prune: applying every object again costs a few requests per
// object, and what drifts in between is caught by the drift watches.
func (s *syncer) plan(objs []*unstructured.Unstructured, period time.Duration) ([]*unstructured.Unstructured, bool) {
	if s.good == nil || time.Since(s.fullAt) >= max(10*period, time.Minute) {
		return objs, true
	}
	last := make(map[apply.ObjectRef]*unstructured.Unstructured, len(s.good))
	for _, o := range s.good {
		last[apply.RefOf(o)] = o
	}
	var changed []*unstructured.Unstructured
	for _, o := range objs {
		ref := apply.RefOf(o)
		if prev, ok := last[ref]; !ok || !reflect.DeepEqual(prev.Object, o.Object) {
			changed = append(changed, o)
		}
		delete(last, ref)
	}
	if len(last) > 0 {
		return objs, true // something to prune
	}
	return changed, false
}

// applyStep applies objs of commit (all of them with prune when full)
// and returns the sync step that records it; the object count stays the
// last good one's.
func (s *syncer) applyStep(ctx context.Context, objs []*unstructured.Unstructured, full bool, commit string, old apis.SyncApplyStep, t metav1.Time) (apis.SyncApplyStep, []apis.SyncError) {
	if len(objs) == 0 && !full {
		return apis.SyncApplyStep{SyncStep: step(old.SyncStep, commit, nil, t), ObjectCount: old.ObjectCount}, nil
	}
	res, err := s.apply(ctx, objs, full)
	if err == nil && len(res.Errors) == 0 && full {
		s.fullAt = time.Now()
	}
	var errs []apis.SyncError
	if err != nil {
		errs = []apis.SyncError{{Code: CodeApply, Message: err.Error()}}
	} else {
		errs = applyErrors(res, s.origins)
	}
	return apis.SyncApplyStep{SyncStep: step(old.SyncStep, commit, errs, t), ObjectCount: old.ObjectCount}, errs
}

// gitSpec reads the credentials the spec names.
func (s *syncer) gitSpec(ctx context.Context, ps *apis.PolicySync) (gitsource.Spec, error) {
	g := ps.Spec.Git
	spec := gitsource.Spec{Repo: g.Repo, Branch: g.Branch, Revision: g.Revision, Auth: g.Auth}
	read := func(ref *apis.LocalObjectReference, keys ...string) (map[string][]byte, error) {
		if ref == nil || ref.Name == "" {
			return nil, fmt.Errorf("auth %s needs secretRef", g.Auth)
		}
		sec, err := s.c.kube.CoreV1().Secrets(ps.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("reading Secret %s/%s: %w", ps.Namespace, ref.Name, err)
		}
		for _, k := range keys {
			if len(sec.Data[k]) == 0 {
				return nil, fmt.Errorf("Secret %s/%s has no key %q", ps.Namespace, ref.Name, k)
			}
		}
		return sec.Data, nil
	}
	switch g.Auth {
	case "", apis.GitAuthNone:
	case apis.GitAuthToken:
		d, err := read(g.SecretRef, apis.SecretKeyToken)
		if err != nil {
			return spec, err
		}
		spec.Username, spec.Token = string(d[apis.SecretKeyUsername]), string(d[apis.SecretKeyToken])
	case apis.GitAuthSSH:
		d, err := read(g.SecretRef, apis.SecretKeySSH)
		if err != nil {
			return spec, err
		}
		spec.SSHKey, spec.KnownHosts = d[apis.SecretKeySSH], d[apis.SecretKeyKnownHosts]
	default:
		return spec, fmt.Errorf("auth %q is not none, token or ssh", g.Auth)
	}
	if g.CACertSecretRef != nil {
		d, err := read(g.CACertSecretRef, apis.SecretKeyCert)
		if err != nil {
			return spec, err
		}
		spec.CABundle = d[apis.SecretKeyCert]
	}
	return spec, nil
}

// validate renders and checks the commit: rendering errors apart from the
// rest. It returns the objects to apply.
func (s *syncer) validate(ctx context.Context, ps *apis.PolicySync, co gitsource.Checkout) ([]*unstructured.Unstructured, []apis.SyncError, []apis.SyncError) {
	dir, err := subdir(co.Dir, ps.Spec.Git.Dir)
	if err != nil {
		return nil, []apis.SyncError{{Code: vet.CodeRender, Message: err.Error()}}, nil
	}
	id := apply.SecretParent(ps.Namespace, ps.Name).ID()
	known, err := s.knownTemplates(ctx, id)
	if err != nil {
		return nil, nil, []apis.SyncError{{Code: CodeSource, Message: err.Error()}}
	}
	res, err := vet.Dir(ctx, dir, vet.Options{
		Render: ps.Spec.Render, AllowedKinds: allowedKinds(ps.Spec.AllowedKinds), RequireSuitesPass: ps.Spec.RequireSuitesPass,
		KnownTemplate: func(kind string) bool { return known[kind] },
		// kustomize reads nothing outside the checkout: not the server's
		// files, not its service account token.
		Load: load.Options{Root: co.Dir},
	})
	if err != nil {
		return nil, nil, []apis.SyncError{{Code: CodeSource, Message: err.Error()}}
	}
	var render, source []vet.Finding
	for _, f := range res.Findings {
		if f.Code == vet.CodeRender {
			render = append(render, f)
		} else {
			source = append(source, f)
		}
	}
	s.origins = make(map[apply.ObjectRef]apis.SyncResource, len(res.Objects))
	for i, o := range res.Objects {
		s.origins[apply.RefOf(o)] = apis.SyncResource{File: relativeFile(co.Dir, res.Documents[i].File), Line: res.Documents[i].Line}
	}
	// vet's objects are what to apply: Suites and their fixtures are left out.
	return res.Objects, findingErrors(render, co.Dir), findingErrors(source, co.Dir)
}

// subdir is dir inside root, refusing a dir that climbs out of it.
func subdir(root, dir string) (string, error) {
	p := filepath.Join(root, filepath.FromSlash(dir))
	if rel, err := filepath.Rel(root, p); err != nil || strings.HasPrefix(rel, "..") {
		return "", fmt.Errorf("spec.git.dir %q is outside the repository", dir)
	}
	// Resolve links so a link cannot lead out of the checkout either.
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", fmt.Errorf("spec.git.dir %q: %w", dir, errors.Unwrap(err))
	}
	realRoot, _ := filepath.EvalSymlinks(root)
	if rel, err := filepath.Rel(realRoot, real); err != nil || strings.HasPrefix(rel, "..") {
		return "", fmt.Errorf("spec.git.dir %q leads outside the repository", dir)
	}
	if fi, err := os.Stat(real); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("spec.git.dir %q is not a directory of the commit", dir)
	}
	return real, nil
}

var templateGVR = schema.GroupVersionResource{Group: apis.TemplatesGroup, Version: "v1", Resource: "constrainttemplates"}

// knownTemplates are the constraint kinds of templates in the cluster
// that this sync did not apply: a commit may rely on those, but not on its
// own templates of an earlier commit, or a commit removing a template and
// its constraints would look inconsistent, and one removing only the
// template would look fine.
func (s *syncer) knownTemplates(ctx context.Context, id string) (map[string]bool, error) {
	list, err := s.c.dyn.Resource(templateGVR).List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing ConstraintTemplates: %w", err)
	}
	known := map[string]bool{}
	for _, t := range list.Items {
		if t.GetLabels()[apply.LabelPartOf] == id {
			continue
		}
		if kind := constraintKindOf(&t); kind != "" {
			known[kind] = true
		}
	}
	return known, nil
}

// constraintKindOf is the constraint kind a ConstraintTemplate defines, or
// "" when it names none.
func constraintKindOf(t *unstructured.Unstructured) string {
	kind, _, _ := unstructured.NestedString(t.Object, "spec", "crd", "spec", "names", "kind")
	return kind
}

// vettedConstraints says which objects the atomic dry run may skip: the
// constraints whose template is in the commit. vet checked each against
// what the apiserver checks for it: the constraint CRD Bouncer makes from
// that template (controller.ConstraintCRD) validates parameters with the
// template's schema, as vet does, and leaves spec.match open; vet also
// checks the object metadata as the apiserver does. A constraint of a
// template only in the cluster had its parameters unchecked, so it is
// still dry-run, as is every other kind. Admission webhooks other than
// Bouncer's on constraints are not foreseen; with one, a refusal would
// leave part of the commit's constraints written.
func vettedConstraints(objs []*unstructured.Unstructured) func(*unstructured.Unstructured) bool {
	inCommit := map[string]bool{}
	for _, o := range objs {
		if o.GroupVersionKind().Group != apis.TemplatesGroup || o.GetKind() != apis.KindConstraintTemplate {
			continue
		}
		if kind := constraintKindOf(o); kind != "" {
			inCommit[kind] = true
		}
	}
	return func(o *unstructured.Unstructured) bool {
		return o.GroupVersionKind().Group == apis.ConstraintsGroup && inCommit[o.GetKind()]
	}
}

// apply applies objs as the sync's ApplySet. Constraint kinds are served
// only once Bouncer's template controller has made their CRD from the
// template, which ApplySet cannot know of (it waits only for CRDs in the
// set, and refuses a kind it cannot resolve). So the rest goes first, the
// constraint kinds are waited for, then the whole set is applied (and
// pruned, with prune). Each phase is atomic: a dry run of it must pass before anything
// of it is written. The constraints of templates already in the cluster,
// whose parameters vet cannot check, are dry-run before the first phase,
// so that a refusal of one leaves nothing of the commit written; those of
// the commit's own templates vet checked as the apiserver would.
func (s *syncer) apply(ctx context.Context, objs []*unstructured.Unstructured, prune bool) (*apply.Result, error) {
	set := apply.Set{Parent: apply.SecretParent(s.namespace, s.name), Version: "v1"}
	first := make([]*unstructured.Unstructured, 0, len(objs))
	constraintKinds := map[string]string{}
	for _, o := range objs {
		if o.GroupVersionKind().Group == apis.ConstraintsGroup {
			constraintKinds[o.GetKind()] = o.GetAPIVersion()
			continue
		}
		first = append(first, o)
	}
	opts := apply.Options{Force: true, Atomic: true, NoPrune: !prune, Workers: s.c.ApplyWorkers}
	vetted := vettedConstraints(objs)
	checked := map[apply.ObjectRef]bool{}
	at := time.Now()
	if len(constraintKinds) > 0 {
		var served []*unstructured.Unstructured
		for _, o := range objs {
			if o.GroupVersionKind().Group == apis.ConstraintsGroup && !vetted(o) {
				served = append(served, o)
			}
		}
		if len(served) > 0 {
			res, err := s.c.applier.ApplySet(ctx, set, served, apply.Options{Force: true, DryRun: true, NoPrune: true, Workers: s.c.ApplyWorkers})
			s.c.Log.Debug("git sync: checked the constraints of templates in the cluster", "policysync", s.key(), "objects", len(served), "took", time.Since(at).Round(time.Millisecond))
			if err != nil || len(res.Errors) > 0 {
				if res != nil {
					res = &apply.Result{Errors: res.Errors}
				}
				return res, err
			}
			for _, o := range served {
				checked[apply.RefOf(o)] = true
			}
		}
		pre := opts
		pre.NoPrune = true
		res, err := s.c.applier.ApplySet(ctx, set, first, pre)
		s.c.Log.Debug("git sync: applied all but constraints", "policysync", s.key(), "objects", len(first), "took", time.Since(at).Round(time.Millisecond))
		if err != nil || len(res.Errors) > 0 {
			return res, err
		}
		for kind, apiVersion := range constraintKinds {
			if _, err := s.c.applier.Resource(ctx, apiVersion, kind, s.c.EstablishTimeout); err != nil {
				return &apply.Result{Errors: []*apply.ObjectError{{
					Object: apply.ObjectRef{Group: apis.ConstraintsGroup, Kind: kind},
					Err:    fmt.Errorf("constraint kind not served within %s (its template's CRD comes from Bouncer's template controller; is the template enforced?): %w", s.c.EstablishTimeout, err),
				}}}, nil
			}
		}
		s.c.Log.Debug("git sync: constraint kinds served", "policysync", s.key(), "kinds", len(constraintKinds), "took", time.Since(at).Round(time.Millisecond))
		at = time.Now()
	}
	// Checked just now, or by vet: the atomic dry run need not send them
	// again.
	opts.Prechecked = func(o *unstructured.Unstructured) bool { return vetted(o) || checked[apply.RefOf(o)] }
	res, err := s.c.applier.ApplySet(ctx, set, objs, opts)
	s.c.Log.Debug("git sync: applied the set", "policysync", s.key(), "objects", len(objs), "prune", prune, "took", time.Since(at).Round(time.Millisecond))
	return res, err
}
