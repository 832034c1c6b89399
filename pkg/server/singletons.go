package server

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apply"
	"github.com/bouncer-policy/bouncer/pkg/certs"
	"github.com/bouncer-policy/bouncer/pkg/mutation"
	"github.com/bouncer-policy/bouncer/pkg/mutation/registration"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// webhookConfigKeeper registers the ValidatingWebhookConfiguration. It runs
// on the leader only, so that replicas of different versions in a rolling
// upgrade never overwrite each other's configuration; it waits until the
// leader itself enforces every policy, and re-applies when the CA bundle
// changes and periodically (an apply of unchanged content writes nothing).
type webhookConfigKeeper struct {
	o       *Options
	applier *objectApplier
	ready   func() bool
	certs   *certs.Source
	log     *slog.Logger
	// mutators decide the mutating webhook's rules (nil with mutation
	// off); mapper names their kinds' resources.
	mutators *mutation.System
	mapper   meta.RESTMapper
}

func (k *webhookConfigKeeper) NeedLeaderElection() bool { return true }

func (k *webhookConfigKeeper) Start(ctx context.Context) error {
	for !k.ready() {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
	for {
		var mutatorsChanged <-chan struct{}
		if k.mutators != nil {
			// Taken before the rules are derived, so that no change is missed.
			mutatorsChanged = k.mutators.Changed()
		}
		obj, err := apply.ToUnstructured(k.o.WebhookConfiguration(k.certs.CABundle()))
		if err == nil {
			err = k.applier.Apply(ctx, obj)
		}
		if err != nil && ctx.Err() == nil {
			k.log.Error("applying ValidatingWebhookConfiguration", "name", k.o.WebhookConfigName, "err", err)
		}
		k.keepMutating(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-k.certs.Changed():
		case <-mutatorsChanged:
		case <-time.After(30 * time.Second):
		}
	}
}

// keepMutating applies the MutatingWebhookConfiguration, or removes one a
// previous run left when mutation is now off (it would call a path this
// replica no longer serves).
func (k *webhookConfigKeeper) keepMutating(ctx context.Context) {
	name := k.o.MutatingWebhookConfigName()
	var err error
	if k.o.Mutation && k.mutators != nil {
		// The periodic pass re-derives the rules too: a kind whose CRD was
		// missing (every resource of its group) narrows once it is served.
		var obj *unstructured.Unstructured
		if obj, err = apply.ToUnstructured(k.o.MutatingWebhookConfiguration(k.certs.CABundle(), k.rules())); err == nil {
			err = k.applier.Apply(ctx, obj)
		}
	} else {
		gvk := schema.GroupVersionKind{Group: "admissionregistration.k8s.io", Version: "v1", Kind: "MutatingWebhookConfiguration"}
		err = k.applier.Delete(ctx, gvk, "", name)
	}
	if err != nil && ctx.Err() == nil {
		k.log.Error("keeping the MutatingWebhookConfiguration", "name", name, "mutation", k.o.Mutation, "err", err)
	}
}

// rules are the resources the mutators in this replica can change.
func (k *webhookConfigKeeper) rules() []admissionregistrationv1.Rule {
	all, kinds := k.mutators.Targets()
	return registration.Rules(all, kinds, k.mapper)
}

// objectApplier writes the objects only the leader writes, through the
// one applier (server-side apply, Bouncer's field manager).
type objectApplier struct {
	apply  *apply.Applier
	client client.Client
}

func (a *objectApplier) Apply(ctx context.Context, obj *unstructured.Unstructured) error {
	_, err := a.apply.ApplyObject(ctx, obj)
	return err
}

func (a *objectApplier) Delete(ctx context.Context, gvk schema.GroupVersionKind, namespace, name string) error {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	u.SetNamespace(namespace)
	u.SetName(name)
	if err := a.client.Delete(ctx, u); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

// startCerts returns this replica's serving-certificate source, with a
// first certificate issued, and registers the CA keeper (which creates and
// rotates the shared CA Secret) as leader work. On the very first start no
// Secret exists yet and no replica has been elected: whoever finds it
// missing creates it (creation is atomic, the losers read the winner's).
func startCerts(ctx context.Context, kube kubernetes.Interface, o Options, hosts []string, leaders *leaderGroup) (*certs.Source, error) {
	ref := certs.SecretRef{Namespace: o.Namespace, Name: CASecretName}
	keeper := &certs.Keeper{Client: kube, Secret: ref, Policy: certs.Policy{Validity: o.CAValidity, Overlap: o.CAOverlap}, Log: o.Log}
	leaders.Add(keeper)
	src := &certs.Source{Client: kube, Secret: ref, Hosts: hosts, Validity: o.CertValidity, Log: o.Log}
	if _, err := kube.CoreV1().Secrets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		if _, err := keeper.Reconcile(ctx); err != nil {
			return nil, fmt.Errorf("creating the webhook CA: %w", err)
		}
	}
	if _, err := src.Sync(ctx); err != nil {
		return nil, fmt.Errorf("issuing the serving certificate: %w", err)
	}
	return src, nil
}

// newRecorder records Events through the API (the webhook's denials).
func newRecorder(kube kubernetes.Interface, host string) (recorderAdapter, func()) {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	return recorderAdapter{record: b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "bouncer", Host: host})}, b.Shutdown
}

type recorderAdapter struct{ record record.EventRecorder }

func (r recorderAdapter) Eventf(ref *corev1.ObjectReference, eventType, reason, messageFmt string, args ...any) {
	r.record.Eventf(ref, eventType, reason, messageFmt, args...)
}
