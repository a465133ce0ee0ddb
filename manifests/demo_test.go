package manifests

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	corev1 "k8s.io/api/core/v1"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/minioproc"
)

// resolve checks that a URL's host is a Service of this build ("svc.ns.svc[.cluster.local]")
// with the URL's port.
func (c *cluster) resolve(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("not a URL")
	}
	name, rest, _ := strings.Cut(u.Hostname(), ".")
	ns, rest, _ := strings.Cut(rest, ".")
	if rest != "svc" && rest != "svc.cluster.local" {
		return fmt.Errorf("host %s is not <service>.<namespace>.svc", u.Hostname())
	}
	port, _ := strconv.Atoi(u.Port())
	for _, o := range c.objects {
		svc, ok := o.obj.(*corev1.Service)
		if !ok || svc.Name != name || svc.Namespace != ns {
			continue
		}
		for _, p := range svc.Spec.Ports {
			if int(p.Port) == port {
				return nil
			}
		}
		return fmt.Errorf("Service %s/%s has no port %d", ns, name, port)
	}
	return fmt.Errorf("%s builds no Service %s in namespace %s", c.dir, name, ns)
}

// byPrefix finds a generated ConfigMap (its name carries a hash suffix) in a namespace.
func (c *cluster) byPrefix(ns, prefix string) *corev1.ConfigMap {
	for _, cm := range c.configMaps {
		if cm.Namespace == ns && (cm.Name == prefix || strings.HasPrefix(cm.Name, prefix+"-")) {
			return cm
		}
	}
	return nil
}

// TestDemo builds the demo backbone and checks that each region's NATS and MinIO are what Duet
// expects: NATS configurations the real server accepts, with the region's JetStream domain and
// leafnode links forming a tree; MinIO publishing to the region's origin subject; and the
// Secrets the overlays need.
func TestDemo(t *testing.T) {
	c := build(t, "demo")
	checkWorkloads(t, c, true)
	checkServices(t, c)
	checkNoKeysInConfigMaps(t, c)

	type natsRegion struct {
		region, ns string
		opts       *server.Options
	}
	var regions []natsRegion
	for _, cm := range c.configMaps {
		if !strings.HasPrefix(cm.Name, "demo-region") {
			continue
		}
		region, ns := cm.Data["REGION"], cm.Namespace
		t.Run(region, func(t *testing.T) {
			if ns != "duet-"+region {
				t.Errorf("region %s is in namespace %s; the overlays expect duet-%s", region, ns, region)
			}
			for name, keys := range operatorSecrets {
				s := c.secrets[key(ns, name)]
				if s == nil {
					t.Errorf("the demo does not create Secret %s in %s, which the overlays need", name, ns)
					continue
				}
				for _, k := range keys {
					if _, ok := s.Data[k]; !ok {
						t.Errorf("demo Secret %s/%s has no key %q", ns, name, k)
					}
				}
			}
			opts := checkDemoNATS(t, c, ns, region)
			regions = append(regions, natsRegion{region, ns, opts})
			checkDemoMinIO(t, c, ns, region)
		})
	}
	if len(regions) < 2 {
		t.Fatalf("the demo has %d regions, want the overlays' two", len(regions))
	}
	// Leafnode links: exactly one hub with a listener; every other region dials it (a tree).
	var hubs []natsRegion
	for _, r := range regions {
		if r.opts != nil && r.opts.LeafNode.Port != 0 {
			hubs = append(hubs, r)
		}
	}
	if len(hubs) != 1 {
		t.Fatalf("%d regions listen for leafnodes, want one hub", len(hubs))
	}
	hub := hubs[0]
	for _, r := range regions {
		if r.opts == nil || r.region == hub.region {
			continue
		}
		if len(r.opts.LeafNode.Remotes) != 1 {
			t.Errorf("%s has %d leafnode remotes, want one (to the hub %s): links must form a tree", r.region, len(r.opts.LeafNode.Remotes), hub.region)
			continue
		}
		for _, u := range r.opts.LeafNode.Remotes[0].URLs {
			want := fmt.Sprintf("nats.%s.svc", hub.ns)
			if !strings.HasPrefix(u.Host, want+":") || u.Port() != strconv.Itoa(hub.opts.LeafNode.Port) {
				t.Errorf("%s dials %s, want the hub's leafnode listener %s:%d", r.region, u.Host, want, hub.opts.LeafNode.Port)
			}
			if err := c.resolve("nats://" + u.Host); err != nil {
				t.Errorf("%s leafnode remote %s: %v", r.region, u, err)
			}
		}
	}
}

// checkDemoNATS parses a region's nats.conf with the NATS server's own parser.
func checkDemoNATS(t *testing.T, c *cluster, ns, region string) *server.Options {
	t.Helper()
	cm := c.byPrefix(ns, "nats-config")
	if cm == nil {
		t.Errorf("no nats-config ConfigMap in %s", ns)
		return nil
	}
	// The leafnode TLS files come from the Secret nats-leaf-tls, mounted at /etc/nats-tls.
	dir := t.TempDir()
	if s := c.secrets[key(ns, "nats-leaf-tls")]; s != nil {
		for name, b := range s.Data {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	path := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(cm.Data["nats.conf"], "/etc/nats-tls/", dir+"/")), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Errorf("%s nats.conf: %v", region, err)
		return nil
	}
	if !opts.JetStream || opts.JetStreamDomain != region {
		t.Errorf("%s NATS: JetStream %v in domain %q, want JetStream in domain %q (Duet addresses $JS.<region>.API)",
			region, opts.JetStream, opts.JetStreamDomain, region)
	}
	if opts.StoreDir == "" || !strings.HasPrefix(opts.StoreDir, "/data/") {
		t.Errorf("%s NATS: store_dir %q is not on the /data volume", region, opts.StoreDir)
	}
	// The ports the server listens on are the container's and the Service's.
	var nats *workload
	for i, w := range c.workloads {
		if w.namespace == ns && w.labels["app.kubernetes.io/name"] == "nats" {
			nats = &c.workloads[i]
		}
	}
	if nats == nil {
		t.Errorf("no NATS StatefulSet in %s", ns)
		return opts
	}
	ports := map[string]int32{}
	for _, p := range nats.spec.Containers[0].Ports {
		ports[p.Name] = p.ContainerPort
	}
	for name, port := range map[string]int{"client": opts.Port, "monitor": opts.HTTPPort} {
		if int(ports[name]) != port {
			t.Errorf("%s NATS listens for %s on %d, the container port says %d", region, name, port, ports[name])
		}
	}
	if opts.LeafNode.Port != 0 && int(ports["leafnodes"]) != opts.LeafNode.Port {
		t.Errorf("%s NATS leafnode listener %d, the container port says %d", region, opts.LeafNode.Port, ports["leafnodes"])
	}
	return opts
}

// checkDemoMinIO checks the MinIO notification target against what Duet's replicator reads.
func checkDemoMinIO(t *testing.T, c *cluster, ns, region string) {
	t.Helper()
	for _, w := range c.workloads {
		if w.namespace != ns {
			continue
		}
		switch w.labels["app.kubernetes.io/name"] {
		case "minio":
			ctr := w.spec.Containers[0]
			env, err := containerEnv(c, w, ctr)
			if err != nil {
				t.Fatalf("%s: %v", w, err)
			}
			get := func(k string) string {
				v, _ := envValue(env, "MINIO_NOTIFY_NATS_"+k+"_"+minioproc.DefaultNotifyID)
				return v
			}
			if get("ENABLE") != "on" || get("JETSTREAM") != "on" {
				t.Errorf("%s: the NATS target %q is not enabled with JetStream", w, minioproc.DefaultNotifyID)
			}
			if got, want := get("SUBJECT"), bus.OriginEventSubject(region); got != want {
				t.Errorf("%s: events go to %q, the replicator reads %q", w, got, want)
			}
			if host, port, err := net.SplitHostPort(get("ADDRESS")); err != nil {
				t.Errorf("%s: NATS address %q: %v", w, get("ADDRESS"), err)
			} else if err := c.resolve("nats://" + host + "." + ns + ".svc:" + port); err != nil {
				t.Errorf("%s: NATS address %q: %v", w, get("ADDRESS"), err)
			}
			// Without a queue directory MinIO drops the events it cannot publish; on the data
			// volume they survive a restart.
			if q := get("QUEUE_DIR"); !slices.ContainsFunc(ctr.VolumeMounts, func(m corev1.VolumeMount) bool {
				return m.Name == "data" && strings.HasPrefix(q, m.MountPath+"/")
			}) {
				t.Errorf("%s: queue directory %q is not on the data volume", w, q)
			}
		case "minio-setup":
			script := strings.Join(w.spec.Containers[0].Command, " ")
			arn := minioproc.NotifyNATS{}.ARN()
			if !strings.Contains(script, "mc event add local/media "+arn) {
				t.Errorf("%s does not point the bucket's events at %s", w, arn)
			}
		}
	}
}
