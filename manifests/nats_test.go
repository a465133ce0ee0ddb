package manifests

import (
	"crypto/tls"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/bcrypt"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/duetcdn/duet/internal/bus"
)

// duetRoles are the Duet roles that connect to NATS, by their component label.
var duetRoles = []string{"edge", "steering", "purge", "replicate"}

// secretVolumeFile returns the Secret and key a container reads at file (a Secret volume mounted
// at the file's directory), or "" when none is.
func secretVolumeFile(w workload, ctr corev1.Container, file string) (secret, key string) {
	dir, name := path.Split(file)
	for _, m := range ctr.VolumeMounts {
		if strings.TrimSuffix(m.MountPath, "/") != strings.TrimSuffix(dir, "/") {
			continue
		}
		for _, v := range w.spec.Volumes {
			if v.Name == m.Name && v.Secret != nil {
				return v.Secret.SecretName, name
			}
		}
	}
	return "", ""
}

// TestNATSClientsHaveIdentities: every container that talks to NATS (a Duet role with NATS URLs,
// MinIO's notification target) carries credentials from a Secret: a role its nkey seed, mounted
// from duet-nats-<role>; MinIO a user and a password.
func TestNATSClientsHaveIdentities(t *testing.T) {
	for _, dir := range append(overlays(t), "demo") {
		c := build(t, dir)
		for _, w := range c.workloads {
			for _, ctr := range w.spec.Containers {
				env, err := containerEnv(c, w, ctr)
				if err != nil {
					t.Fatalf("%s: %v", w, err)
				}
				for _, kv := range env {
					name, _, _ := strings.Cut(kv, "=")
					switch {
					case strings.HasPrefix(name, "DUET_") && strings.HasSuffix(name, "_NATS_URLS"):
						prefix := strings.TrimSuffix(name, "URLS")
						file, ok := envValue(env, prefix+"NKEY_FILE")
						if !ok || file == "" {
							t.Errorf("%s: connects to NATS (%s) without an identity (%sNKEY_FILE)", w, name, prefix)
							continue
						}
						secret, k := secretVolumeFile(w, ctr, file)
						if want := "duet-nats-" + w.component(); secret != want {
							t.Errorf("%s: NATS nkey file %s is not from the Secret %s", w, file, want)
							continue
						}
						checkSecretRef(t, c, w, secret, k, nil)
					case strings.HasPrefix(name, "MINIO_NOTIFY_NATS_ADDRESS_"):
						id := strings.TrimPrefix(name, "MINIO_NOTIFY_NATS_ADDRESS_")
						user, _ := envValue(env, "MINIO_NOTIFY_NATS_USERNAME_"+id)
						if user == "" || !slices.ContainsFunc(ctr.Env, func(e corev1.EnvVar) bool {
							return e.Name == "MINIO_NOTIFY_NATS_PASSWORD_"+id && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
						}) {
							t.Errorf("%s: MinIO's NATS target %s has no user, or no password from a Secret", w, id)
						}
					}
				}
			}
		}
	}
}

// TestEdgeAdminNeedsToken: the edge's admin listener binds every interface (the kubelet and
// Prometheus reach it), so its /purge and /debug/pprof take a bearer token, read from the Secret
// duet-edge-admin; an edge without one would answer 401 to every purge, one with a token in a
// ConfigMap would hand it to anyone who can read the namespace's ConfigMaps.
func TestEdgeAdminNeedsToken(t *testing.T) {
	for _, dir := range overlays(t) {
		c := build(t, dir)
		edges := 0
		for _, w := range c.workloads {
			if w.component() != "edge" {
				continue
			}
			for _, ctr := range w.spec.Containers {
				edges++
				env, err := containerEnv(c, w, ctr)
				if err != nil {
					t.Fatalf("%s: %v", w, err)
				}
				if v, ok := envValue(env, "DUET_EDGE_ADMIN_TOKEN"); ok && v != "" {
					t.Errorf("%s: the admin token is in the environment's plain text", w)
				}
				file, ok := envValue(env, "DUET_EDGE_ADMIN_TOKEN_FILE")
				if !ok || file == "" {
					t.Errorf("%s: the admin listener has no token (DUET_EDGE_ADMIN_TOKEN_FILE)", w)
					continue
				}
				secret, k := secretVolumeFile(w, ctr, file)
				if secret != "duet-edge-admin" {
					t.Errorf("%s: admin token file %s is not from the Secret duet-edge-admin", w, file)
					continue
				}
				checkSecretRef(t, c, w, secret, k, nil)
			}
		}
		if edges == 0 {
			t.Errorf("%s: no edge container", dir)
		}
	}
}

// TestDemoNATSAuthorization: each demo region's NATS admits exactly the identities in the demo
// Secrets, each with the permissions bus.Identity gives its role (what `duet dev`'s embedded
// servers enforce), listens on 0.0.0.0 only with authorization, and links the regions over
// mutual TLS with the certificate's subject as the leafnode's identity.
func TestDemoNATSAuthorization(t *testing.T) {
	c := build(t, "demo")
	for _, r := range []string{"eu-west", "us-east"} {
		ns := "duet-" + r
		t.Run(r, func(t *testing.T) {
			opts := checkDemoNATS(t, c, ns, r)
			if opts == nil {
				t.FailNow()
			}
			if opts.NoAuthUser != "" || opts.Username != "" || opts.Authorization != "" {
				t.Errorf("a user without credentials, a global user or a token is configured: only identities should be")
			}
			if len(opts.Nkeys)+len(opts.Users) == 0 {
				t.Fatalf("NATS listens on %s:%d without authorization", opts.Host, opts.Port)
			}
			perms := func(p *server.Permissions) bus.Permissions {
				var got bus.Permissions
				if p != nil && p.Publish != nil {
					got.Publish = p.Publish.Allow
					if len(p.Publish.Deny) > 0 {
						t.Errorf("unexpected deny list %v", p.Publish.Deny)
					}
				}
				if p != nil && p.Subscribe != nil {
					got.Subscribe = p.Subscribe.Allow
				}
				return got
			}
			same := func(a, b bus.Permissions) bool {
				return slices.Equal(a.Publish, b.Publish) && slices.Equal(a.Subscribe, b.Subscribe)
			}
			for _, role := range duetRoles {
				s := c.secrets[key(ns, "duet-nats-"+role)]
				if s == nil {
					t.Errorf("no Secret duet-nats-%s", role)
					continue
				}
				kp, err := nkeys.FromSeed(s.Data["seed"])
				if err != nil {
					t.Errorf("duet-nats-%s: seed: %v", role, err)
					continue
				}
				pub, _ := kp.PublicKey()
				i := slices.IndexFunc(opts.Nkeys, func(u *server.NkeyUser) bool { return u.Nkey == pub })
				if i < 0 {
					t.Errorf("NATS does not know the %s's nkey %s", role, pub)
					continue
				}
				want := bus.Identity{Role: bus.Role(role), Region: r, NKey: pub}.Permissions()
				if got := perms(opts.Nkeys[i].Permissions); !same(got, want) {
					t.Errorf("the %s may %+v, want %+v (bus.RenderAuthorization)", role, got, want)
				}
			}
			if len(opts.Nkeys) != len(duetRoles) {
				t.Errorf("NATS knows %d nkeys, want the %d roles'", len(opts.Nkeys), len(duetRoles))
			}
			// MinIO: a password user that may only publish the region's origin events.
			pass := c.secrets[key(ns, "minio-nats")]
			if pass == nil || len(opts.Users) != 1 {
				t.Fatalf("want one password user (MinIO) and its Secret minio-nats; have %d users", len(opts.Users))
			}
			u := opts.Users[0]
			if err := bcrypt.CompareHashAndPassword([]byte(u.Password), pass.Data["password"]); err != nil {
				t.Errorf("MinIO's NATS password (Secret minio-nats) does not match nats.conf's bcrypt hash: %v", err)
			}
			want := bus.Identity{Role: bus.RoleOrigin, Region: r, User: u.Username, Password: "x"}.Permissions()
			if got := perms(u.Permissions); !same(got, want) {
				t.Errorf("MinIO may %+v, want %+v", got, want)
			}
			// The leafnode link: mutual TLS both ways, the listener mapping certificates to users.
			if opts.LeafNode.Port != 0 {
				tc := opts.LeafNode.TLSConfig
				if tc == nil || tc.ClientAuth != tls.RequireAndVerifyClientCert || !opts.LeafNode.TLSMap || len(opts.LeafNode.Users) == 0 {
					t.Errorf("the leafnode listener %s:%d does not require a verified client certificate mapped to a user",
						opts.LeafNode.Host, opts.LeafNode.Port)
				}
			}
			for _, rem := range opts.LeafNode.Remotes {
				if rem.TLSConfig == nil || len(rem.TLSConfig.Certificates) == 0 || rem.TLSConfig.RootCAs == nil {
					t.Errorf("leafnode remote %v: no TLS with a client certificate and the CA", rem.URLs)
				}
			}
		})
	}
}

// portClass is who may reach a container port.
type portClass int

const (
	anyone     portClass = iota
	promOnly             // admin and monitoring ports
	natsClient           // the Duet roles and MinIO
	natsLeaf             // the other regions' NATS
)

// classify says who may reach a port of a workload.
func classify(w workload, p corev1.ContainerPort) portClass {
	switch {
	case w.labels["app.kubernetes.io/name"] == "nats" && p.Name == "client":
		return natsClient
	case w.labels["app.kubernetes.io/name"] == "nats" && p.Name == "leafnodes":
		return natsLeaf
	case w.labels["app.kubernetes.io/name"] == "nats" && p.Name == "monitor", p.Name == "admin":
		return promOnly
	}
	return anyone
}

// peerAdmits reports whether a NetworkPolicy peer lets in only pods of the class.
func peerAdmits(t *testing.T, peer networkingv1.NetworkPolicyPeer, class portClass) bool {
	t.Helper()
	if peer.IPBlock != nil || peer.PodSelector == nil {
		return false
	}
	sel, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
	if err != nil {
		t.Errorf("pod selector %v: %v", peer.PodSelector, err)
		return false
	}
	stranger := labels.Set{"app.kubernetes.io/name": "stranger"}
	if sel.Matches(stranger) || sel.Empty() {
		return false
	}
	switch class {
	case promOnly:
		return sel.Matches(labels.Set{"app.kubernetes.io/name": "prometheus"}) &&
			!sel.Matches(labels.Set{"app.kubernetes.io/name": "duet", "app.kubernetes.io/component": "edge"})
	case natsClient:
		if peer.NamespaceSelector != nil {
			return false // the region's own namespace only
		}
		ok := sel.Matches(labels.Set{"app.kubernetes.io/name": "minio"})
		for _, r := range duetRoles {
			ok = ok || sel.Matches(labels.Set{"app.kubernetes.io/name": "duet", "app.kubernetes.io/component": r})
		}
		return ok && !sel.Matches(labels.Set{"app.kubernetes.io/name": "duet", "app.kubernetes.io/component": "loadtest"})
	case natsLeaf:
		return sel.Matches(labels.Set{"app.kubernetes.io/name": "nats"})
	}
	return true
}

// TestNetworkPolicies: every Duet role's and NATS's pod is under an ingress NetworkPolicy, and
// the rules that open a port open it only to whom it is for: admin and monitoring ports to
// Prometheus, NATS's client port to the Duet roles and MinIO, its leafnode port to the other
// regions' NATS. (Those ports listen on every interface; NATS's client and leafnode listeners also
// authenticate, TestDemoNATSAuthorization.)
func TestNetworkPolicies(t *testing.T) {
	for _, dir := range append(overlays(t), "demo") {
		c := build(t, dir)
		for _, w := range c.workloads {
			name, comp := w.labels["app.kubernetes.io/name"], w.component()
			if name != "nats" && !(name == "duet" && slices.Contains(duetRoles, comp)) {
				continue
			}
			var rules []networkingv1.NetworkPolicyIngressRule
			for _, p := range c.policies {
				sel, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
				if err != nil {
					t.Fatalf("%s: NetworkPolicy %s: %v", dir, p.Name, err)
				}
				if p.Namespace == w.namespace && sel.Matches(labels.Set(w.labels)) && slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
					rules = append(rules, p.Spec.Ingress...)
				}
			}
			if rules == nil {
				t.Errorf("%s: %s: no NetworkPolicy limits who reaches it", dir, w)
				continue
			}
			for _, ctr := range w.spec.Containers {
				for _, port := range ctr.Ports {
					class := classify(w, port)
					for _, rule := range rules {
						opens := len(rule.Ports) == 0 || slices.ContainsFunc(rule.Ports, func(np networkingv1.NetworkPolicyPort) bool {
							return np.Port == nil || np.Port.StrVal == port.Name || np.Port.IntVal == port.ContainerPort
						})
						if !opens || class == anyone {
							continue
						}
						if len(rule.From) == 0 {
							t.Errorf("%s: %s: port %s (%d) is open to everyone", dir, w, port.Name, port.ContainerPort)
						}
						for _, peer := range rule.From {
							if !peerAdmits(t, peer, class) {
								t.Errorf("%s: %s: port %s (%d) is open to %+v, beyond whom it is for", dir, w, port.Name,
									port.ContainerPort, peer)
							}
						}
					}
					if class != anyone && !slices.ContainsFunc(rules, func(r networkingv1.NetworkPolicyIngressRule) bool {
						return len(r.From) > 0 && slices.ContainsFunc(r.Ports, func(np networkingv1.NetworkPolicyPort) bool {
							return np.Port != nil && (np.Port.StrVal == port.Name || np.Port.IntVal == port.ContainerPort)
						})
					}) {
						t.Errorf("%s: %s: port %s (%d) is open to no one: the NetworkPolicy should name it for %s", dir, w,
							port.Name, port.ContainerPort, strconv.Itoa(int(class)))
					}
				}
			}
		}
	}
}
