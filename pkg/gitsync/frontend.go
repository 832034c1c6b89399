package gitsync

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/apply"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// ReceiverPrefix is the receiver's path on the webhook server:
// POST /sync/<namespace>/<name>.
const ReceiverPrefix = "/sync/"

// MaxReceiverBody caps a receiver call's body. The signature covers the
// whole body, so it is read whole; GitHub push payloads of large pushes
// reach a few MiB, and nothing in them is needed beyond the signature.
const MaxReceiverBody = 4 << 20

// Frontend is what every replica serves for git sync: the receiver git
// hosts call on push, and the drift check of the policies webhook. It
// keeps an informer of PolicySyncs; until that has synced, the receiver
// answers 503 and the drift check admits (the webhook fails open anyway).
type Frontend struct {
	Config *rest.Config
	Log    *slog.Logger

	dyn    dynamic.Interface
	kube   kubernetes.Interface
	lister atomic.Pointer[cache.GenericLister]
	// self is Bouncer's own username, learnt at start: its own writes of
	// synced objects are never drift.
	self atomic.Pointer[string]
}

// NeedLeaderElection: every replica receives and reviews.
func (f *Frontend) NeedLeaderElection() bool { return false }

// Start runs the informer until ctx ends.
func (f *Frontend) Start(ctx context.Context) error {
	if f.Log == nil {
		f.Log = slog.Default()
	}
	var err error
	if f.dyn, err = dynamic.NewForConfig(f.Config); err != nil {
		return fmt.Errorf("git sync frontend: %w", err)
	}
	if f.kube, err = kubernetes.NewForConfig(f.Config); err != nil {
		return fmt.Errorf("git sync frontend: %w", err)
	}
	// The receiver needs only the PolicySyncs; the drift check also needs
	// Bouncer's own name, learnt beside them so a slow answer does not keep
	// the receiver answering 503.
	go f.learnSelf(ctx)
	inf := dynamicinformer.NewFilteredDynamicInformer(f.dyn, PolicySyncGVR, "", 0, cache.Indexers{}, nil)
	go inf.Informer().Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return nil
	}
	l := inf.Lister()
	f.lister.Store(&l)
	<-ctx.Done()
	return nil
}

// learnSelf asks the apiserver who Bouncer is, until it answers.
func (f *Frontend) learnSelf(ctx context.Context) {
	for ctx.Err() == nil {
		r, err := f.kube.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if err == nil {
			name := r.Status.UserInfo.Username
			f.self.Store(&name)
			return
		}
		f.Log.Warn("git sync: learning Bouncer's own username (SelfSubjectReview)", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}

func (f *Frontend) get(namespace, name string) (*apis.PolicySync, bool, error) {
	l := f.lister.Load()
	if l == nil {
		return nil, false, fmt.Errorf("PolicySyncs not loaded yet")
	}
	obj, err := (*l).ByNamespace(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	ps, err := decode(obj.(*unstructured.Unstructured))
	return ps, ps != nil, err
}

// ServeHTTP is the receiver. A valid call stamps the PolicySync with
// AnnotationRequestedAt; the leader's watch sees it and fetches at once.
// Writing to the object, rather than calling the leader, makes any replica
// behind the Service able to take the call, with no routing to the leader
// and nothing lost when leadership moves: the new leader fetches anyway.
func (f *Frontend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed: use POST", http.StatusMethodNotAllowed)
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, ReceiverPrefix), "/")
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		http.Error(w, "want POST /sync/<namespace>/<name>", http.StatusNotFound)
		return
	}
	ps, found, err := f.get(parts[0], parts[1])
	switch {
	case err != nil:
		http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
		return
	case !found || ps.Spec.Webhook == nil || ps.Spec.Webhook.SecretRef.Name == "":
		// Unknown and receiver-less syncs look alike, so a caller without
		// the secret learns nothing of which exist.
		http.Error(w, "no PolicySync with a receiver at this path", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxReceiverBody+1))
	if err != nil {
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > MaxReceiverBody {
		http.Error(w, fmt.Sprintf("body larger than %d bytes", MaxReceiverBody), http.StatusRequestEntityTooLarge)
		return
	}
	sec, err := f.kube.CoreV1().Secrets(ps.Namespace).Get(r.Context(), ps.Spec.Webhook.SecretRef.Name, metav1.GetOptions{})
	if err != nil || len(sec.Data[apis.SecretKeyWebhookToken]) == 0 {
		f.Log.Error("git sync receiver: reading the webhook secret", "policysync", ps.Namespace+"/"+ps.Name, "secret", ps.Spec.Webhook.SecretRef.Name, "err", err)
		http.Error(w, "the receiver's secret is not readable", http.StatusServiceUnavailable)
		return
	}
	if !Authorized(r.Header, body, sec.Data[apis.SecretKeyWebhookToken]) {
		http.Error(w, "unauthorized: no valid X-Hub-Signature-256, X-Gitlab-Token or bearer token", http.StatusUnauthorized)
		return
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		apis.AnnotationRequestedAt: time.Now().UTC().Format(time.RFC3339Nano),
	}}})
	if _, err := f.dyn.Resource(PolicySyncGVR).Namespace(ps.Namespace).Patch(r.Context(), ps.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: apply.FieldManager}); err != nil {
		http.Error(w, "requesting the sync: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write([]byte("sync requested\n"))
}

// Authorized checks the call's credentials against secret: GitHub's
// X-Hub-Signature-256 (HMAC-SHA256 of the body), GitLab's X-Gitlab-Token
// or Authorization: Bearer. Comparisons take constant time.
func Authorized(h http.Header, body, secret []byte) bool {
	if sig := h.Get("X-Hub-Signature-256"); sig != "" {
		got, err := hex.DecodeString(strings.TrimPrefix(sig, "sha256="))
		if err != nil || !strings.HasPrefix(sig, "sha256=") {
			return false
		}
		mac := hmac.New(sha256.New, secret)
		mac.Write(body)
		return hmac.Equal(got, mac.Sum(nil))
	}
	if tok := h.Get("X-Gitlab-Token"); tok != "" {
		return subtle.ConstantTimeCompare([]byte(tok), secret) == 1
	}
	if auth := h.Get("Authorization"); strings.HasPrefix(auth, "Bearer ") {
		return subtle.ConstantTimeCompare([]byte(strings.TrimPrefix(auth, "Bearer ")), secret) == 1
	}
	return false
}

// DriftDenial is the drift check: the reason to refuse an update or
// deletion of oldObject by user, or "" to admit it. It refuses only
// members of a PolicySync with preventDrift, and never Bouncer itself or
// the control plane's own controllers (a Namespace being deleted takes
// its objects with it; garbage collection follows owners).
func (f *Frontend) DriftDenial(oldObject map[string]any, user string) string {
	self := f.self.Load()
	if self == nil || user == *self || strings.HasPrefix(user, "system:serviceaccount:kube-system:") || user == "system:kube-controller-manager" {
		return ""
	}
	md, _ := oldObject["metadata"].(map[string]any)
	lbls, _ := md["labels"].(map[string]any)
	id, _ := lbls[apply.LabelPartOf].(string)
	if id == "" {
		return ""
	}
	l := f.lister.Load()
	if l == nil {
		return ""
	}
	objs, err := (*l).List(labels.Everything())
	if err != nil {
		return ""
	}
	for _, o := range objs {
		u := o.(*unstructured.Unstructured)
		if apply.SecretParent(u.GetNamespace(), u.GetName()).ID() != id {
			continue
		}
		prevent, _, _ := unstructured.NestedBool(u.Object, "spec", "preventDrift")
		if !prevent {
			return ""
		}
		commit, _, _ := unstructured.NestedString(u.Object, "status", "lastSyncedCommit")
		return fmt.Sprintf("this object is synced from git by PolicySync %s/%s (commit %s) with preventDrift: change it in the repository", u.GetNamespace(), u.GetName(), short(commit))
	}
	return ""
}
