// Package image builds Duet's container image without Docker or a base image: one layer, FROM
// scratch, holding the static duet binary, the CA roots it needs to reach S3 over HTTPS, and the
// passwd/group entries of the non-root user it runs as. `make image` drives it through
// internal/image/mkimage; the result is an OCI image layout (push it with `skopeo copy` or
// `crane push`) and a tarball `docker load`, `podman load` and `kind load image-archive` accept.
//
// The image is reproducible: every file's time and the image's creation time are Config.Created
// (the commit's time under `make image`), the binary is built with -trimpath, and the CA roots
// come from a module pinned in go.mod (golang.org/x/crypto/x509roots/fallback), not from the
// building machine. The same commit therefore builds the same image digest anywhere.
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// Name is the repository the image is built under and the Kubernetes manifests pull
// (manifests/base; a test there checks they agree).
const Name = "ghcr.io/duetcdn/duet"

// Paths and identity inside the image.
const (
	// BinaryPath is the duet binary and the image's entrypoint: a container's args are the
	// subcommand and its flags (`edge --config /etc/duet/edge.yaml`).
	BinaryPath = "/duet"
	// CACertsPath is where Go's crypto/x509 looks first on Linux.
	CACertsPath = "/etc/ssl/certs/ca-certificates.crt"
	// UID and GID of the user the image runs as: distroless's "nonroot", which the manifests'
	// securityContext (runAsUser: 65532) names too.
	UID = 65532
	GID = 65532
)

// OCI annotation keys of the labels the image carries.
const (
	LabelVersion  = "org.opencontainers.image.version"
	LabelRevision = "org.opencontainers.image.revision"
	LabelSource   = "org.opencontainers.image.source"
	LabelCreated  = "org.opencontainers.image.created"
	LabelTitle    = "org.opencontainers.image.title"
	LabelLicenses = "org.opencontainers.image.licenses"
)

// Config says what goes into the image.
type Config struct {
	// Binary is the path of a static (CGO_ENABLED=0) Linux duet binary, as BuildBinary makes.
	Binary string
	// Arch is the binary's GOARCH (the image's architecture). Empty: runtime.GOARCH.
	Arch string
	// Version, Revision and Source become the org.opencontainers.image.* labels: the version
	// `duet version` prints, the commit, and the repository's URL. Version is required.
	Version, Revision, Source string
	// Created is the image's creation time and every file's modification time. Fix it (the
	// commit's time) for a reproducible image; zero means the Unix epoch.
	Created time.Time
}

// Build returns the image described by cfg. Nothing is written: see WriteLayout and WriteTarball.
func Build(cfg Config) (v1.Image, error) {
	if cfg.Binary == "" || cfg.Version == "" {
		return nil, errors.New("build image: the binary and the version are required")
	}
	if cfg.Arch == "" {
		cfg.Arch = runtime.GOARCH
	}
	created := cfg.Created.UTC()
	if created.IsZero() {
		created = time.Unix(0, 0).UTC()
	}
	bin, err := os.ReadFile(cfg.Binary)
	if err != nil {
		return nil, fmt.Errorf("build image: read the duet binary: %w", err)
	}
	layerTar, err := rootFS(bin, created)
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching) // compress once, not per digest and write
	if err != nil {
		return nil, fmt.Errorf("build image: layer: %w", err)
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: "make image (internal/image)", Comment: "duet " + cfg.Version},
	})
	if err != nil {
		return nil, fmt.Errorf("build image: append the layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("build image: config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: created}
	cf.OS = "linux"
	cf.Architecture = cfg.Arch
	cf.Author = "Duet authors"
	cf.Config = v1.Config{
		Entrypoint: []string{BinaryPath},
		User:       fmt.Sprintf("%d:%d", UID, GID),
		WorkingDir: "/",
		Env:        []string{"PATH=/"}, // so that `kubectl exec POD -- duet version` finds it
		Labels:     labels(cfg, created),
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("build image: set the config: %w", err)
	}
	return img, nil
}

func labels(cfg Config, created time.Time) map[string]string {
	l := map[string]string{
		LabelVersion:  cfg.Version,
		LabelCreated:  created.Format(time.RFC3339),
		LabelTitle:    "duet",
		LabelLicenses: "Apache-2.0",
	}
	if cfg.Revision != "" {
		l[LabelRevision] = cfg.Revision
	}
	if cfg.Source != "" {
		l[LabelSource] = cfg.Source
	}
	return l
}

// rootFS returns the layer's uncompressed tar: the binary, the CA roots, passwd and group, and
// a world-writable /tmp, every entry owned by root with the given time.
func rootFS(bin []byte, mtime time.Time) ([]byte, error) {
	certs, err := caBundle()
	if err != nil {
		return nil, err
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", UID, GID)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", GID)
	entries := []struct {
		name string
		mode int64
		body []byte // nil: a directory
	}{
		{"duet", 0o755, bin},
		{"etc/", 0o755, nil},
		{"etc/group", 0o644, []byte(group)},
		{"etc/passwd", 0o644, []byte(passwd)},
		{"etc/ssl/", 0o755, nil},
		{"etc/ssl/certs/", 0o755, nil},
		{"etc/ssl/certs/ca-certificates.crt", 0o644, certs},
		{"home/", 0o755, nil},
		{"home/nonroot/", 0o700, nil},
		{"tmp/", 0o1777, nil},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: mtime, Format: tar.FormatPAX, Typeflag: tar.TypeReg, Size: int64(len(e.body))}
		if e.body == nil {
			h.Typeflag = tar.TypeDir
		}
		if e.name == "home/nonroot/" {
			h.Uid, h.Gid = UID, GID
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer %s: %w", e.name, err)
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, fmt.Errorf("layer %s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return buf.Bytes(), nil
}

// caBundle returns the NSS trust store's roots as PEM, from the pinned x509roots module. Roots
// that carry a constraint PEM cannot express (a distrust-after date) are left out: a CA being
// phased out is better not trusted at all than trusted without its limit.
func caBundle() ([]byte, error) {
	var out bytes.Buffer
	n := 0
	for root := range bundle.Roots() {
		if root.Constraint != nil {
			continue
		}
		if err := pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: root.Certificate}); err != nil {
			return nil, fmt.Errorf("encode CA roots: %w", err)
		}
		n++
	}
	if n == 0 {
		return nil, errors.New("encode CA roots: the bundle is empty")
	}
	return out.Bytes(), nil
}

// BuildBinary builds a static, reproducible duet binary for Linux and arch (empty:
// runtime.GOARCH) from the module in moduleDir into out, with `duet version` printing version:
// CGO_ENABLED=0 (a scratch image has no libc), -trimpath (no build paths in the binary),
// -buildvcs=false (the version is stamped explicitly, and the image's labels carry the commit).
func BuildBinary(ctx context.Context, moduleDir, out, arch, version string) error {
	if arch == "" {
		arch = runtime.GOARCH
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -buildid= -X main.version="+version, "-o", out, "./cmd/duet")
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build duet for linux/%s: %w\n%s", arch, err, msg)
	}
	return nil
}

// WriteLayout writes img as an OCI image layout in dir, replacing what dir held, with tag as its
// reference name (`skopeo copy oci:DIR:TAG docker://REGISTRY/duet:TAG` pushes it).
func WriteLayout(dir string, img v1.Image, tag string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("write image layout: %w", err)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("write image layout %s: %w", dir, err)
	}
	err = p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": tag,
		"io.containerd.image.name":          Name + ":" + tag,
	}))
	if err != nil {
		return fmt.Errorf("write image layout %s: %w", dir, err)
	}
	return nil
}

// WriteTarball writes img as a `docker save` tarball at path, tagged Name:tag, for `docker
// load`, `podman load` or `kind load image-archive`.
func WriteTarball(path string, img v1.Image, tag string) error {
	ref, err := name.NewTag(Name + ":" + tag)
	if err != nil {
		return fmt.Errorf("write image tarball: tag %q: %w", tag, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write image tarball: %w", err)
	}
	if err := tarball.WriteToFile(path, ref, img); err != nil {
		return fmt.Errorf("write image tarball %s: %w", path, err)
	}
	return nil
}

var notInTag = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// Tag turns a version (`git describe` output, which may hold "+" or "/") into an image tag: at most
// 128 of [A-Za-z0-9_.-], not starting with "." or "-".
func Tag(version string) string {
	t := strings.TrimLeft(notInTag.ReplaceAllString(version, "-"), ".-")
	if len(t) > 128 {
		t = t[:128]
	}
	if t == "" {
		t = "dev"
	}
	return t
}
