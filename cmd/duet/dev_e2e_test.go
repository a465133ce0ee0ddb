package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/duetcdn/duet/devcluster"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/origin/s3conf"
	"github.com/duetcdn/duet/origin/upload"
)

// TestDevOriginChangesReachEveryEdge runs the two-region `duet dev` (every role its own process,
// MinIO publishing bucket events to NATS) and changes objects with plain S3 calls in one region:
// every edge in both regions follows (new, overwritten, deleted) without anyone purging, and when
// a region's origin dies its edges fill from the other region's, then come back.
func TestDevOriginChangesReachEveryEdge(t *testing.T) {
	bin := testenv.MinIOBin(t)
	d := startDev(t, t.TempDir(), bin, append(os.Environ(), "DUET_TEST_MAIN=1"))
	_, body := d.getCluster(t)
	var cl devcluster.ClusterJSON
	if err := json.Unmarshal(body, &cl); err != nil {
		t.Fatal(err)
	}
	control := strings.TrimSuffix(d.clusterURL, "/v1/dev/cluster")
	s3a := devS3(t, cl, 0)
	s3b := devS3(t, cl, 1)
	var edges []devcluster.EdgeJSON
	for _, r := range cl.Regions {
		edges = append(edges, r.Edges...)
	}
	// everyEdgeServes waits until every edge answers path with status and (for 200) body.
	everyEdgeServes := func(path string, status int, want []byte, within time.Duration, what string) {
		t.Helper()
		start := time.Now()
		testenv.Eventually(t, within, func() bool {
			for _, e := range edges {
				st, b := fetch(e.URL + path)
				if st != status || status == http.StatusOK && !bytes.Equal(b, want) {
					return false
				}
			}
			return true
		}, "%s: not every edge answers %d with the expected bytes", what, status)
		t.Logf("%s: every edge in both regions follows after %s", what, time.Since(start).Round(time.Millisecond))
	}
	ctx := t.Context()
	key := "vod/e2e/clip.ts"
	put := func(c *s3.Client, key string, body []byte) {
		t.Helper()
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(cl.Bucket), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}
	v1, v2 := bytes.Repeat([]byte("one "), 5000), bytes.Repeat([]byte("two "), 6000)

	// Peer fill is on: a region's edges fill their misses from the object's owner among them.
	// New objects (the edges learn each other from heartbeats a second apart) are read through
	// every edge of region A until one edge has answered another's request.
	a := cl.Regions[0]
	sumA := func(series string) (n float64) {
		for _, e := range a.Edges {
			n += counter(t, e.Admin, series)
		}
		return n
	}
	round := 0
	testenv.Eventually(t, 30*time.Second, func() bool {
		round++
		for k := range 4 {
			p := "vod/peer/" + strconv.Itoa(round) + "-" + strconv.Itoa(k) + ".ts"
			put(s3a, p, v1)
			for _, e := range a.Edges {
				if st, b := fetch(e.URL + "/" + p); st != http.StatusOK || !bytes.Equal(b, v1) {
					t.Fatalf("%s /%s: %d", e.Name, p, st)
				}
			}
		}
		return sumA("duet_edge_peer_requests_served_total") > 0 && sumA(`duet_edge_peer_fetches_total{result="ok"}`) > 0
	}, "no edge of region %s ever filled a miss from its peer", a.Name)

	// A new object in region A: cached by every edge (region B's from its own, replicated origin).
	put(s3a, key, v1)
	everyEdgeServes("/"+key, http.StatusOK, v1, 30*time.Second, "new object")
	// Overwritten in A: no edge serves the old bytes any more, without a manual purge.
	put(s3a, key, v2)
	everyEdgeServes("/"+key, http.StatusOK, v2, 30*time.Second, "overwrite")
	// Deleted in A: gone from B's bucket and from every edge.
	if _, err := s3a.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(cl.Bucket), Key: aws.String(key)}); err != nil {
		t.Fatal(err)
	}
	everyEdgeServes("/"+key, http.StatusNotFound, nil, 30*time.Second, "delete")
	if _, err := s3b.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(cl.Bucket), Key: aws.String(key)}); !isNotFound(err) {
		t.Fatalf("the delete did not reach region B's bucket: %v", err)
	}

	// `duet upload` of a folder to region A (a 24 MiB file goes up in parts): region B's bucket
	// gets the same bytes.
	folder := t.TempDir()
	big := pattern(7, 24<<20)
	if err := os.WriteFile(filepath.Join(folder, "big.mp4"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(folder, "index.m3u8"), []byte("#EXTM3U\n#EXT-X-ENDLIST\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(d.dir, "config", "upload.yaml")
	if err := run(ctx, []string{"upload", "--config", cfgFile, "--region", cl.Regions[0].Name, "--prefix", "vod/up/", "--plain", folder},
		io.Discard, io.Discard, nil); err != nil {
		t.Fatalf("duet upload: %v", err)
	}
	want := sha256.Sum256(big)
	testenv.Eventually(t, 60*time.Second, func() bool {
		out, err := s3b.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(cl.Bucket), Key: aws.String("vod/up/big.mp4")})
		if err != nil {
			return false
		}
		defer out.Body.Close()
		h := sha256.New()
		if _, err := io.Copy(h, out.Body); err != nil {
			return false
		}
		return bytes.Equal(h.Sum(nil), want[:])
	}, "the file uploaded to region A never reached region B with the same sha256")

	// Region A's origin dies: A's edges fill misses from B's origin, then go back to their own.
	fo := "vod/e2e/failover.ts"
	put(s3a, fo, v1)
	testenv.Eventually(t, 30*time.Second, func() bool {
		_, err := s3b.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(cl.Bucket), Key: aws.String(fo)})
		return err == nil
	}, "%s never reached region B", fo)
	post(t, control+"/v1/dev/origins/"+a.Name+"/stop", d.token)
	for _, e := range a.Edges {
		if st, b := fetch(e.URL + "/" + fo); st != http.StatusOK || !bytes.Equal(b, v1) {
			t.Fatalf("%s with its origin down: %d", e.Name, st)
		}
	}
	// With peer fill the object's owner among A's edges is the one that fetched it.
	failovers := sumA(`duet_edge_origin_failovers_total{from="` + a.Name + `",to="` + cl.Regions[1].Name + `"}`)
	if failovers < 1 {
		t.Fatalf("region %s's edges filled without failing over?", a.Name)
	}
	post(t, control+"/v1/dev/origins/"+a.Name+"/start", d.token)
	back := "vod/e2e/back.ts"
	put(s3a, back, v2)
	// Once the breakers have let a probe through, misses go to region A's origin again (from
	// whichever of A's edges owns the object).
	testenv.Eventually(t, 30*time.Second, func() bool {
		return sumA(`duet_edge_origin_up{origin="`+a.Name+`"}`) == float64(len(a.Edges))
	}, "region A's origin never came back into rotation at all of its edges")
	failoversAB := `duet_edge_origin_failovers_total{from="` + a.Name + `",to="` + cl.Regions[1].Name + `"}`
	before := sumA(failoversAB)
	if st, b := fetch(a.Edges[0].URL + "/" + back + "?n=1"); st != http.StatusOK || !bytes.Equal(b, v2) {
		t.Fatalf("after the origin came back: %d", st)
	}
	if after := sumA(failoversAB); after != before {
		t.Fatalf("a miss still failed over after region A's origin came back (%v → %v)", before, after)
	}
}

func devS3(t *testing.T, cl devcluster.ClusterJSON, i int) *s3.Client {
	t.Helper()
	r := cl.Regions[i]
	c, err := upload.NewClient(t.Context(), upload.Region{Name: r.Name, Config: s3conf.Config{Endpoint: r.Origin,
		Bucket: cl.Bucket, AccessKey: cl.Upload.AccessKey, SecretKey: cl.Upload.SecretKey}}, nil, 4)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func isNotFound(err error) bool {
	var nf *types.NotFound
	return errors.As(err, &nf)
}

// fetch GETs url: status and body (0 when there was no answer).
func fetch(url string) (int, []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil
	}
	return resp.StatusCode, b
}

// post sends a control API command with the control token.
func post(t *testing.T, url, token string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode, b)
	}
}

// counter reads one sample (name with labels, exactly as exposed) from an admin /metrics page.
func counter(t *testing.T, admin, sample string) float64 {
	t.Helper()
	_, b := fetch(admin + "/metrics")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}
