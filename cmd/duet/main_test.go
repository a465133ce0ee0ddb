package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/duetcdn/duet/devcluster"
	"github.com/duetcdn/duet/internal/freeport"
	"github.com/duetcdn/duet/internal/testenv"
)

// The test binary doubles as the duet binary: with DUET_TEST_MAIN set it runs main, so that
// tests can start real edge processes and kill them with SIGKILL.
func TestMain(m *testing.M) {
	if os.Getenv("DUET_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// handedOut holds the ports freeAddr has given this test process, so no two tests get the same.
var handedOut sync.Map

// freeAddr returns a loopback address nothing listens on, for a role the test starts next. The
// port stays free until the role listens (see freeport): an ephemeral one could be taken by any
// outgoing connection of the tests running alongside, and then the role cannot start.
func freeAddr(t testing.TB) string {
	t.Helper()
	for range 1000 {
		ln, err := freeport.Listen("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		_ = ln.Close()
		if _, taken := handedOut.LoadOrStore(ln.Addr().String(), true); !taken {
			return ln.Addr().String()
		}
	}
	t.Fatal("no loopback port left that this process has not handed out")
	return ""
}

type edgeProc struct {
	cmd    *exec.Cmd
	url    string
	admin  string
	stderr *bytes.Buffer
}

func startEdgeProc(t *testing.T, args ...string) *edgeProc {
	t.Helper()
	p := &edgeProc{url: "http://" + freeAddr(t), admin: "http://" + freeAddr(t), stderr: &bytes.Buffer{}}
	args = append([]string{"edge", "--listen", strings.TrimPrefix(p.url, "http://"), "--admin_listen", strings.TrimPrefix(p.admin, "http://")}, args...)
	p.cmd = exec.Command(os.Args[0], args...)
	p.cmd.Env = append(os.Environ(), "DUET_TEST_MAIN=1")
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	})
	testenv.Eventually(t, 20*time.Second, func() bool {
		resp, err := http.Get(p.admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "edge process never ready: %s", p.stderr)
	return p
}

func (p *edgeProc) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
}

func get(t *testing.T, url string) (string, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %d %s", url, resp.StatusCode, b)
	}
	return resp.Header.Get("X-Cache"), b
}

func pattern(n, size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*7 + n*13 + i/251)
	}
	return b
}

// TestKillNineAndRestart: an edge killed with SIGKILL, its disk tier full, comes back with
// every object a hit; a corrupted cache file is detected and refetched, never served.
func TestKillNineAndRestart(t *testing.T) {
	m := testenv.MinIO(t)
	bucket := testenv.Bucket(t, m)
	s3c := testenv.S3Client(t, m)
	const objects = 24
	const size = 1 << 20
	want := map[string][32]byte{}
	for i := range objects {
		key := fmt.Sprintf("seg/%02d.ts", i)
		body := pattern(i, size)
		want["/"+key] = sha256.Sum256(body)
		if _, err := s3c.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
			Body: bytes.NewReader(body), CacheControl: aws.String("max-age=3600")}); err != nil {
			t.Fatal(err)
		}
	}
	disk := t.TempDir()
	args := []string{"--origin.type", "s3", "--origin.endpoint", m.Endpoint(), "--origin.bucket", bucket,
		"--origin.access_key", m.AccessKey(), "--origin.secret_key", m.SecretKey(),
		"--disk.dir", disk, "--disk.max_bytes", "26MiB", "--memory.max_bytes", "8MiB", "--memory.max_object_bytes", "512KiB"}
	p := startEdgeProc(t, args...)
	for path := range want {
		if x, _ := get(t, p.url+path); x != "MISS" {
			t.Fatalf("%s: first fetch %s", path, x)
		}
	}
	hitsBefore := 0
	for path := range want {
		if x, _ := get(t, p.url+path); x == "HIT" {
			hitsBefore++
		}
	}
	p.kill9(t)

	p = startEdgeProc(t, args...)
	hits := 0
	for path, sum := range want {
		x, b := get(t, p.url+path)
		if sha256.Sum256(b) != sum {
			t.Fatalf("%s: wrong bytes after restart", path)
		}
		if x == "HIT" {
			hits++
		}
	}
	// The disk budget holds 24 of the 24 MiB (plus metadata) only just: allow a couple evicted.
	if hits < objects-3 {
		t.Fatalf("after kill -9 and restart %d of %d objects were hits", hits, objects)
	}
	t.Logf("hits before kill: %d, after restart: %d of %d", hitsBefore, hits, objects)
	p.kill9(t)

	// Corrupt one body byte in every cache file of one object: find the files by content.
	victim := "/seg/05.ts"
	corrupted := 0
	_ = filepath.WalkDir(disk, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return nil
		}
		defer f.Close()
		head := make([]byte, 64)
		if _, err := f.ReadAt(head, 0); err == nil && bytes.Equal(head, pattern(5, size)[:64]) {
			_, _ = f.WriteAt([]byte{head[10] ^ 0xff}, 10)
			corrupted++
		}
		return nil
	})
	if corrupted == 0 {
		t.Fatal("found no cache file of the victim to corrupt")
	}
	p = startEdgeProc(t, args...)
	x, b := get(t, p.url+victim)
	if sha256.Sum256(b) != want[victim] {
		t.Fatal("a corrupted cache file was served")
	}
	if x != "MISS" {
		t.Fatalf("corrupted entry answered %s, want a refetch (MISS)", x)
	}
	if x, b := get(t, p.url+victim); x != "HIT" || sha256.Sum256(b) != want[victim] {
		t.Fatalf("refetched entry: %s", x)
	}
}

func TestEdgeConfigErrorsSayWhatToFix(t *testing.T) {
	cases := []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"edge"}, nil, "origin.type is required"},
		{[]string{"edge", "--origin.type", "ftp"}, nil, `origin.type "ftp" is unknown`},
		{[]string{"edge", "--origin.type", "s3"}, nil, "origin.bucket is required"},
		{[]string{"edge", "--memory.max_bytes", "lots"}, nil, "512MiB"},
		{[]string{"edge"}, []string{"DUET_EDGE_ORIGIN_TIMEOUT=soon"}, "DUET_EDGE_ORIGIN_TIMEOUT"},
		{[]string{"edge", "--config", "/nonexistent.yaml"}, nil, "read config file"},
		{[]string{"edge", "--origin.type", "http", "--origin.endpoint", "http://x", "--listen", "nope"}, nil, `listen "nope" is not host:port`},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		err := run(t.Context(), c.args, &out, &errb, c.env)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v %v: got %v, want it to mention %q", c.args, c.env, err, c.want)
		}
	}
}

// TestDevShowsMissThenHit runs what `make run` runs and follows its printed instructions.
func TestDevShowsMissThenHit(t *testing.T) {
	bin := testenv.MinIOBin(t)
	dir := t.TempDir()
	// The roles run as child processes of dev: with DUET_TEST_MAIN this test binary is duet.
	environ := append(os.Environ(), "DUET_TEST_MAIN=1")
	d := startDev(t, dir, bin, environ)
	segURL, cancel, done := d.segURL, d.cancel, d.done
	x1, b1 := get(t, segURL)
	x2, b2 := get(t, segURL)
	if x1 != "MISS" || x2 != "HIT" || !bytes.Equal(b1, b2) || len(b1) == 0 {
		t.Fatalf("printed curl showed %s then %s", x1, x2)
	}
	// Two regions of two edges, each serving the sample from its own region's origin.
	_, body := d.getCluster(t)
	var cl devcluster.ClusterJSON
	if err := json.Unmarshal(body, &cl); err != nil {
		t.Fatalf("cluster JSON: %v: %s", err, body)
	}
	if len(cl.Regions) != 2 {
		t.Fatalf("want 2 regions, got %+v", cl)
	}
	for _, r := range cl.Regions {
		if len(r.Edges) != 2 || !r.Up {
			t.Fatalf("region %s: %+v", r.Name, r)
		}
		for _, e := range r.Edges {
			_, master := get(t, e.URL+cl.Sample)
			if !strings.HasPrefix(string(master), "#EXTM3U") || !strings.Contains(string(master), "#EXT-X-CONTENT-STEERING") {
				t.Fatalf("%s master playlist (steering injected?): %q", e.Name, master)
			}
		}
	}
	checkDevTrustBoundaries(t, d, cl)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dev did not stop cleanly: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("dev did not stop within 60s of Ctrl-C")
	}
	for _, r := range cl.Regions {
		for _, e := range r.Edges {
			if resp, err := http.Get(e.URL + cl.Sample); err == nil {
				resp.Body.Close()
				t.Fatalf("edge %s still answers after dev stopped", e.Name)
			}
		}
	}
	// A port in use gets a clear message naming what needed it, not a stack trace.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	err = run(t.Context(), []string{"dev", "--dir", dir, "--port-offset", strconv.Itoa(port - 8400), "--minio-bin", bin}, io.Discard, io.Discard, environ)
	if err == nil || !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), "steering of region 1") {
		t.Fatalf("port in use: %v", err)
	}
	err = run(t.Context(), []string{"dev", "--dir", dir, "--minio-bin", filepath.Join(dir, "nope")}, io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "make tools") {
		t.Fatalf("missing minio: %v", err)
	}
}

// devRun is a `duet dev` started by a test.
type devRun struct {
	dir                string
	segURL, clusterURL string
	token              string // the control API's, as the banner prints it
	cancel             context.CancelFunc
	done               chan error
}

// startDev runs `duet dev` with a random port offset (another one when a port is taken by a
// concurrently running test) until it prints its URLs.
func startDev(t *testing.T, dir, minioBin string, environ []string, flags ...string) *devRun {
	t.Helper()
	curl := regexp.MustCompile(`curl -s -o /dev/null -D - (\S+)`)
	control := regexp.MustCompile(`curl -s -H 'Authorization: Bearer (\S+)' (http://\S+/v1/dev/cluster)`)
	for attempt := 0; ; attempt++ {
		// Every dev port (4222..9184 plus the offset) stays below Linux's ephemeral range
		// (32768-60999), where other tests' listeners come and go.
		offset := strconv.Itoa(6000 + rand.IntN(170)*100)
		ctx, cancel := context.WithCancel(t.Context())
		pr, pw := io.Pipe()
		d := &devRun{dir: dir, cancel: cancel, done: make(chan error, 1)}
		go func() {
			d.done <- run(ctx, append([]string{"dev", "--dir", dir, "--port-offset", offset, "--minio-bin", minioBin, "--log-level", "warn"}, flags...), pw, io.Discard, environ)
			close(d.done) // later receives (the cleanup's) return at once
			pw.Close()
		}()
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := curl.FindStringSubmatch(sc.Text()); m != nil {
				d.segURL = m[1]
			}
			if m := control.FindStringSubmatch(sc.Text()); m != nil {
				d.token, d.clusterURL = m[1], m[2]
				break
			}
		}
		go io.Copy(io.Discard, pr)
		if d.segURL != "" && d.clusterURL != "" {
			t.Cleanup(func() {
				cancel()
				<-d.done
			})
			return d
		}
		cancel()
		err := <-d.done
		// A port can be taken between dev's check and a role's listen (other tests run
		// alongside): try another offset. A real start-up bug fails every attempt.
		if attempt < 4 && err != nil {
			t.Logf("dev did not start (attempt %d, trying other ports): %v", attempt+1, err)
			continue
		}
		t.Fatalf("dev printed no URLs: %v", err)
	}
}

// getCluster reads the control API's description of the cluster, with the control token.
func (d *devRun) getCluster(t *testing.T) (string, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, d.clusterURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d %s %v", d.clusterURL, resp.StatusCode, b, err)
	}
	return resp.Header.Get("X-Cache"), b
}
