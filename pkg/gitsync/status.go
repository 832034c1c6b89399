package gitsync

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/apply"
	"github.com/bouncer-policy/bouncer/pkg/gitsource"
	"github.com/bouncer-policy/bouncer/pkg/vet"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
)

// Error codes besides pkg/vet's finding codes.
const (
	CodeSource            = "source"               // the commit could not be fetched or read, for a reason below or another
	CodeSourceAuth        = "source-auth"          // the git server wants credentials or refused them
	CodeSourceForbidden   = "source-forbidden"     // the credentials may not read the repository
	CodeSourceNotFound    = "source-not-found"     // no such repository
	CodeSourceRefNotFound = "source-ref-not-found" // no such branch, tag or commit
	CodeSourceUnreachable = "source-unreachable"   // no connection to the git server
	CodeSourceTLS         = "source-tls"           // the git server's certificate is not trusted
	CodeSourceHostKey     = "source-host-key"      // the git server's ssh host key is not the known one
	CodeApply             = "apply"                // an object could not be applied or pruned
)

// sourceCodes and sourceAdvice turn a fetch error's kind into its status
// code and what to change in the PolicySync.
var (
	sourceCodes = map[gitsource.Kind]string{
		gitsource.KindAuth:        CodeSourceAuth,
		gitsource.KindForbidden:   CodeSourceForbidden,
		gitsource.KindNotFound:    CodeSourceNotFound,
		gitsource.KindRefNotFound: CodeSourceRefNotFound,
		gitsource.KindUnreachable: CodeSourceUnreachable,
		gitsource.KindTLS:         CodeSourceTLS,
		gitsource.KindHostKey:     CodeSourceHostKey,
	}
	sourceAdvice = map[gitsource.Kind]string{
		gitsource.KindAuth:        "check spec.git.auth and the credentials in the Secret named by spec.git.secretRef",
		gitsource.KindForbidden:   "grant the credentials in spec.git.secretRef read access to the repository",
		gitsource.KindNotFound:    "check spec.git.repo, and that the credentials in spec.git.secretRef can see the repository",
		gitsource.KindRefNotFound: "check spec.git.branch and spec.git.revision",
		gitsource.KindTLS:         "put the CA that signed the server's certificate in the Secret named by spec.git.caCertSecretRef",
		gitsource.KindHostKey:     "put the server's host key in known_hosts of the Secret named by spec.git.secretRef",
	}
)

// sourceError is the status error of a failed fetch.
func sourceError(err error) apis.SyncError {
	kind := gitsource.KindOf(err)
	code, ok := sourceCodes[kind]
	if !ok {
		code = CodeSource
	}
	msg := err.Error()
	if advice := sourceAdvice[kind]; advice != "" {
		msg += " (" + advice + ")"
	}
	return apis.SyncError{Code: code, Message: msg}
}

// maxErrors per step in status; errorSummary counts the rest, so a commit
// with thousands of bad files does not make the PolicySync too large.
const maxErrors = 20

// Condition types and reasons.
const (
	CondReady       = "Ready"
	CondReconciling = "Reconciling"
	CondStalled     = "Stalled"
)

// decode reads a PolicySync; JSON round trip so metav1.Duration and Time
// parse as the apiserver wrote them.
func decode(u *unstructured.Unstructured) (*apis.PolicySync, error) {
	b, err := u.MarshalJSON()
	if err != nil {
		return nil, err
	}
	var ps apis.PolicySync
	if err := json.Unmarshal(b, &ps); err != nil {
		return nil, fmt.Errorf("decoding PolicySync %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	return &ps, nil
}

// step is the new state of one step: its lastUpdate moves only when what
// it says changes, so an unchanged pass writes nothing.
func step(old apis.SyncStep, commit string, errs []apis.SyncError, now metav1.Time) apis.SyncStep {
	s := apis.SyncStep{Commit: commit}
	if len(errs) > 0 {
		s.ErrorSummary = &apis.ErrorSummary{TotalCount: len(errs), Truncated: len(errs) > maxErrors}
		if len(errs) > maxErrors {
			errs = errs[:maxErrors]
		}
		s.Errors = errs
	}
	s.LastUpdate = old.LastUpdate
	if !reflect.DeepEqual(old.Errors, s.Errors) || old.Commit != s.Commit || old.LastUpdate == nil {
		s.LastUpdate = &now
	}
	return s
}

// findingErrors turns vet findings into status errors with paths relative
// to the repository's root.
func findingErrors(fs []vet.Finding, root string) []apis.SyncError {
	out := make([]apis.SyncError, 0, len(fs))
	for _, f := range fs {
		e := apis.SyncError{Code: f.Code, Message: strings.ReplaceAll(f.Message, root+string(filepath.Separator), "")}
		file := f.File
		if fi, err := os.Stat(file); err == nil && fi.IsDir() {
			file = "" // a finding about the whole directory; its message names the file
		} else {
			file = relativeFile(root, f.File)
		}
		if file != "" || f.Object != "" {
			e.Resources = []apis.SyncResource{{File: file, Line: f.Line, Object: f.Object}}
		}
		out = append(out, e)
	}
	return out
}

// applyErrors turns the applier's object errors into status errors, with
// the file and line of each object the commit holds.
func applyErrors(res *apply.Result, origins map[apply.ObjectRef]apis.SyncResource) []apis.SyncError {
	var out []apis.SyncError
	for _, e := range res.Errors {
		r := origins[e.Object]
		r.Object = e.Object.String()
		out = append(out, apis.SyncError{Code: CodeApply, Message: e.Err.Error(), Resources: []apis.SyncResource{r}})
	}
	return out
}

// relativeFile is file relative to the repository's root, or as it is when
// it lies outside.
func relativeFile(root, file string) string {
	if rel, err := filepath.Rel(root, file); err == nil && !strings.HasPrefix(rel, "..") {
		return filepath.ToSlash(rel)
	}
	return file
}

// setConditions records the pass: Ready True with no error, otherwise
// Ready False and Stalled True with the first error, naming the commit that
// stays applied.
func setConditions(st *apis.PolicySyncStatus, gen int64, reason string, errs []apis.SyncError, okMessage string) {
	set := func(t string, s metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: t, Status: s, ObservedGeneration: gen, Reason: reason, Message: msg})
	}
	set(CondReconciling, metav1.ConditionFalse, "PassDone", "")
	if len(errs) == 0 {
		set(CondReady, metav1.ConditionTrue, "Synced", okMessage)
		set(CondStalled, metav1.ConditionFalse, "Synced", "")
		return
	}
	msg := fmt.Sprintf("[%s] %s", errs[0].Code, errs[0].Message)
	if len(errs[0].Resources) > 0 {
		r := errs[0].Resources[0]
		msg = strings.TrimSpace(r.File+" "+r.Object) + ": " + msg
	}
	if len(errs) > 1 {
		msg += fmt.Sprintf(" (and %d more)", len(errs)-1)
	}
	if st.LastSyncedCommit != "" {
		msg += "; commit " + short(st.LastSyncedCommit) + " stays applied"
	} else {
		msg += "; nothing applied yet"
	}
	set(CondReady, metav1.ConditionFalse, reason, msg)
	set(CondStalled, metav1.ConditionTrue, reason, msg)
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}

// writeStatus replaces status with st unless it is what the object holds.
func writeStatus(ctx context.Context, dyn dynamic.Interface, ps *apis.PolicySync, old, st apis.PolicySyncStatus) error {
	if reflect.DeepEqual(old, st) {
		return nil
	}
	patch, err := json.Marshal([]map[string]any{{"op": "add", "path": "/status", "value": st}})
	if err != nil {
		return err
	}
	_, err = dyn.Resource(PolicySyncGVR).Namespace(ps.Namespace).Patch(ctx, ps.Name, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: apply.FieldManager}, "status")
	if err != nil {
		return fmt.Errorf("writing status of PolicySync %s/%s: %w", ps.Namespace, ps.Name, err)
	}
	return nil
}

// applied time now, truncated as the apiserver stores it, so comparing
// with what was read back works.
func now() metav1.Time { return metav1.NewTime(time.Now().Truncate(time.Second)) }

// setConditionsReconciling marks a new commit being applied.
func setConditionsReconciling(st *apis.PolicySyncStatus, gen int64, commit string) {
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: CondReconciling, Status: metav1.ConditionTrue, ObservedGeneration: gen,
		Reason: "Applying", Message: "applying commit " + short(commit)})
}
