package psscorpus

import (
	"fmt"
	"math/rand"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// The generator builds Pods by applying random mutations to a starting pod:
// a fully compliant restricted pod, a pod with no securityContext at all or
// a pod with empty container lists. Every mutation sets one
// security-relevant field to a value drawn from allowed values, forbidden
// values and "unset", so the corpus covers each control's boundaries and
// their combinations.

const image = "registry.example.com/app:1.4.2"

func compliantContainer(name string) corev1.Container {
	return corev1.Container{
		Name:  name,
		Image: image,
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
}

// restrictedPod meets the restricted profile, with one container in each
// list so mutations can reach every list.
func restrictedPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "apps"},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptr.To(true),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			InitContainers: []corev1.Container{compliantContainer("init")},
			Containers:     []corev1.Container{compliantContainer("app")},
			EphemeralContainers: []corev1.EphemeralContainer{{
				EphemeralContainerCommon: corev1.EphemeralContainerCommon(compliantContainer("debug")),
				TargetContainerName:      "app",
			}},
		},
	}
}

func barePod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "bare", Namespace: "apps"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
}

func emptyPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "empty", Namespace: "apps"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{}, InitContainers: []corev1.Container{}},
	}
}

type gen struct {
	r    *rand.Rand
	next int // for unique container names
}

func (g *gen) pick(n int) int { return g.r.Intn(n) }

func (g *gen) chance(p float64) bool { return g.r.Float64() < p }

func oneOf[T any](g *gen, vs ...T) T { return vs[g.pick(len(vs))] }

func (g *gen) boolPtr() *bool { return oneOf(g, nil, ptr.To(true), ptr.To(false)) }

// containers returns pointers to every container of the pod, ephemeral ones
// included, the way PSA visits them.
func containers(spec *corev1.PodSpec) []*corev1.Container {
	var out []*corev1.Container
	for i := range spec.InitContainers {
		out = append(out, &spec.InitContainers[i])
	}
	for i := range spec.Containers {
		out = append(out, &spec.Containers[i])
	}
	for i := range spec.EphemeralContainers {
		out = append(out, (*corev1.Container)(&spec.EphemeralContainers[i].EphemeralContainerCommon))
	}
	return out
}

func podSC(p *corev1.Pod) *corev1.PodSecurityContext {
	if p.Spec.SecurityContext == nil {
		p.Spec.SecurityContext = &corev1.PodSecurityContext{}
	}
	return p.Spec.SecurityContext
}

func ctrSC(c *corev1.Container) *corev1.SecurityContext {
	if c.SecurityContext == nil {
		c.SecurityContext = &corev1.SecurityContext{}
	}
	return c.SecurityContext
}

func (g *gen) seccomp() *corev1.SeccompProfile {
	switch g.pick(7) {
	case 0:
		return nil
	case 1, 2:
		return &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
	case 3:
		return &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: ptr.To("profiles/app.json")}
	case 4:
		return &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
	case 5:
		return &corev1.SeccompProfile{}
	default:
		return &corev1.SeccompProfile{Type: oneOf[corev1.SeccompProfileType](g, "runtime/default", "runtimedefault", "Bogus")}
	}
}

func (g *gen) appArmor() *corev1.AppArmorProfile {
	switch g.pick(6) {
	case 0:
		return nil
	case 1:
		return &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeRuntimeDefault}
	case 2:
		return &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeLocalhost, LocalhostProfile: ptr.To("k8s-app")}
	case 3:
		return &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined}
	case 4:
		return &corev1.AppArmorProfile{}
	default:
		return &corev1.AppArmorProfile{Type: "localhost"}
	}
}

func (g *gen) seLinux() *corev1.SELinuxOptions {
	if g.chance(0.2) {
		return nil
	}
	o := &corev1.SELinuxOptions{
		Type: oneOf(g, "", "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t", "spc_t", "unconfined_t", "Container_t"),
	}
	if g.chance(0.15) {
		o.User = oneOf(g, "system_u", "user_u")
	}
	if g.chance(0.15) {
		o.Role = oneOf(g, "system_r", "object_r")
	}
	if g.chance(0.3) {
		o.Level = "s0:c123,c456"
	}
	return o
}

func (g *gen) windowsOptions() *corev1.WindowsSecurityContextOptions {
	if g.chance(0.3) {
		return nil
	}
	o := &corev1.WindowsSecurityContextOptions{HostProcess: g.boolPtr()}
	if g.chance(0.3) {
		o.RunAsUserName = ptr.To("ContainerUser")
	}
	return o
}

var capabilityNames = []corev1.Capability{
	"ALL", "all", "NET_BIND_SERVICE", "CHOWN", "KILL", "SETUID", "AUDIT_WRITE", "SYS_CHROOT", "MKNOD",
	"NET_RAW", "SYS_ADMIN", "SYS_PTRACE", "NET_ADMIN", "CAP_CHOWN", "BPF",
}

func (g *gen) capabilities() *corev1.Capabilities {
	if g.chance(0.15) {
		return nil
	}
	c := &corev1.Capabilities{}
	for range g.pick(3) {
		c.Add = append(c.Add, oneOf(g, capabilityNames...))
	}
	switch g.pick(4) {
	case 0:
	case 1, 2:
		c.Drop = []corev1.Capability{"ALL"}
	default:
		for range 1 + g.pick(2) {
			c.Drop = append(c.Drop, oneOf(g, capabilityNames...))
		}
	}
	return c
}

var sysctlNames = []string{
	// safe in v1.37
	"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range",
	"net.ipv4.ip_unprivileged_port_start", "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time",
	"net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes",
	"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem", "net.ipv4.tcp_slow_start_after_idle", "net.ipv4.tcp_notsent_lowat",
	// unsafe
	"kernel.msgmax", "kernel.shmmax", "net.core.somaxconn", "net.ipv4.ip_forward", "net.ipv4.tcp_max_syn_backlog",
	"net/ipv4/tcp_syncookies", "vm.swappiness",
}

// volume returns a volume of a random type, allowed or not by restricted.
func (g *gen) volume(name string) corev1.Volume {
	v := corev1.Volume{Name: name}
	s := &v.VolumeSource
	switch g.pick(28) {
	case 0:
		s.ConfigMap = &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}
	case 1:
		s.Secret = &corev1.SecretVolumeSource{SecretName: "s"}
	case 2:
		s.EmptyDir = &corev1.EmptyDirVolumeSource{}
	case 3:
		s.PersistentVolumeClaim = &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}
	case 4:
		s.DownwardAPI = &corev1.DownwardAPIVolumeSource{}
	case 5:
		s.Projected = &corev1.ProjectedVolumeSource{}
	case 6:
		s.CSI = &corev1.CSIVolumeSource{Driver: "csi.example.com"}
	case 7:
		s.Ephemeral = &corev1.EphemeralVolumeSource{}
	case 8:
		s.Image = &corev1.ImageVolumeSource{Reference: "registry.example.com/model:1"}
	case 9, 10:
		s.HostPath = &corev1.HostPathVolumeSource{Path: "/var/run"}
	case 11:
		s.GCEPersistentDisk = &corev1.GCEPersistentDiskVolumeSource{PDName: "pd"}
	case 12:
		s.AWSElasticBlockStore = &corev1.AWSElasticBlockStoreVolumeSource{VolumeID: "vol"}
	case 13:
		s.GitRepo = &corev1.GitRepoVolumeSource{Repository: "https://example.com/r.git"}
	case 14:
		s.NFS = &corev1.NFSVolumeSource{Server: "nfs", Path: "/"}
	case 15:
		s.ISCSI = &corev1.ISCSIVolumeSource{TargetPortal: "t", IQN: "i"}
	case 16:
		s.Glusterfs = &corev1.GlusterfsVolumeSource{EndpointsName: "e", Path: "p"}
	case 17:
		s.RBD = &corev1.RBDVolumeSource{CephMonitors: []string{"m"}, RBDImage: "i"}
	case 18:
		s.FlexVolume = &corev1.FlexVolumeSource{Driver: "d"}
	case 19:
		s.Cinder = &corev1.CinderVolumeSource{VolumeID: "v"}
	case 20:
		s.CephFS = &corev1.CephFSVolumeSource{Monitors: []string{"m"}}
	case 21:
		s.FC = &corev1.FCVolumeSource{}
	case 22:
		s.AzureFile = &corev1.AzureFileVolumeSource{SecretName: "s", ShareName: "x"}
	case 23:
		s.AzureDisk = &corev1.AzureDiskVolumeSource{DiskName: "d", DataDiskURI: "u"}
	case 24:
		s.PortworxVolume = &corev1.PortworxVolumeSource{VolumeID: "v"}
	case 25:
		s.StorageOS = &corev1.StorageOSVolumeSource{VolumeName: "v"}
	case 26:
		s.Quobyte = &corev1.QuobyteVolumeSource{Registry: "r", Volume: "v"}
	default:
		// no source at all
	}
	return v
}

func (g *gen) handlerHost() string {
	return oneOf(g, "", "", "10.0.0.1", "localhost", "169.254.169.254")
}

func (g *gen) probe() *corev1.Probe {
	switch g.pick(4) {
	case 0:
		return nil
	case 1:
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Host: g.handlerHost(), Path: "/healthz"}}}
	case 2:
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Host: g.handlerHost()}}}
	default:
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}
	}
}

func (g *gen) lifecycleHandler() *corev1.LifecycleHandler {
	switch g.pick(4) {
	case 0:
		return nil
	case 1:
		return &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Host: g.handlerHost(), Path: "/stop"}}
	case 2:
		return &corev1.LifecycleHandler{TCPSocket: &corev1.TCPSocketAction{Host: g.handlerHost()}}
	default:
		return &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 1}}
	}
}

// A mutation changes one aspect of a pod.
type mutation struct {
	name string
	fn   func(g *gen, p *corev1.Pod)
}

// container picks a random container of the pod, or nil if it has none.
func (g *gen) container(p *corev1.Pod) *corev1.Container {
	cs := containers(&p.Spec)
	if len(cs) == 0 {
		return nil
	}
	return cs[g.pick(len(cs))]
}

func containerMutation(name string, fn func(g *gen, c *corev1.Container)) mutation {
	return mutation{name, func(g *gen, p *corev1.Pod) {
		if c := g.container(p); c != nil {
			fn(g, c)
		}
	}}
}

var mutations = []mutation{
	{"hostNetwork", func(g *gen, p *corev1.Pod) { p.Spec.HostNetwork = g.chance(0.5) }},
	{"hostPID", func(g *gen, p *corev1.Pod) { p.Spec.HostPID = g.chance(0.5) }},
	{"hostIPC", func(g *gen, p *corev1.Pod) { p.Spec.HostIPC = g.chance(0.5) }},
	{"hostUsers", func(g *gen, p *corev1.Pod) { p.Spec.HostUsers = g.boolPtr() }},
	{"os", func(g *gen, p *corev1.Pod) {
		p.Spec.OS = oneOf(g, nil, &corev1.PodOS{Name: corev1.Linux}, &corev1.PodOS{Name: corev1.Windows}, &corev1.PodOS{Name: "Windows"})
	}},
	{"pod.securityContext", func(g *gen, p *corev1.Pod) { p.Spec.SecurityContext = oneOf(g, nil, &corev1.PodSecurityContext{}) }},
	{"pod.runAsNonRoot", func(g *gen, p *corev1.Pod) { podSC(p).RunAsNonRoot = g.boolPtr() }},
	{"pod.runAsUser", func(g *gen, p *corev1.Pod) { podSC(p).RunAsUser = oneOf(g, nil, ptr.To[int64](0), ptr.To[int64](1000)) }},
	{"pod.seccompProfile", func(g *gen, p *corev1.Pod) { podSC(p).SeccompProfile = g.seccomp() }},
	{"pod.appArmorProfile", func(g *gen, p *corev1.Pod) { podSC(p).AppArmorProfile = g.appArmor() }},
	{"pod.seLinuxOptions", func(g *gen, p *corev1.Pod) { podSC(p).SELinuxOptions = g.seLinux() }},
	{"pod.windowsOptions", func(g *gen, p *corev1.Pod) { podSC(p).WindowsOptions = g.windowsOptions() }},
	{"pod.sysctls", func(g *gen, p *corev1.Pod) {
		var s []corev1.Sysctl
		for range g.pick(4) {
			s = append(s, corev1.Sysctl{Name: oneOf(g, sysctlNames...), Value: "1"})
		}
		podSC(p).Sysctls = s
	}},
	{"volumes", func(g *gen, p *corev1.Pod) {
		if g.chance(0.2) {
			p.Spec.Volumes = nil
			return
		}
		g.next++
		p.Spec.Volumes = append(p.Spec.Volumes, g.volume(fmt.Sprintf("vol%d", g.next)))
	}},
	{"annotation.apparmor", func(g *gen, p *corev1.Pod) {
		key := "container.apparmor.security.beta.kubernetes.io/" + oneOf(g, "app", "init", "debug", "other")
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[key] = oneOf(g, "", "runtime/default", "localhost/k8s-app", "localhost/", "unconfined", "RuntimeDefault", "docker/default")
	}},
	{"annotation.seccomp", func(g *gen, p *corev1.Pod) {
		// Only PSA versions before v1.19 read these; latest ignores them.
		key := oneOf(g, "seccomp.security.alpha.kubernetes.io/pod", "container.seccomp.security.alpha.kubernetes.io/app")
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[key] = oneOf(g, "unconfined", "runtime/default")
	}},
	{"add container", func(g *gen, p *corev1.Pod) {
		g.next++
		name := fmt.Sprintf("c%d", g.next)
		c := compliantContainer(name)
		if g.chance(0.4) {
			c = corev1.Container{Name: name, Image: image}
		}
		switch g.pick(3) {
		case 0:
			p.Spec.Containers = append(p.Spec.Containers, c)
		case 1:
			p.Spec.InitContainers = append(p.Spec.InitContainers, c)
		default:
			p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon(c)})
		}
	}},
	{"clear container list", func(g *gen, p *corev1.Pod) {
		switch g.pick(3) {
		case 0:
			p.Spec.Containers = oneOf(g, nil, []corev1.Container{})
		case 1:
			p.Spec.InitContainers = nil
		default:
			p.Spec.EphemeralContainers = nil
		}
	}},
	containerMutation("securityContext", func(g *gen, c *corev1.Container) {
		c.SecurityContext = oneOf(g, nil, &corev1.SecurityContext{})
	}),
	containerMutation("privileged", func(g *gen, c *corev1.Container) { ctrSC(c).Privileged = g.boolPtr() }),
	containerMutation("allowPrivilegeEscalation", func(g *gen, c *corev1.Container) { ctrSC(c).AllowPrivilegeEscalation = g.boolPtr() }),
	containerMutation("capabilities", func(g *gen, c *corev1.Container) { ctrSC(c).Capabilities = g.capabilities() }),
	containerMutation("runAsNonRoot", func(g *gen, c *corev1.Container) { ctrSC(c).RunAsNonRoot = g.boolPtr() }),
	containerMutation("runAsUser", func(g *gen, c *corev1.Container) {
		ctrSC(c).RunAsUser = oneOf(g, nil, ptr.To[int64](0), ptr.To[int64](1), ptr.To[int64](65534))
	}),
	containerMutation("seccompProfile", func(g *gen, c *corev1.Container) { ctrSC(c).SeccompProfile = g.seccomp() }),
	containerMutation("appArmorProfile", func(g *gen, c *corev1.Container) { ctrSC(c).AppArmorProfile = g.appArmor() }),
	containerMutation("seLinuxOptions", func(g *gen, c *corev1.Container) { ctrSC(c).SELinuxOptions = g.seLinux() }),
	containerMutation("procMount", func(g *gen, c *corev1.Container) {
		ctrSC(c).ProcMount = oneOf(g, nil, ptr.To(corev1.DefaultProcMount), ptr.To(corev1.UnmaskedProcMount), ptr.To(corev1.ProcMountType("")))
	}),
	containerMutation("windowsOptions", func(g *gen, c *corev1.Container) { ctrSC(c).WindowsOptions = g.windowsOptions() }),
	containerMutation("hostPort", func(g *gen, c *corev1.Container) {
		c.Ports = nil
		for range g.pick(3) {
			c.Ports = append(c.Ports, corev1.ContainerPort{ContainerPort: 8080, HostPort: oneOf[int32](g, 0, 0, 80, 8080, 65535)})
		}
	}),
	containerMutation("probes", func(g *gen, c *corev1.Container) {
		c.LivenessProbe, c.ReadinessProbe, c.StartupProbe = g.probe(), g.probe(), g.probe()
	}),
	containerMutation("lifecycle", func(g *gen, c *corev1.Container) {
		if g.chance(0.2) {
			c.Lifecycle = nil
			return
		}
		c.Lifecycle = &corev1.Lifecycle{PostStart: g.lifecycleHandler(), PreStop: g.lifecycleHandler()}
	}),
}

// randomPod starts from one of the base pods and applies up to max random
// mutations (fewer from the compliant base so that many pods stay allowed).
func (g *gen) randomPod() *corev1.Pod {
	var p *corev1.Pod
	n := 0
	switch k := g.pick(10); {
	case k < 6:
		p, n = restrictedPod(), g.pick(4)
	case k < 9:
		p, n = barePod(), 1+g.pick(12)
	default:
		p, n = emptyPod(), g.pick(8)
	}
	for range n {
		mutations[g.pick(len(mutations))].fn(g, p)
	}
	return p
}

// corpus returns the generated pods with a label each: size random pods,
// then perMutation single-mutation variants of the compliant restricted pod
// for every mutation.
func corpus(seed int64, size, perMutation int) (pods []*corev1.Pod, labels []string) {
	g := &gen{r: rand.New(rand.NewSource(seed))}
	for i := range size {
		pods = append(pods, g.randomPod())
		labels = append(labels, fmt.Sprintf("random #%d", i))
	}
	for _, m := range mutations {
		for i := range perMutation {
			p := restrictedPod()
			m.fn(g, p)
			pods = append(pods, p)
			labels = append(labels, fmt.Sprintf("single mutation %q #%d", m.name, i))
		}
	}
	return pods, labels
}
