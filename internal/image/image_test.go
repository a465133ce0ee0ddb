package image_test

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/duetcdn/duet/internal/image"
)

// TestImage builds the image the way `make image` does (a static duet binary, then the image,
// written as an OCI layout and a tarball), reads it back from disk as a registry or a container
// runtime would, and checks what running it depends on: the config's entrypoint, non-root user
// and labels, and the binary from the layer, which must run (`duet version`).
func TestImage(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "duet-linux")
	const version = "v0.0.0-imagetest"
	if err := image.BuildBinary(t.Context(), "../..", bin, "", version); err != nil {
		t.Fatal(err)
	}
	cfg := image.Config{
		Binary: bin, Version: version, Revision: "0123456789abcdef0123456789abcdef01234567",
		Source: "https://github.com/duetcdn/duet", Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	built, err := image.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tag := image.Tag(version)
	layoutDir, tarPath := filepath.Join(dir, "image"), filepath.Join(dir, "image.tar")
	if err := image.WriteLayout(layoutDir, built, tag); err != nil {
		t.Fatal(err)
	}
	if err := image.WriteTarball(tarPath, built, tag); err != nil {
		t.Fatal(err)
	}

	img := readLayout(t, layoutDir, tag)
	wantDigest := digest(t, built)
	if got := digest(t, img); got != wantDigest {
		t.Errorf("the layout holds %s, built %s", got, wantDigest)
	}
	if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s, want an OCI manifest", mt)
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := cf.Config.Entrypoint; len(got) != 1 || got[0] != image.BinaryPath {
		t.Errorf("entrypoint %q, want [%s]: the manifests pass only the subcommand as args", got, image.BinaryPath)
	}
	if u := cf.Config.User; u == "" || u == "0" || strings.HasPrefix(u, "0:") || strings.HasPrefix(u, "root") {
		t.Errorf("user %q: the image must run as a non-root user", u)
	} else if u != "65532:65532" {
		t.Errorf("user %q, want 65532:65532 (the manifests' runAsUser)", u)
	}
	if cf.OS != "linux" || cf.Architecture == "" {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	for k, want := range map[string]string{
		image.LabelVersion:  version,
		image.LabelRevision: cfg.Revision,
		image.LabelSource:   cfg.Source,
		image.LabelCreated:  "2026-01-02T03:04:05Z",
	} {
		if got := cf.Config.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	if !cf.Created.Time.Equal(cfg.Created) {
		t.Errorf("created %v, want %v", cf.Created.Time, cfg.Created)
	}

	files := extract(t, img)
	for _, f := range []string{"duet", "etc/ssl/certs/ca-certificates.crt", "etc/passwd", "tmp"} {
		h, ok := files[f]
		if !ok {
			t.Fatalf("the image has no /%s", f)
		}
		if !h.hdr.ModTime.Equal(cfg.Created) {
			t.Errorf("/%s has time %v, want %v (reproducible)", f, h.hdr.ModTime, cfg.Created)
		}
	}
	if pool := x509.NewCertPool(); !pool.AppendCertsFromPEM(files["etc/ssl/certs/ca-certificates.crt"].body) {
		t.Error("the CA bundle holds no certificate: the edge could not reach S3 over HTTPS")
	}
	if !strings.Contains(string(files["etc/passwd"].body), ":65532:65532:") {
		t.Error("/etc/passwd does not name the user 65532")
	}
	if m := files["duet"].hdr.Mode; m&0o111 == 0 {
		t.Errorf("/duet mode %o is not executable", m)
	}

	// The binary from the layer runs: a static build, for this machine's architecture.
	duet := filepath.Join(dir, "from-layer", "duet")
	if err := os.MkdirAll(filepath.Dir(duet), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(duet, files["duet"].body, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), duet, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("duet version from the image's layer: %v\n%s", err, out)
	}
	if v := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "duet")); v == "" {
		t.Fatalf("duet version printed no version: %q", out)
	}
	t.Logf("duet version from the image: %s", strings.TrimSpace(string(out)))

	// The tarball holds the same image under Name:tag.
	tagged, err := tarball.ImageFromPath(tarPath, nil)
	if err != nil {
		t.Fatalf("read the tarball: %v", err)
	}
	if got, want := configName(t, tagged), configName(t, built); got != want {
		t.Errorf("the tarball's config is %s, want %s", got, want)
	}

	// Reproducible: the same inputs build the same digest.
	again, err := image.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := digest(t, again); got != wantDigest {
		t.Errorf("a second build from the same binary is %s, the first %s: the image is not reproducible", got, wantDigest)
	}
}

func TestTag(t *testing.T) {
	for version, want := range map[string]string{
		"v0.1.0":                      "v0.1.0",
		"v0.1.0-3-gabc1234-dirty":     "v0.1.0-3-gabc1234-dirty",
		"v0.1.1-0.20260101-abc+dirty": "v0.1.1-0.20260101-abc-dirty",
		"feature/x":                   "feature-x",
		"-x":                          "x",
		"":                            "dev",
		strings.Repeat("a", 200):      strings.Repeat("a", 128),
	} {
		if got := image.Tag(version); got != want {
			t.Errorf("Tag(%q) = %q, want %q", version, got, want)
		}
	}
}

func TestBuildNeedsBinaryAndVersion(t *testing.T) {
	if _, err := image.Build(image.Config{Binary: "x"}); err == nil {
		t.Error("no version: no error")
	}
	if _, err := image.Build(image.Config{Binary: filepath.Join(t.TempDir(), "none"), Version: "v1"}); err == nil {
		t.Error("missing binary: no error")
	}
}

func readLayout(t *testing.T, dir, tag string) v1.Image {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("read the layout: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("the layout holds %d manifests, want 1", len(im.Manifests))
	}
	desc := im.Manifests[0]
	if got := desc.Annotations["org.opencontainers.image.ref.name"]; got != tag {
		t.Errorf("ref.name %q, want %q", got, tag)
	}
	img, err := idx.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

type file struct {
	hdr  *tar.Header
	body []byte
}

// extract returns the image's files (the flattened layers) by name, without a leading "/".
func extract(t *testing.T, img v1.Image) map[string]file {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	files := map[string]file{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("read the layer: %v", err)
		}
		var body bytes.Buffer
		if _, err := io.Copy(&body, tr); err != nil {
			t.Fatalf("read %s from the layer: %v", h.Name, err)
		}
		files[strings.Trim(h.Name, "/")] = file{hdr: h, body: body.Bytes()}
	}
}

func digest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func configName(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return d
}
