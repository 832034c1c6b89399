package gitserver

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHServer serves the bare repositories under Root over ssh on loopback
// for fetches: it runs git-upload-pack for the one client key it accepts,
// and nothing else.
type SSHServer struct {
	// Root holds bare repositories, served at ssh://git@host/<name>.git.
	Root string
	// AuthorizedKey is the only client key accepted.
	AuthorizedKey ssh.PublicKey

	hostKey ssh.Signer
	ln      net.Listener
	wg      sync.WaitGroup
}

// NewSSHKey returns a fresh ed25519 key as OpenSSH PEM and its public key.
func NewSSHKey() ([]byte, ssh.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return nil, nil, err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(block), sshPub, nil
}

// Start listens on a free loopback port with a fresh host key.
func (s *SSHServer) Start() error {
	if s.AuthorizedKey == nil {
		return errors.New("git ssh server: no authorized key")
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("git ssh server: host key: %w", err)
	}
	if s.hostKey, err = ssh.NewSignerFromKey(priv); err != nil {
		return fmt.Errorf("git ssh server: host key: %w", err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
		if string(key.Marshal()) != string(s.AuthorizedKey.Marshal()) {
			return nil, errors.New("unknown key")
		}
		return nil, nil
	}}
	cfg.AddHostKey(s.hostKey)
	if s.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return fmt.Errorf("git ssh server: listening: %w", err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			conn, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(conn, cfg)
			}()
		}
	}()
	return nil
}

// KnownHosts is a known_hosts line for the server's host key.
func (s *SSHServer) KnownHosts() []byte {
	return []byte(knownhosts.Line([]string{knownhosts.Normalize(s.ln.Addr().String())}, s.hostKey.PublicKey()) + "\n")
}

// URL is the clone URL of the repository name (without .git).
func (s *SSHServer) URL(name string) string {
	return fmt.Sprintf("ssh://git@%s/%s.git", s.ln.Addr(), name)
}

// Close stops listening and waits for the sessions to end.
func (s *SSHServer) Close() error {
	if s.ln == nil {
		return nil
	}
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

func (s *SSHServer) serve(conn net.Conn, cfg *ssh.ServerConfig) {
	defer conn.Close()
	sc, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			return
		}
		go s.session(ch, chReqs)
	}
}

// session runs the one exec request of a session; env and other requests
// are refused.
func (s *SSHServer) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			_ = req.Reply(false, nil)
			continue
		}
		var payload struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &payload); err != nil {
			_ = req.Reply(false, nil)
			return
		}
		dir, err := s.repoDir(payload.Command)
		if err != nil {
			_ = req.Reply(true, nil)
			fmt.Fprintln(ch.Stderr(), err)
			exit(ch, 128)
			return
		}
		_ = req.Reply(true, nil)
		exit(ch, uploadPack(ch, dir))
		return
	}
}

// repoDir is the repository a "git-upload-pack '/name.git'" command names.
func (s *SSHServer) repoDir(command string) (string, error) {
	service, arg, ok := strings.Cut(command, " ")
	if !ok || service != "git-upload-pack" {
		return "", fmt.Errorf("only git-upload-pack is served, not %q", command)
	}
	rel := strings.TrimPrefix(strings.Trim(arg, "'"), "/")
	dir := filepath.Join(s.Root, rel)
	if fi, err := os.Stat(dir); !filepath.IsLocal(rel) || err != nil || !fi.IsDir() {
		// git's own words, which clients read as "no such repository".
		return "", fmt.Errorf("fatal: %s does not appear to be a git repository", arg)
	}
	return dir, nil
}

// uploadPack runs git-upload-pack on the channel and returns its exit code.
// Stdin is copied by hand: exec would wait for the client to close its
// side, which it does only after the exit status.
func uploadPack(ch ssh.Channel, dir string) int {
	cmd := exec.Command("git", "upload-pack", "--strict", dir)
	cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 1
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(ch.Stderr(), err)
		return 1
	}
	go func() {
		_, _ = io.Copy(stdin, ch)
		_ = stdin.Close()
	}()
	if err := cmd.Wait(); err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return exitErr.ExitCode()
		}
		return 1
	}
	return 0
}

func exit(ch ssh.Channel, code int) {
	_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
}
