package manifests

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/duetcdn/duet/internal/image"
	"github.com/duetcdn/duet/internal/tlsconf"
)

// tlsSecrets are the operators' Secrets of type kubernetes.io/tls (README.md, "Certificates").
var tlsSecrets = []string{"duet-edge-tls", "duet-steering-tls"}

// roleTLS is how a role's public listener gets its certificate.
type roleTLS struct {
	cfg  tlsconf.Config
	acme bool              // from ACME, on a shared claim
	dirs map[string]string // certificate directory (a mount) → the Secret mounted there
}

// checkTLS checks a role's public listener (edge viewers, steering): HTTPS on the container
// port "https", a redirect listener on "http", HSTS; certificate files from a whole, read-only
// kubernetes.io/tls Secret volume, or ACME with its storage on a claim every pod shares; probes
// that speak TLS to the TLS listener and plain HTTP elsewhere, and never target the redirect
// listener; a Service with 443 and 80; a NetworkPolicy that lets viewers in on both.
func checkTLS(t *testing.T, c *cluster, w workload, ctr corev1.Container, role, listen string, cfg tlsconf.Config,
	ports map[string]int32,
) roleTLS {
	t.Helper()
	out := roleTLS{cfg: cfg, dirs: map[string]string{}}
	if !cfg.Enabled() {
		t.Errorf("%s serves plain HTTP: set tls.certificates (a Secret) or tls.acme.domains", role)
		return out
	}
	if err := cfg.Validate("tls"); err != nil {
		t.Errorf("%s: %v", role, err)
	}
	listenPort(t, role+" listen", listen, ports, "https")
	if cfg.RedirectListen == "" {
		t.Errorf("%s: no tls.redirect_listen: plain http:// links get no answer instead of a redirect", role)
	} else {
		listenPort(t, role+" tls.redirect_listen", cfg.RedirectListen, ports, "http")
	}
	if cfg.HSTS == "" {
		t.Errorf("%s: tls.hsts is not set: browsers would go on trying plain HTTP first", role)
	}

	mountOf := func(file string) (corev1.VolumeMount, corev1.Volume, bool) {
		for _, m := range ctr.VolumeMounts {
			if strings.HasPrefix(filepath.Clean(file), filepath.Clean(m.MountPath)+"/") {
				for _, v := range w.spec.Volumes {
					if v.Name == m.Name {
						return m, v, true
					}
				}
			}
		}
		return corev1.VolumeMount{}, corev1.Volume{}, false
	}
	for _, pair := range cfg.Certificates {
		for _, file := range []string{pair.Cert, pair.Key} {
			m, v, ok := mountOf(file)
			switch {
			case !ok:
				t.Errorf("%s: certificate file %s is on no volume", role, file)
				continue
			case v.Secret == nil:
				t.Errorf("%s: certificate file %s is on volume %s, which is not a Secret: keys belong in Secrets only", role, file, v.Name)
				continue
			case m.SubPath != "" || m.SubPathExpr != "":
				t.Errorf("%s: volume %s is mounted with a subPath: the kubelet never updates it, so a renewed Secret would not reach the pod", role, m.Name)
			case !m.ReadOnly:
				t.Errorf("%s: volume %s holding the TLS key is not mounted readOnly", role, m.Name)
			}
			rel, _ := filepath.Rel(filepath.Clean(m.MountPath), filepath.Clean(file))
			k := rel
			for _, it := range v.Secret.Items {
				if it.Path == rel {
					k = it.Key
				}
			}
			out.dirs[filepath.Clean(m.MountPath)] = v.Secret.SecretName
			name := v.Secret.SecretName
			if s := c.secrets[key(w.namespace, name)]; s != nil {
				if s.Type != corev1.SecretTypeTLS {
					t.Errorf("%s: Secret %s is of type %q, want %s", role, name, s.Type, corev1.SecretTypeTLS)
				}
				if _, ok := s.Data[k]; !ok {
					t.Errorf("%s: %s is key %q of Secret %s, which has no such key", role, file, k, name)
				}
			} else if !slices.Contains(tlsSecrets, name) || !slices.Contains(operatorSecrets[name], k) {
				t.Errorf("%s: %s is key %q of Secret %s, which is not a TLS Secret README.md tells the operators to create (%v)",
					role, file, k, name, tlsSecrets)
			}
		}
	}
	if len(cfg.ACME.Domains) > 0 {
		out.acme = true
		m, v, ok := mountOf(filepath.Join(cfg.ACME.Storage, "x"))
		switch {
		case !ok:
			t.Errorf("%s: tls.acme.storage %s is on no volume: the read-only root refuses it, and the region's pods would not share it", role, cfg.ACME.Storage)
		case v.PersistentVolumeClaim == nil:
			t.Errorf("%s: tls.acme.storage %s is on volume %s, which is not a claim the region's pods share: each would ask the CA", role, cfg.ACME.Storage, v.Name)
		case m.ReadOnly:
			t.Errorf("%s: tls.acme.storage %s is mounted readOnly: no certificate could be stored", role, cfg.ACME.Storage)
		default:
			pvc := c.claims[key(w.namespace, v.PersistentVolumeClaim.ClaimName)]
			if pvc == nil {
				t.Errorf("%s: claim %s is not built", role, v.PersistentVolumeClaim.ClaimName)
			} else if !slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteMany) {
				t.Errorf("%s: claim %s is not ReadWriteMany: the region's pods run on several nodes", role, pvc.Name)
			}
		}
	}

	// Probes: HTTPS to the TLS listener, plain HTTP to the others; the redirect listener answers
	// 308 to everything, which the kubelet counts as success, so a probe there proves nothing.
	for kind, p := range map[string]*corev1.Probe{"readiness": ctr.ReadinessProbe, "liveness": ctr.LivenessProbe, "startup": ctr.StartupProbe} {
		if p == nil || p.HTTPGet == nil {
			continue
		}
		n := probePortNumber(p, ports)
		scheme := p.HTTPGet.Scheme
		if scheme == "" {
			scheme = corev1.URISchemeHTTP
		}
		switch {
		case n == ports["https"] && scheme != corev1.URISchemeHTTPS:
			t.Errorf("%s %s probe: port %d speaks TLS, but the probe's scheme is %s", role, kind, n, scheme)
		case n != ports["https"] && scheme != corev1.URISchemeHTTP:
			t.Errorf("%s %s probe: port %d speaks plain HTTP, but the probe's scheme is %s", role, kind, n, scheme)
		case n == ports["http"]:
			t.Errorf("%s %s probe on the redirect listener (port %d): every answer is a redirect, which the kubelet counts as success", role, kind, n)
		}
	}
	// Prometheus scrapes by the pod's annotations: the scheme must be the metrics port's.
	if w.deploy != nil {
		a := w.deploy.Spec.Template.Annotations
		port, _ := strconv.Atoi(a["prometheus.io/port"])
		wantScheme := "http"
		if int32(port) == ports["https"] {
			wantScheme = "https"
		}
		if got := a["prometheus.io/scheme"]; got != wantScheme && !(got == "" && wantScheme == "http") {
			t.Errorf("%s: prometheus.io/scheme %q, but /metrics on port %d speaks %s", role, got, port, wantScheme)
		}
	}

	// The Service: 443 to the TLS listener, 80 to the redirect.
	svcPorts := map[int32]string{}
	for _, o := range c.objects {
		svc, ok := o.obj.(*corev1.Service)
		if !ok || svc.Namespace != w.namespace || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(w.labels)) {
			continue
		}
		for _, p := range svc.Spec.Ports {
			svcPorts[p.Port] = targetName(p.TargetPort, ctr)
		}
	}
	if svcPorts[443] != "https" || svcPorts[80] != "http" {
		t.Errorf("%s Service ports %v: want 443 → https and 80 → http (the redirect)", role, svcPorts)
	}
	// The redirect sends http://host/x to https://host:<listen port>/x (the port left out when
	// 443): the listener must be on 443 itself, or a viewer who came through the Service's 80 is
	// sent to a port the Service does not have.
	if ports["https"] != 443 || ports["http"] != 80 {
		t.Errorf("%s listens on %d (TLS) and %d (redirect): want 443 and 80, the Service's, since the redirect names the TLS listener's own port",
			role, ports["https"], ports["http"])
	}
	// Binding them as a non-root user with no capability takes the unprivileged port sysctl.
	unprivileged := 1024
	if sc := w.spec.SecurityContext; sc != nil {
		for _, sy := range sc.Sysctls {
			if sy.Name == "net.ipv4.ip_unprivileged_port_start" {
				unprivileged, _ = strconv.Atoi(sy.Value)
			}
		}
	}
	canBind := ctr.SecurityContext != nil && ctr.SecurityContext.Capabilities != nil &&
		slices.Contains(ctr.SecurityContext.Capabilities.Add, "NET_BIND_SERVICE")
	for name, p := range map[string]int32{"https": ports["https"], "http": ports["http"]} {
		if int(p) < unprivileged && !canBind {
			t.Errorf("%s: port %s (%d) is privileged for user %d: set the pod sysctl net.ipv4.ip_unprivileged_port_start to %d or less",
				role, name, p, image.UID, p)
		}
	}
	// The NetworkPolicy lets anyone reach both.
	open := map[string]bool{}
	for _, np := range c.policies {
		sel := labels.SelectorFromSet(np.Spec.PodSelector.MatchLabels)
		if np.Namespace != w.namespace || !sel.Matches(labels.Set(w.labels)) {
			continue
		}
		for _, r := range np.Spec.Ingress {
			if len(r.From) > 0 {
				continue
			}
			for _, p := range r.Ports {
				if p.Port != nil {
					open[targetName(*p.Port, ctr)] = true
				}
			}
		}
	}
	if !open["https"] || !open["http"] {
		t.Errorf("%s: the NetworkPolicies let viewers reach %v, want https and http", role, open)
	}
	return out
}

// targetName is the name of the container port a Service or policy port refers to.
func targetName(p intstr.IntOrString, ctr corev1.Container) string {
	if p.StrVal != "" {
		return p.StrVal
	}
	for _, cp := range ctr.Ports {
		if cp.ContainerPort == p.IntVal {
			return cp.Name
		}
	}
	return strconv.Itoa(int(p.IntVal))
}

// edgeURLAllowed reports whether one of steering's edge_urls patterns accepts url for edge of
// region, as steering reads them (steering/edgeurl.go): the scheme, the port (or the scheme's),
// and the host label by label, "*" within a label.
func edgeURLAllowed(patterns []string, raw, edge, region string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	port := func(scheme, p string) string {
		if p != "" {
			return p
		}
		if scheme == "https" {
			return "443"
		}
		return "80"
	}
	for _, pat := range patterns {
		scheme, rest, _ := strings.Cut(pat, "://")
		host, p, err := net.SplitHostPort(rest)
		if err != nil {
			host, p = rest, ""
		}
		host = strings.NewReplacer("{edge}", edge, "{region}", region).Replace(host)
		if scheme != u.Scheme || port(scheme, p) != port(u.Scheme, u.Port()) {
			continue
		}
		hl, ul := strings.Split(host, "."), strings.Split(u.Hostname(), ".")
		if len(hl) != len(ul) {
			continue
		}
		ok := true
		for i := range hl {
			if m, _ := path.Match(hl[i], ul[i]); !m {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// checkNoKeysInConfigMaps: a private key in a ConfigMap is readable by anyone who may read
// ConfigMaps; keys belong in Secrets.
func checkNoKeysInConfigMaps(t *testing.T, c *cluster) {
	t.Helper()
	for _, cm := range c.configMaps {
		for k, v := range cm.Data {
			if strings.Contains(v, "PRIVATE KEY-----") {
				t.Errorf("%s: ConfigMap %s/%s key %q holds a private key: put it in a Secret", c.dir, cm.Namespace, cm.Name, k)
			}
		}
	}
}

// checkDemoCertificates loads each role's certificate files as the role would, from the demo's
// Secrets mounted where the overlay mounts them: the demo's certificate and key parse, belong
// together, and name the region's Services.
func checkDemoCertificates(t *testing.T, demo *cluster, ns, region string, facts map[string]roleTLS) {
	t.Helper()
	for role, rt := range facts {
		if rt.acme || len(rt.cfg.Certificates) == 0 {
			continue
		}
		dir := t.TempDir()
		cfg := rt.cfg
		cfg.Certificates = nil
		moved := func(file string) string {
			for mount, secret := range rt.dirs {
				if rel, err := filepath.Rel(mount, filepath.Clean(file)); err == nil && !strings.HasPrefix(rel, "..") {
					s := demo.secrets[key(ns, secret)]
					if s == nil {
						t.Errorf("the demo builds no Secret %s in %s for %s", secret, ns, role)
						return file
					}
					out := filepath.Join(dir, secret, rel)
					if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(out, s.Data[rel], 0o600); err != nil {
						t.Fatal(err)
					}
					return out
				}
			}
			return file
		}
		for _, p := range rt.cfg.Certificates {
			cfg.Certificates = append(cfg.Certificates, tlsconf.CertKey{Cert: moved(p.Cert), Key: moved(p.Key)})
		}
		if _, err := tlsconf.New(cfg, nil, nil); err != nil {
			t.Errorf("%s %s with the demo's certificate: %v", region, role, err)
			continue
		}
		b, _ := os.ReadFile(cfg.Certificates[0].Cert)
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Errorf("%s %s: the demo certificate is not PEM", region, role)
			continue
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Errorf("%s %s: %v", region, role, err)
			continue
		}
		svc := fmt.Sprintf("duet-%s.%s.svc", role, ns)
		if err := cert.VerifyHostname(svc); err != nil {
			t.Errorf("%s %s: the demo certificate does not name the Service: %v", region, role, err)
		}
	}
}

// TestACMEComponent adds components/acme to a copy of every overlay, as README.md tells the
// operators to, and checks that edges and steering then take certificates from ACME (and no
// longer from the Secrets) with their storage on one ReadWriteMany claim, and that the CA can
// reach the challenges: TLS-ALPN-01 on the Services' 443, HTTP-01 on their 80.
func TestACMEComponent(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"base", "overlays", "components"} {
		if err := os.CopyFS(filepath.Join(root, d), os.DirFS(d)); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range overlays(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			k := filepath.Join(root, dir, "kustomization.yaml")
			b, err := os.ReadFile(k)
			if err != nil {
				t.Fatal(err)
			}
			b = append(b, "\ncomponents:\n  - ../../components/acme\n"...)
			if err := os.WriteFile(k, b, 0o600); err != nil {
				t.Fatal(err)
			}
			c := build(t, filepath.Join(root, dir))
			region, _ := c.region(t)
			checkWorkloads(t, c, false)
			checkServices(t, c)
			facts := checkRoles(t, c, region)
			claims := map[string]bool{}
			for role, rt := range facts.tls {
				if !rt.acme || len(rt.cfg.Certificates) > 0 {
					t.Errorf("%s: certificates %v, ACME domains %v: want ACME alone", role, rt.cfg.Certificates, rt.cfg.ACME.Domains)
				}
				if !slices.Contains(rt.cfg.Challenges(), tlsconf.ChallengeTLSALPN) || !slices.Contains(rt.cfg.Challenges(), tlsconf.ChallengeHTTP) {
					t.Errorf("%s: challenges %v, want both (the Services' 443 and 80 reach them)", role, rt.cfg.Challenges())
				}
				for _, d := range rt.cfg.ACME.Domains {
					if !strings.Contains(d, region) {
						t.Errorf("%s: ACME domain %q does not name the region %s", role, d, region)
					}
				}
				claims[rt.cfg.ACME.Storage] = true
			}
			if len(claims) != 1 {
				t.Errorf("edges and steering keep ACME state in %v, want one shared directory", sortedKeys(claims))
			}
			for _, w := range c.workloads {
				for _, v := range w.spec.Volumes {
					if v.Secret != nil && slices.Contains(tlsSecrets, v.Secret.SecretName) {
						t.Errorf("%s still mounts Secret %s: with ACME the operators no longer create it", w, v.Secret.SecretName)
					}
				}
			}
		})
	}
}
