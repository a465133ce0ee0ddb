package manifests

import (
	"cmp"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"

	"github.com/duetcdn/duet/edge"
	"github.com/duetcdn/duet/internal/config"
	"github.com/duetcdn/duet/internal/tlsconf"
	"github.com/duetcdn/duet/origin/replicate"
	"github.com/duetcdn/duet/purge"
	"github.com/duetcdn/duet/steering"
)

// The role configurations of cmd/duet live in package main, which cannot be imported. These
// mirror them: the role package's own Config as it is, plus the role-level settings the
// manifests use. A key missing from a mirror fails the strict load, and
// TestMirrorsMatchCommand checks that every key a mirror adds is one cmd/duet declares, so a
// mirror can be narrower than the real configuration, never wider.

type natsFile struct {
	URLs      []string `yaml:"urls"`
	CredsFile string   `yaml:"creds_file"`
	NKeyFile  string   `yaml:"nkey_file"`
	User      string   `yaml:"user"`
	Password  string   `yaml:"password"`
	Token     string   `yaml:"token"`
	CAFile    string   `yaml:"ca_file"`
	CertFile  string   `yaml:"cert_file"`
	KeyFile   string   `yaml:"key_file"`
}

type edgeFile struct {
	edge.Config `yaml:",inline"`
	PublicURL   string   `yaml:"public_url"`
	NATS        natsFile `yaml:"nats"`
	Purge       struct {
		Regions        []string      `yaml:"regions"`
		StalenessBound time.Duration `yaml:"staleness_bound"`
	} `yaml:"purge"`
	Steering struct {
		HLSServerURI  string `yaml:"hls_server_uri"`
		DASHServerURI string `yaml:"dash_server_uri"`
		Pathway       string `yaml:"pathway"`
	} `yaml:"steering"`
}

type steeringFile struct {
	steering.Config `yaml:",inline"`
	Name            string         `yaml:"name"`
	NATS            natsFile       `yaml:"nats"`
	TLS             tlsconf.Config `yaml:"tls"`
}

type replicateFile struct {
	replicate.Config `yaml:",inline"`
	Name             string   `yaml:"name"`
	NATS             natsFile `yaml:"nats"`
	Admin            string   `yaml:"admin"`
}

type purgeFile struct {
	purge.ServiceConfig `yaml:",inline"`
	NATS                natsFile `yaml:"nats"`
}

// TestMirrorsMatchCommand: every role-level key the mirrors add is declared in cmd/duet.
func TestMirrorsMatchCommand(t *testing.T) {
	var src strings.Builder
	files, _ := filepath.Glob("../cmd/duet/*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src.Write(b)
	}
	if src.Len() == 0 {
		t.Fatal("no cmd/duet sources found")
	}
	for _, k := range []string{"urls", "creds_file", "user", "password", "token", "ca_file", "cert_file", "key_file",
		"public_url", "nats", "purge", "regions", "staleness_bound", "steering", "hls_server_uri", "dash_server_uri",
		"pathway", "name", "admin", "tls"} {
		if !strings.Contains(src.String(), `yaml:"`+k+`"`) {
			t.Errorf("the test's config mirrors use key %q, which cmd/duet does not declare", k)
		}
	}
}

// configFile finds the file a container's --config names, in the ConfigMap mounted there.
func configFile(t *testing.T, c *cluster, w workload, ctr corev1.Container) string {
	t.Helper()
	path := ""
	for i, a := range ctr.Args {
		if (a == "--config" || a == "-c") && i+1 < len(ctr.Args) {
			path = ctr.Args[i+1]
		} else if v, ok := strings.CutPrefix(a, "--config="); ok {
			path = v
		}
	}
	if path == "" {
		t.Fatalf("%s: no --config argument", w)
	}
	for _, m := range ctr.VolumeMounts {
		if filepath.Dir(path) != filepath.Clean(m.MountPath) {
			continue
		}
		for _, v := range w.spec.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil {
				continue
			}
			k := filepath.Base(path)
			for _, it := range v.ConfigMap.Items {
				if it.Path == k {
					k = it.Key
				}
			}
			cm := c.configMap(w.namespace, v.ConfigMap.Name)
			if cm == nil {
				t.Fatalf("%s: ConfigMap %s is not built", w, v.ConfigMap.Name)
			}
			data, ok := cm.Data[k]
			if !ok {
				t.Fatalf("%s: --config %s: ConfigMap %s has no key %q", w, path, cm.Name, k)
			}
			return data
		}
	}
	t.Fatalf("%s: --config %s is not in a mounted ConfigMap", w, path)
	return ""
}

// loadRole loads a role's config file and environment with the loader the role uses (strict
// YAML, DUET_<ROLE>_* variables) and checks that every DUET_<ROLE>_* variable the container
// sets is one of the role's settings (the loader ignores unknown ones).
func loadRole(t *testing.T, role string, target any, text string, environ []string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), role+".yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet(role, pflag.ContinueOnError)
	ld := config.NewLoader(role, target, fs)
	known := map[string]bool{}
	fs.VisitAll(func(f *pflag.Flag) { known[config.EnvName(role, f.Name)] = true })
	prefix := "DUET_" + strings.ToUpper(role) + "_"
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, prefix) && !known[name] {
			t.Errorf("duet %s: environment %s is not one of its settings", role, name)
		}
	}
	if err := ld.Load(path, environ); err != nil {
		t.Errorf("duet %s: config from the manifests does not load: %v", role, err)
	}
}

// container returns the workload's one container, its environment and its ports by name.
func container(t *testing.T, c *cluster, w workload) (corev1.Container, []string, map[string]int32) {
	t.Helper()
	if len(w.spec.Containers) != 1 {
		t.Fatalf("%s: %d containers, want 1", w, len(w.spec.Containers))
	}
	ctr := w.spec.Containers[0]
	env, err := containerEnv(c, w, ctr)
	if err != nil {
		t.Fatalf("%s: %v", w, err)
	}
	ports := map[string]int32{}
	for _, p := range ctr.Ports {
		ports[p.Name] = p.ContainerPort
	}
	return ctr, env, ports
}

// listenPort checks that a listen address takes connections from outside the pod on the named
// container port, and returns the port.
func listenPort(t *testing.T, what, addr string, ports map[string]int32, portName string) {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Errorf("%s %q: %v", what, addr, err)
		return
	}
	if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
		t.Errorf("%s %q listens on loopback: probes, Services and Prometheus cannot reach it", what, addr)
	}
	n, _ := strconv.Atoi(p)
	if want, ok := ports[portName]; !ok || int32(n) != want {
		t.Errorf("%s %q: port %d, but container port %q is %d", what, addr, n, portName, want)
	}
}

func probePortNumber(p *corev1.Probe, ports map[string]int32) int32 {
	if p == nil || p.HTTPGet == nil {
		return -1
	}
	if p.HTTPGet.Port.StrVal != "" {
		return ports[p.HTTPGet.Port.StrVal]
	}
	return p.HTTPGet.Port.IntVal
}

// goMemLimit reads GOMEMLIMIT as the Go runtime does (a number with an optional B, KiB, MiB,
// GiB or TiB suffix).
func goMemLimit(s string) (int64, bool) {
	m := regexp.MustCompile(`^(\d+)(B|KiB|MiB|GiB|TiB)?$`).FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	shift := map[string]uint{"": 0, "B": 0, "KiB": 10, "MiB": 20, "GiB": 30, "TiB": 40}[m[2]]
	return n << shift, true
}

func envValue(env []string, name string) (string, bool) {
	for _, kv := range env {
		if k, v, _ := strings.Cut(kv, "="); k == name {
			return v, true
		}
	}
	return "", false
}

// checkMemory checks GOMEMLIMIT against the container's memory limit and what the role keeps in
// memory on purpose (floor).
func checkMemory(t *testing.T, w workload, ctr corev1.Container, env []string, floor int64) {
	t.Helper()
	limit := ctr.Resources.Limits.Memory().Value()
	v, ok := envValue(env, "GOMEMLIMIT")
	if !ok {
		t.Errorf("%s: no GOMEMLIMIT: the Go heap would grow to the memory limit and be OOM-killed", w)
		return
	}
	n, ok := goMemLimit(v)
	switch {
	case !ok:
		t.Errorf("%s: GOMEMLIMIT %q is not what the Go runtime reads", w, v)
	case n >= limit || n < limit*3/4:
		t.Errorf("%s: GOMEMLIMIT %s (%d) should sit a little under the memory limit %d", w, v, n, limit)
	case n <= floor:
		t.Errorf("%s: GOMEMLIMIT %d does not leave room above the memory tier's %d bytes", w, n, floor)
	}
}

// roleFacts are what an overlay's roles are configured with, for checks across overlays.
type roleFacts struct {
	regions map[string][]string // each role's list of every region
	urls    map[string]string   // what → a URL the region's roles dial (NATS, S3)
	tls     map[string]roleTLS  // the public listener's TLS of edge and steering
}

// checkRoles loads every role's config as its pods would and checks it against the pods'
// ports, volumes, resources and grace periods.
func checkRoles(t *testing.T, c *cluster, region string) roleFacts {
	t.Helper()
	lists := map[string][]string{}
	urls := map[string]string{}

	// duet edge
	w := c.workload(t, "edge")
	ctr, env, ports := container(t, c, w)
	ecfg := edgeFile{Config: edge.DefaultConfig()}
	loadRole(t, "edge", &ecfg, configFile(t, c, w, ctr), env)
	if err := ecfg.Config.Validate(); err != nil {
		t.Errorf("edge config: %v", err)
	}
	if ecfg.Region != region {
		t.Errorf("edge region %q, want the overlay's %q", ecfg.Region, region)
	}
	listenPort(t, "edge admin_listen", ecfg.AdminListen, ports, "admin")
	if p := probePortNumber(ctr.ReadinessProbe, ports); p != ports["admin"] {
		t.Errorf("edge readiness probe on port %d, but /readyz is on the admin listener %d", p, ports["admin"])
	}
	tlsFacts := map[string]roleTLS{"edge": checkTLS(t, c, w, ctr, "edge", ecfg.Listen, ecfg.TLS, ports)}
	if u, err := url.Parse(ecfg.PublicURL); err != nil || u.Scheme != "https" || cmp.Or(u.Port(), "443") != strconv.Itoa(int(ports["https"])) {
		t.Errorf("edge public_url %q: want https:// on the viewer port %d", ecfg.PublicURL, ports["https"])
	}
	if len(ecfg.NATS.URLs) == 0 {
		t.Errorf("edge has no nats.urls: no purges would reach it")
	}
	lists["edge purge.regions"] = ecfg.Purge.Regions
	// The region's own origin first, then every other region's.
	if ecfg.Origin.Name != region {
		t.Errorf("edge origin.name %q: the first origin should be the region's own, %q", ecfg.Origin.Name, region)
	}
	originRegions := []string{ecfg.Origin.Name}
	urls["edge origin "+ecfg.Origin.Name] = ecfg.Origin.Endpoint
	for _, f := range ecfg.Origin.Fallbacks {
		originRegions = append(originRegions, f.Name)
		urls["edge origin "+f.Name] = f.Endpoint
		if f.AccessKey != "" || f.SecretKey != "" {
			t.Errorf("edge origin %s holds S3 keys in a ConfigMap: leave them to the duet-origin-s3 Secret", f.Name)
		}
	}
	lists["edge origins"] = originRegions
	for i, u := range ecfg.NATS.URLs {
		urls["edge nats "+strconv.Itoa(i)] = u
	}
	// The disk tier lives on a volume whose size limit is above its budget.
	var cache *corev1.Volume
	for _, m := range ctr.VolumeMounts {
		if strings.HasPrefix(filepath.Clean(ecfg.Disk.Dir)+"/", filepath.Clean(m.MountPath)+"/") {
			for i, v := range w.spec.Volumes {
				if v.Name == m.Name {
					cache = &w.spec.Volumes[i]
				}
			}
		}
	}
	switch {
	case cache == nil:
		t.Errorf("edge disk.dir %s is on no volume: the read-only root file system refuses it", ecfg.Disk.Dir)
	case cache.EmptyDir == nil || cache.EmptyDir.SizeLimit == nil:
		t.Errorf("edge cache volume %s: want an emptyDir with a sizeLimit", cache.Name)
	default:
		limit := cache.EmptyDir.SizeLimit.Value()
		if budget := int64(ecfg.Disk.MaxBytes); budget > limit*95/100 {
			t.Errorf("edge disk.max_bytes %d is not under 95%% of the cache volume's sizeLimit %d: the kubelet evicts the pod", budget, limit)
		}
		if es, ok := ctr.Resources.Limits[corev1.ResourceEphemeralStorage]; ok && es.Value() < limit {
			t.Errorf("edge ephemeral-storage limit %s is below the cache volume's %s", es.String(), cache.EmptyDir.SizeLimit.String())
		}
	}
	memLimit := ctr.Resources.Limits.Memory().Value()
	if mem := int64(ecfg.Memory.MaxBytes); mem*3/2 > memLimit {
		t.Errorf("edge memory.max_bytes %d: the memory limit %d needs half as much again (ristretto's resident size runs above its budget)", mem, memLimit)
	}
	checkMemory(t, w, ctr, env, int64(ecfg.Memory.MaxBytes))
	grace := time.Duration(*w.spec.TerminationGracePeriodSeconds) * time.Second
	if need := ecfg.DrainDelay + ecfg.ShutdownTimeout; grace < need+time.Second {
		t.Errorf("edge terminationGracePeriodSeconds %v does not cover drain_delay %v + shutdown_timeout %v", grace, ecfg.DrainDelay, ecfg.ShutdownTimeout)
	}
	if ecfg.DrainDelay < 2*time.Second {
		t.Errorf("edge drain_delay %v: steering needs a couple of seconds to move viewers away", ecfg.DrainDelay)
	}

	// duet steering
	w = c.workload(t, "steering")
	ctr, env, ports = container(t, c, w)
	scfg := steeringFile{Config: steering.DefaultConfig(), TLS: tlsconf.Default()}
	loadRole(t, "steering", &scfg, configFile(t, c, w, ctr), env)
	srv, err := steering.New(scfg.Config, steering.Deps{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Errorf("steering config: %v", err)
	} else {
		_ = srv.Close()
	}
	tlsFacts["steering"] = checkTLS(t, c, w, ctr, "steering", scfg.Listen, scfg.TLS, ports)
	if !edgeURLAllowed(scfg.EdgeURLs, ecfg.PublicURL, ecfg.Name, region) {
		t.Errorf("steering edge_urls %q refuse the edges' public_url %q: steering would ignore every edge", scfg.EdgeURLs, ecfg.PublicURL)
	}
	// The viewer state API writes to the region's own bucket (docs/viewer-state.md).
	if scfg.ViewerState.Region != region {
		t.Errorf("steering viewer_state.region %q, want the overlay's %q (empty: the viewer state API is off)", scfg.ViewerState.Region, region)
	}
	if len(scfg.NATS.URLs) == 0 {
		t.Errorf("steering has no nats.urls")
	}
	for i, u := range scfg.NATS.URLs {
		urls["steering nats "+strconv.Itoa(i)] = u
	}
	for _, r := range scfg.Regions {
		lists["steering regions"] = append(lists["steering regions"], r.Name)
	}
	checkMemory(t, w, ctr, env, 0)

	// duet purge serve
	w = c.workload(t, "purge")
	ctr, env, ports = container(t, c, w)
	pcfg := purgeFile{ServiceConfig: purge.DefaultServiceConfig()}
	loadRole(t, "purge", &pcfg, configFile(t, c, w, ctr), env)
	if err := pcfg.Validate(); err != nil {
		t.Errorf("purge config: %v", err)
	}
	if pcfg.Region != region {
		t.Errorf("purge region %q, want %q", pcfg.Region, region)
	}
	listenPort(t, "purge listen", pcfg.Listen, ports, "http")
	if grace := time.Duration(*w.spec.TerminationGracePeriodSeconds) * time.Second; grace <= pcfg.MaxWait {
		t.Errorf("purge terminationGracePeriodSeconds %v: a purge waiting max_wait %v would be cut", grace, pcfg.MaxWait)
	}
	lists["purge regions"] = pcfg.Regions
	for i, u := range pcfg.NATS.URLs {
		urls["purge nats "+strconv.Itoa(i)] = u
	}
	checkMemory(t, w, ctr, env, 0)

	// duet replicate
	w = c.workload(t, "replicate")
	ctr, env, ports = container(t, c, w)
	rcfg := replicateFile{Config: replicate.DefaultConfig()}
	loadRole(t, "replicate", &rcfg, configFile(t, c, w, ctr), env)
	if err := rcfg.Validate(); err != nil {
		t.Errorf("replicate config: %v", err)
	}
	if rcfg.Region != region {
		t.Errorf("replicate region %q, want %q", rcfg.Region, region)
	}
	listenPort(t, "replicate admin", rcfg.Admin, ports, "admin")
	if len(rcfg.NATS.URLs) == 0 {
		t.Errorf("replicate has no nats.urls")
	}
	for i, u := range rcfg.NATS.URLs {
		urls["replicate nats "+strconv.Itoa(i)] = u
	}
	for _, r := range rcfg.Regions {
		lists["replicate regions"] = append(lists["replicate regions"], r.Name)
		urls["replicate bucket "+r.Name] = r.Endpoint
		if !strings.HasPrefix(r.AccessKey, "made-up-") || !strings.HasPrefix(r.SecretKey, "made-up-") {
			t.Errorf("replicate region %s: the S3 keys must come from the duet-replicate-s3 Secret, not from the manifests", r.Name)
		}
	}
	if w.deploy.Spec.Strategy.Type != "Recreate" || w.replicas == nil || *w.replicas != 1 {
		t.Errorf("replicate: want exactly one replica with the Recreate strategy, never two at once")
	}
	checkMemory(t, w, ctr, env, 0)

	// Every role knows the same regions, this one among them.
	for name, l := range lists {
		if !slices.Contains(l, region) {
			t.Errorf("%s %v does not list the overlay's region %q", name, l, region)
		}
		if want := lists["purge regions"]; !sameSet(l, want) {
			t.Errorf("%s %v differ from purge regions %v: every role must know the same regions", name, l, want)
		}
	}
	return roleFacts{regions: lists, urls: urls, tls: tlsFacts}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}
