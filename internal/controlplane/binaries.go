package controlplane

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// KubeVersion is the Kubernetes release whose control plane this package
// builds and runs. It must match the k8s.io/kubernetes requirement in
// hack/kube/go.mod.
const KubeVersion = "v1.37.2"

// The module that builds the binaries lives in hack/kube. A file named go.mod
// cannot be embedded (the directory would become a nested module), so copies
// with a .txt suffix are kept here; TestEmbeddedKubeModuleUpToDate fails when
// they drift.
//
//go:generate cp ../../hack/kube/go.mod kubemod/go.mod.txt
//go:generate cp ../../hack/kube/go.sum kubemod/go.sum.txt

//go:embed kubemod/go.mod.txt
var kubeGoMod []byte

//go:embed kubemod/go.sum.txt
var kubeGoSum []byte

// Binaries holds absolute paths of the control-plane executables.
type Binaries struct {
	Etcd              string
	APIServer         string
	ControllerManager string
	Kubectl           string
}

// tool is one executable that EnsureBinaries can build.
type tool struct {
	name    string // file name in the cache and in KUBEBUILDER_ASSETS
	pkg     string // package path inside the hack/kube module
	outName string // file name `go build -o dir/` gives it
}

var (
	toolEtcd = tool{"etcd", "go.etcd.io/etcd/server/v3", "server"}
	toolAPI  = tool{"kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver", "kube-apiserver"}
	toolKCM  = tool{"kube-controller-manager", "k8s.io/kubernetes/cmd/kube-controller-manager", "kube-controller-manager"}
	toolCtl  = tool{"kubectl", "k8s.io/kubernetes/cmd/kubectl", "kubectl"}
	allTools = []tool{toolEtcd, toolAPI, toolKCM, toolCtl}
)

// CacheDir returns the directory EnsureBinaries keeps built binaries in:
// $BOUNCER_KUBE_CACHE if set, else <user cache dir>/bouncer/kube/<KubeVersion>.
func CacheDir() (string, error) {
	if dir := os.Getenv("BOUNCER_KUBE_CACHE"); dir != "" {
		return filepath.Abs(dir)
	}
	// os.UserCacheDir already honours XDG_CACHE_HOME on Linux.
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("locating the user cache dir (set BOUNCER_KUBE_CACHE): %w", err)
	}
	return filepath.Join(base, "bouncer", "kube", KubeVersion), nil
}

// EnsureBinaries returns the etcd, kube-apiserver, kube-controller-manager
// and kubectl executables, building them from the Go module proxy on first
// use. Lookup order:
//
//  1. $KUBEBUILDER_ASSETS (controller-runtime envtest layout) when it holds
//     etcd, kube-apiserver and kubectl; kube-controller-manager is taken from
//     there too if present, otherwise it is built into the cache.
//  2. The cache dir (see CacheDir).
//  3. `go build` of hack/kube's module (embedded in this package) into the
//     cache dir. This takes several minutes the first time; the Go build
//     cache makes later builds fast.
//
// Build output and a short explanation go to progress (may be nil).
// Concurrent callers, including other processes, build at most once.
func EnsureBinaries(ctx context.Context, progress io.Writer) (Binaries, error) {
	if progress == nil {
		progress = io.Discard
	}
	if assets := os.Getenv("KUBEBUILDER_ASSETS"); assets != "" {
		if abs, err := filepath.Abs(assets); err == nil {
			assets = abs
		}
		b := Binaries{
			Etcd:      filepath.Join(assets, toolEtcd.name),
			APIServer: filepath.Join(assets, toolAPI.name),
			Kubectl:   filepath.Join(assets, toolCtl.name),
		}
		if isExecutable(b.Etcd) && isExecutable(b.APIServer) && isExecutable(b.Kubectl) {
			if kcm := filepath.Join(assets, toolKCM.name); isExecutable(kcm) {
				b.ControllerManager = kcm
				return b, nil
			}
			paths, err := ensureCached(ctx, progress, []tool{toolKCM})
			if err != nil {
				return Binaries{}, err
			}
			b.ControllerManager = paths[0]
			return b, nil
		}
		fmt.Fprintf(progress, "KUBEBUILDER_ASSETS=%s lacks etcd, kube-apiserver or kubectl; using Bouncer's own binaries\n", assets)
	}
	paths, err := ensureCached(ctx, progress, allTools)
	if err != nil {
		return Binaries{}, err
	}
	return Binaries{Etcd: paths[0], APIServer: paths[1], ControllerManager: paths[2], Kubectl: paths[3]}, nil
}

// buildMu serializes builds inside this process; the flock below only
// excludes other processes reliably (flock locks belong to the open file
// description, so two opens in one process do exclude each other, but a
// mutex is cheaper than polling).
var buildMu sync.Mutex

// ensureCached returns the cache paths of tools, building the missing ones.
func ensureCached(ctx context.Context, progress io.Writer, tools []tool) ([]string, error) {
	dir, err := CacheDir()
	if err != nil {
		return nil, err
	}
	paths := make([]string, len(tools))
	missing := func() []tool {
		var m []tool
		for i, t := range tools {
			paths[i] = filepath.Join(dir, t.name)
			if !isExecutable(paths[i]) {
				m = append(m, t)
			}
		}
		return m
	}
	if len(missing()) == 0 {
		return paths, nil
	}

	buildMu.Lock()
	defer buildMu.Unlock()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating binary cache: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, ".lock"), progress)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Another process may have built them while we waited for the lock.
	todo := missing()
	if len(todo) == 0 {
		return paths, nil
	}
	if err := build(ctx, progress, dir, todo); err != nil {
		return nil, err
	}
	if m := missing(); len(m) > 0 {
		return nil, fmt.Errorf("building Kubernetes binaries: %s missing from %s after a successful build", m[0].name, dir)
	}
	return paths, nil
}

// lockFile takes an exclusive flock on path, polling so that ctx can cancel
// the wait. The returned func releases it.
func lockFile(ctx context.Context, path string, progress io.Writer) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening build lock: %w", err)
	}
	told := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if !told {
			fmt.Fprintf(progress, "waiting for another process to finish building the Kubernetes binaries (lock %s)\n", path)
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for build lock %s: %w", path, context.Cause(ctx))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

const buildDirPrefix = ".build-"

// build compiles tools from the embedded hack/kube module into a temporary
// directory inside dir and renames each result into dir, so that nobody
// ever sees a half-written executable.
func build(ctx context.Context, progress io.Writer, dir string, tools []tool) error {
	goBin, err := goCommand()
	if err != nil {
		return err
	}
	// Build dirs left by a killed process are hundreds of megabytes; we hold
	// the lock, so none of them is in use.
	if stale, _ := filepath.Glob(filepath.Join(dir, buildDirPrefix+"*")); len(stale) > 0 {
		for _, d := range stale {
			_ = os.RemoveAll(d)
		}
	}
	tmp, err := os.MkdirTemp(dir, buildDirPrefix)
	if err != nil {
		return fmt.Errorf("creating build dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	modDir := filepath.Join(tmp, "module")
	outDir := filepath.Join(tmp, "bin")
	for _, d := range []string{modDir, outDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("creating build dir: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(modDir, "go.mod"), kubeGoMod, 0o644); err != nil {
		return fmt.Errorf("writing build module: %w", err)
	}
	if err := os.WriteFile(filepath.Join(modDir, "go.sum"), kubeGoSum, 0o644); err != nil {
		return fmt.Errorf("writing build module: %w", err)
	}

	fmt.Fprintf(progress, "building Kubernetes %s control plane from the Go module proxy into %s; the first run takes 10 to 40 minutes\n", KubeVersion, dir)
	start := time.Now()
	// One tool at a time: progress can name the binary being built, and each
	// finished one goes into the cache at once, so an interrupted build
	// keeps what it had done. Little is lost: go build already compiles a
	// tool's packages on every CPU, and the tools' shared packages come
	// from the Go build cache after the first.
	for i, t := range tools {
		what := fmt.Sprintf("%s (%d of %d)", t.name, i+1, len(tools))
		if err := buildOne(ctx, progress, goBin, modDir, outDir, what, t, start); err != nil {
			return err
		}
		if err := os.Rename(filepath.Join(outDir, t.outName), filepath.Join(dir, t.name)); err != nil {
			return fmt.Errorf("installing %s: %w", t.name, err)
		}
	}
	fmt.Fprintf(progress, "built Kubernetes %s binaries in %s\n", KubeVersion, time.Since(start).Round(time.Second))
	return nil
}

// buildOne runs go build for one tool, printing a heartbeat that names it:
// go build is silent while it compiles, for minutes.
func buildOne(ctx context.Context, progress io.Writer, goBin, modDir, outDir, what string, t tool, begin time.Time) error {
	args := []string{"build", "-trimpath", "-ldflags", versionLDFlags(), "-o", outDir + string(filepath.Separator), t.pkg}
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = modDir
	cmd.Env = append(os.Environ(),
		"GOWORK=off",            // a user's go.work must not pull this module in
		"GOFLAGS=-mod=readonly", // drop user flags such as -mod=vendor or extra tags
		"CGO_ENABLED=0",         // static binaries, as Kubernetes releases them; no C compiler needed
	)
	cmd.Stdout = progress
	cmd.Stderr = progress
	// On cancellation let go stop its compiler subprocesses itself; kill it
	// only if it does not exit promptly.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second

	fmt.Fprintf(progress, "  building %s\n", what)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("building %s: starting %s: %w", t.name, goBin, err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(30 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				fmt.Fprintf(progress, "  still building %s: %s on it, %s in all\n", what,
					time.Since(start).Round(time.Second), time.Since(begin).Round(time.Second))
			}
		}
	})
	err := cmd.Wait()
	close(stop)
	wg.Wait()
	if err != nil {
		if ctxErr := context.Cause(ctx); ctxErr != nil {
			return fmt.Errorf("building %s: %w", t.name, ctxErr)
		}
		return fmt.Errorf("building %s (go %s): %w", t.name, strings.Join(args, " "), err)
	}
	fmt.Fprintf(progress, "  built %s in %s\n", what, time.Since(start).Round(time.Second))
	return nil
}

// versionLDFlags stamps the release version, as Kubernetes' own build does;
// without it kubectl and the apiserver report v0.0.0-master.
func versionLDFlags() string {
	major, minor, _ := strings.Cut(strings.TrimPrefix(KubeVersion, "v"), ".")
	minor, _, _ = strings.Cut(minor, ".")
	var flags []string
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		flags = append(flags,
			"-X", pkg+".gitVersion="+KubeVersion,
			"-X", pkg+".gitMajor="+major,
			"-X", pkg+".gitMinor="+minor,
			"-X", pkg+".gitTreeState=clean",
		)
	}
	return strings.Join(flags, " ")
}

// goCommand finds the go tool: the one on PATH, else the one that built
// this program (tests run with a toolchain at hand).
func goCommand() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if root := runtime.GOROOT(); root != "" { //nolint:staticcheck // only a fallback
		p := filepath.Join(root, "bin", "go")
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", errors.New("building Kubernetes binaries needs the go command on PATH (or set KUBEBUILDER_ASSETS)")
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 && fi.Size() > 0
}
