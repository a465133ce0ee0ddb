// Command mkimage builds Duet's container image (`make image` runs it): a static duet binary for
// Linux, then an OCI image layout in OUT/image and a `docker load` tarball in OUT/image.tar,
// tagged ghcr.io/duetcdn/duet:VERSION. No Docker, no base image, no network. See package image.
//
//	go run ./internal/image/mkimage -version v0.1.0 -revision $(git rev-parse HEAD) -created 1700000000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/duetcdn/duet/internal/image"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	out := fs.String("out", "out", "directory the image layout (image/) and tarball (image.tar) are written to")
	version := fs.String("version", "", "the version `duet version` prints and the image's tag (required)")
	revision := fs.String("revision", "", "the commit, for the org.opencontainers.image.revision label")
	source := fs.String("source", "https://github.com/duetcdn/duet", "the repository, for the org.opencontainers.image.source label")
	created := fs.Int64("created", 0, "creation time of the image and its files, Unix seconds (the commit's time makes the image reproducible)")
	arch := fs.String("arch", "", "GOARCH of the image (default: this machine's)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *version == "" {
		return errors.New("-version is required")
	}
	tag := image.Tag(*version)
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	bin := filepath.Join(*out, "duet-linux")
	if err := image.BuildBinary(ctx, ".", bin, *arch, *version); err != nil {
		return err
	}
	img, err := image.Build(image.Config{
		Binary: bin, Arch: *arch, Version: *version, Revision: *revision, Source: *source,
		Created: time.Unix(*created, 0),
	})
	if err != nil {
		return err
	}
	layoutDir, tarPath := filepath.Join(*out, "image"), filepath.Join(*out, "image.tar")
	if err := image.WriteLayout(layoutDir, img, tag); err != nil {
		return err
	}
	if err := image.WriteTarball(tarPath, img, tag); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s:%s %s\n  OCI layout %s (skopeo copy oci:%s:%s docker://%s:%s)\n  tarball    %s (docker load -i %s)\n",
		image.Name, tag, digest, layoutDir, layoutDir, tag, image.Name, tag, tarPath, tarPath)
	return nil
}
