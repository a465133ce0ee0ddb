package main

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"go.yaml.in/yaml/v3"

	"github.com/duetcdn/duet/devcluster"
	"github.com/duetcdn/duet/internal/minioproc"
	"github.com/duetcdn/duet/origin/s3conf"
	"github.com/duetcdn/duet/origin/upload"
)

// call sends one request and returns the status and body.
func call(t *testing.T, method, url string, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(`{"urls":["/x"]}`))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if h := hdr["Host"]; h != "" {
		req.Host = h
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// checkDevTrustBoundaries replays, against a running `duet dev`, what another process on the
// machine or a web page in its browser could try: drive the control API or an edge's admin port
// without the token, or with it through a cross-site, non-JSON or rebound request; write to the
// origin with the credentials an edge holds; read the secrets from the state directory.
func checkDevTrustBoundaries(t *testing.T, d *devRun, cl devcluster.ClusterJSON) {
	t.Helper()
	control := strings.TrimSuffix(d.clusterURL, "/v1/dev/cluster")
	edge := cl.Regions[0].Edges[0]
	ctl, adm := "Bearer "+d.token, "Bearer "+cl.EdgeAdminToken
	jsonCT := "application/json"
	for _, c := range []struct {
		name, method, url string
		hdr               map[string]string
		status            int
	}{
		{"control: describe without token", "GET", d.clusterURL, nil, 401},
		{"control: describe with the purge token", "GET", d.clusterURL, map[string]string{"Authorization": "Bearer " + cl.PurgeToken}, 401},
		{"control: stop without token", "POST", control + "/v1/dev/edges/" + edge.Name + "/stop", map[string]string{"Content-Type": jsonCT}, 401},
		{"control: stop as text/plain", "POST", control + "/v1/dev/edges/" + edge.Name + "/stop", map[string]string{"Authorization": ctl, "Content-Type": "text/plain"}, 415},
		{"control: stop from a foreign Origin", "POST", control + "/v1/dev/edges/" + edge.Name + "/stop", map[string]string{"Authorization": ctl, "Content-Type": jsonCT, "Origin": "http://evil.example"}, 403},
		{"control: describe through a rebound name", "GET", d.clusterURL, map[string]string{"Authorization": ctl, "Host": "evil.example:7070"}, 403},
		{"edge admin: purge without token", "POST", edge.Admin + "/purge", map[string]string{"Content-Type": jsonCT}, 401},
		{"edge admin: pprof without token", "GET", edge.Admin + "/debug/pprof/cmdline", nil, 401},
		{"edge admin: purge as text/plain", "POST", edge.Admin + "/purge", map[string]string{"Authorization": adm, "Content-Type": "text/plain"}, 415},
		{"edge admin: purge from a foreign Origin", "POST", edge.Admin + "/purge", map[string]string{"Authorization": adm, "Content-Type": jsonCT, "Origin": "http://evil.example"}, 403},
		{"edge admin: purge with the token", "POST", edge.Admin + "/purge", map[string]string{"Authorization": adm, "Content-Type": jsonCT}, 200},
		{"edge admin: metrics stay open", "GET", edge.Admin + "/metrics", nil, 200},
	} {
		if status, body := call(t, c.method, c.url, c.hdr); status != c.status {
			t.Errorf("%s: %d %.200s, want %d", c.name, status, body, c.status)
		}
	}
	if _, body := d.getCluster(t); !bytes.Contains(body, []byte(`"up": true`)) {
		t.Errorf("a refused stop stopped something: %s", body)
	}

	// The edge's origin credentials, as `duet dev` wrote them, read but cannot write.
	var ec struct {
		Origin struct {
			AccessKey string `yaml:"access_key"`
			SecretKey string `yaml:"secret_key"`
		} `yaml:"origin"`
	}
	b, err := os.ReadFile(filepath.Join(d.dir, "config", "edge-"+edge.Name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &ec); err != nil {
		t.Fatal(err)
	}
	if ec.Origin.AccessKey == "" || ec.Origin.AccessKey == minioproc.DefaultAccessKey || ec.Origin.AccessKey == cl.Upload.AccessKey {
		t.Fatalf("edge reads the origin as %q: not its own user", ec.Origin.AccessKey)
	}
	r := cl.Regions[0]
	s3c, err := upload.NewClient(t.Context(), upload.Region{Name: r.Name, Config: s3conf.Config{Endpoint: r.Origin, Bucket: cl.Bucket,
		AccessKey: ec.Origin.AccessKey, SecretKey: ec.Origin.SecretKey}}, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	key := strings.TrimPrefix(cl.Sample, "/")
	got, err := s3c.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(cl.Bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("edge credentials cannot read %s: %v", key, err)
	}
	_ = got.Body.Close()
	_, err = s3c.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(cl.Bucket), Key: aws.String(key),
		Body: strings.NewReader("#EXTM3U\n# defaced\n")})
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorCode() != "AccessDenied" {
		t.Fatalf("edge credentials overwrote %s: %v", key, err)
	}

	// What holds a secret is readable by its owner only.
	files := []string{filepath.Join(d.dir, "secrets.json")}
	cfgs, _ := filepath.Glob(filepath.Join(d.dir, "config", "*.yaml"))
	logs, _ := filepath.Glob(filepath.Join(d.dir, "logs", "*.log"))
	files = append(append(files, cfgs...), logs...)
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
}
