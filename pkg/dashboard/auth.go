package dashboard

import (
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Access is what a caller must be allowed to do to read the dashboard:
// get ConstraintTemplates, cluster-wide. Whoever may read the policies may
// read how they fare; a resource rather than a non-resource URL, so the
// roles teams already grant for policies carry over.
var Access = authorizationv1.ResourceAttributes{Verb: "get", Group: "templates.gatekeeper.sh", Resource: "constrainttemplates"}

// DefaultAuthTTL is how long a token's verdict is reused: short, so a
// revoked token or role stops working within seconds, and long enough that
// one page load does not cost two API calls.
const DefaultAuthTTL = 10 * time.Second

// Auth checks every request's bearer token the way kube-rbac-proxy does:
// a TokenReview says who it is, a SubjectAccessReview whether they may
// have Access. It answers 401 (no or an invalid token) or 403 (not
// allowed) with a plain message.
type Auth struct {
	Client kubernetes.Interface
	// TTL bounds how long a verdict is cached; default DefaultAuthTTL.
	TTL time.Duration
	Log *slog.Logger

	mu      sync.Mutex
	verdict map[[32]byte]verdict
	now     func() time.Time
}

type verdict struct {
	code    int // 0: allowed
	message string
	expires time.Time
}

// maxCached bounds the verdict cache; a flood of random tokens empties it
// rather than growing it.
const maxCached = 1024

// Wrap returns next behind the check.
func (a *Auth) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="bouncer-dashboard"`)
			http.Error(w, "Unauthorized: send a Kubernetes bearer token (Authorization: Bearer <token>).", http.StatusUnauthorized)
			return
		}
		v, err := a.check(r, token)
		if err != nil {
			a.log().Warn("dashboard: checking a token", "err", err)
			http.Error(w, "Could not check the token with the API server; try again.", http.StatusServiceUnavailable)
			return
		}
		if v.code != 0 {
			if v.code == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="bouncer-dashboard", error="invalid_token"`)
			}
			http.Error(w, v.message, v.code)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (a *Auth) log() *slog.Logger {
	if a.Log != nil {
		return a.Log
	}
	return slog.Default()
}

func bearer(h string) (string, bool) {
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// check returns the cached verdict for token or asks the API server. Only
// answers are cached, never errors, so an apiserver hiccup is not
// remembered as a refusal.
func (a *Auth) check(r *http.Request, token string) (verdict, error) {
	key := sha256.Sum256([]byte(token))
	now := time.Now
	if a.now != nil {
		now = a.now
	}
	a.mu.Lock()
	v, ok := a.verdict[key]
	a.mu.Unlock()
	if ok && now().Before(v.expires) {
		return v, nil
	}
	v, err := a.review(r, token)
	if err != nil {
		return verdict{}, err
	}
	ttl := a.TTL
	if ttl <= 0 {
		ttl = DefaultAuthTTL
	}
	v.expires = now().Add(ttl)
	a.mu.Lock()
	if a.verdict == nil || len(a.verdict) >= maxCached {
		a.verdict = map[[32]byte]verdict{}
	}
	a.verdict[key] = v
	a.mu.Unlock()
	return v, nil
}

func (a *Auth) review(r *http.Request, token string) (verdict, error) {
	ctx := r.Context()
	tr, err := a.Client.AuthenticationV1().TokenReviews().Create(ctx,
		&authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return verdict{}, fmt.Errorf("TokenReview: %w", err)
	}
	if !tr.Status.Authenticated {
		return verdict{code: http.StatusUnauthorized, message: "Unauthorized: the token is not valid."}, nil
	}
	u := tr.Status.User
	extra := map[string]authorizationv1.ExtraValue{}
	for k, v := range u.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	attrs := Access
	sar, err := a.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{User: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra, ResourceAttributes: &attrs},
	}, metav1.CreateOptions{})
	if err != nil {
		return verdict{}, fmt.Errorf("SubjectAccessReview for %s: %w", u.Username, err)
	}
	if !sar.Status.Allowed {
		a.log().Info("dashboard: access refused", "user", u.Username, "reason", sar.Status.Reason)
		return verdict{code: http.StatusForbidden, message: fmt.Sprintf("Forbidden: user %q may not %s %s.%s, which the dashboard requires.",
			u.Username, Access.Verb, Access.Resource, Access.Group)}, nil
	}
	return verdict{}, nil
}
