package gitsource

import (
	"context"
	"strings"
	"testing"

	"github.com/bouncer-policy/bouncer/internal/gitserver"
)

func sshServer(t *testing.T, root string) (*gitserver.SSHServer, []byte) {
	t.Helper()
	key, pub, err := gitserver.NewSSHKey()
	if err != nil {
		t.Fatal(err)
	}
	srv := &gitserver.SSHServer{Root: root, AuthorizedKey: pub}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv, key
}

func TestFetchOverSSH(t *testing.T) {
	u := newUpstream(t, nil, "policies")
	c1 := u.commit(t, false, map[string]string{"a.yaml": "a: 1\n"})
	srv, key := sshServer(t, u.srv.Root)
	spec := Spec{Repo: srv.URL("policies"), Auth: AuthSSH, SSHKey: key, KnownHosts: srv.KnownHosts()}

	f := &Fetcher{CacheDir: t.TempDir()}
	co := fetchOK(t, f, spec, c1)
	sameFiles(t, co.Dir, map[string]string{"a.yaml": "a: 1\n"})
	c2 := u.commit(t, false, map[string]string{"a.yaml": "a: 2\n", "b.yaml": "b: 1\n"})
	co = fetchOK(t, f, spec, c2)
	sameFiles(t, co.Dir, map[string]string{"a.yaml": "a: 2\n", "b.yaml": "b: 1\n"})

	otherKey, _, err := gitserver.NewSSHKey()
	if err != nil {
		t.Fatal(err)
	}
	impostor, _ := sshServer(t, u.srv.Root)
	// known_hosts naming this server's address with the impostor's key.
	wrongHost := strings.Replace(string(impostor.KnownHosts()), hostOf(impostor), hostOf(srv), 1)
	with := func(f func(*Spec)) Spec { s := spec; f(&s); return s }
	for _, c := range []struct {
		name string
		spec Spec
		kind Kind
		want string
	}{
		{"key not authorized", with(func(s *Spec) { s.SSHKey = otherKey }), KindAuth, "unable to authenticate"},
		{"host key differs", with(func(s *Spec) { s.KnownHosts = []byte(wrongHost) }), KindHostKey, "known_hosts"},
		{"host unknown", with(func(s *Spec) { s.KnownHosts = impostor.KnownHosts() }), KindHostKey, "known_hosts"},
		{"missing repository", with(func(s *Spec) { s.Repo = srv.URL("nope") }), KindNotFound, "nope.git"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := (&Fetcher{CacheDir: t.TempDir()}).Fetch(context.Background(), c.spec)
			t.Log(err)
			if KindOf(err) != c.kind || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v (kind %s), want kind %s and %q", err, KindOf(err), c.kind, c.want)
			}
		})
	}
}

// hostOf is the host part of a server's known_hosts line.
func hostOf(s *gitserver.SSHServer) string {
	return strings.Fields(string(s.KnownHosts()))[0]
}
