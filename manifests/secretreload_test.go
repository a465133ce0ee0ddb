package manifests

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duetcdn/duet/edge"
	"github.com/duetcdn/duet/internal/tlsconf"
	"github.com/duetcdn/duet/internal/tlsconf/tlstest"
)

// secretVolume lays out a Secret volume as the kubelet's atomic writer does: the files live in
// a timestamped directory, "..data" links to it, and each key is a link through "..data". An
// update writes a new directory, swaps "..data" by rename and removes the old directory.
type secretVolume struct {
	dir string
	gen int
}

func (v *secretVolume) write(t *testing.T, files map[string][]byte) {
	t.Helper()
	v.gen++
	ts := fmt.Sprintf("..2026_01_01_00_00_%02d.%d", v.gen, v.gen)
	if err := os.Mkdir(filepath.Join(v.dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for k, b := range files {
		if err := os.WriteFile(filepath.Join(v.dir, ts, k), b, 0o440); err != nil {
			t.Fatal(err)
		}
	}
	old, _ := os.Readlink(filepath.Join(v.dir, "..data"))
	if err := os.Symlink(ts, filepath.Join(v.dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(v.dir, "..data_tmp"), filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for k := range files {
		link := filepath.Join(v.dir, k)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", k), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(v.dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSecretUpdateReachesNewConnections: the edge's TLS settings from the overlay, with its
// certificate Secret mounted as the kubelet mounts it, serve an updated Secret to new
// connections, while a connection opened before the update goes on being served.
func TestSecretUpdateReachesNewConnections(t *testing.T) {
	c := build(t, overlays(t)[0])
	w := c.workload(t, "edge")
	ctr, env, _ := container(t, c, w)
	ecfg := edgeFile{Config: edge.DefaultConfig()}
	loadRole(t, "edge", &ecfg, configFile(t, c, w, ctr), env)
	mount := ""
	for _, m := range ctr.VolumeMounts {
		for _, v := range w.spec.Volumes {
			if v.Name == m.Name && v.Secret != nil && v.Secret.SecretName == "duet-edge-tls" {
				mount = filepath.Clean(m.MountPath)
			}
		}
	}
	if mount == "" || len(ecfg.TLS.Certificates) == 0 {
		t.Fatalf("the edge mounts no duet-edge-tls Secret (%q) or has no tls.certificates (%v)", mount, ecfg.TLS.Certificates)
	}

	ca := tlstest.NewCA(t)
	vol := &secretVolume{dir: t.TempDir()}
	issue := func(serial int64) map[string][]byte {
		crt, key := ca.Issue(t, serial, "edge.example.net")
		return map[string][]byte{"tls.crt": crt, "tls.key": key}
	}
	vol.write(t, issue(1))
	cfg := ecfg.TLS
	cfg.RedirectListen, cfg.Certificates = "", nil
	for _, p := range ecfg.TLS.Certificates {
		cfg.Certificates = append(cfg.Certificates, tlsconf.CertKey{
			Cert: strings.Replace(p.Cert, mount, vol.dir, 1), Key: strings.Replace(p.Key, mount, vol.dir, 1)})
	}
	term, err := tlsconf.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = term.Run(ctx, tlsconf.Listeners{TLS: ln.Addr()}) }()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }),
		ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(tls.NewListener(ln, term.TLSConfig())) }()
	defer srv.Close()

	// One client per connection: each keeps its connection open between requests.
	client := func() (*http.Client, *int64) {
		var serial int64
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool, ServerName: "edge.example.net", MinVersion: tls.VersionTLS12},
			MaxIdleConnsPerHost: 1}
		tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := (&tls.Dialer{Config: tr.TLSClientConfig}).DialContext(ctx, network, addr)
			if err == nil {
				serial = tlstest.Serial(conn.(*tls.Conn).ConnectionState())
			}
			return conn, err
		}
		return &http.Client{Transport: tr, Timeout: 5 * time.Second}, &serial
	}
	get := func(cl *http.Client) error {
		resp, err := cl.Get("https://" + ln.Addr().String() + "/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	old, oldSerial := client()
	if err := get(old); err != nil || *oldSerial != 1 {
		t.Fatalf("first connection: %v, certificate %d, want 1", err, *oldSerial)
	}

	vol.write(t, issue(2)) // kubectl apply of the renewed Secret, as the kubelet delivers it
	deadline := time.Now().Add(10 * time.Second)
	for {
		cl, serial := client()
		if err := get(cl); err != nil {
			t.Fatalf("a new connection after the update: %v", err)
		}
		cl.CloseIdleConnections()
		if *serial == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new connections still get certificate %d 10s after the Secret's update", *serial)
		}
		time.Sleep(50 * time.Millisecond) //nolint:forbidigo // polling the condition under the deadline above: the reload is on its own ticker
	}
	*oldSerial = 0
	if err := get(old); err != nil || *oldSerial != 0 {
		t.Fatalf("the connection opened before the update: %v (redialled: %v)", err, *oldSerial != 0)
	}
}
