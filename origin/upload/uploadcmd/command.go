// Package uploadcmd is the `duet upload` command: its settings and flags, progress bars on a
// terminal (plain lines elsewhere), and the summary. The uploading itself is package upload.
package uploadcmd

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/duetcdn/duet/edge"
	"github.com/duetcdn/duet/internal/config"
	"github.com/duetcdn/duet/origin/s3conf"
	"github.com/duetcdn/duet/origin/upload"
)

// Settings is what `duet upload` reads from --config, DUET_UPLOAD_* and the matching flags.
type Settings struct {
	// Region is the region to upload to when --region is not given (and there is more than one).
	Region string `yaml:"region"`
	// Regions are the regions' buckets.
	Regions []upload.Region `yaml:"regions"`
	// Files is how many files upload at once.
	Files int `yaml:"files"`
	// Parts is how many parts of one large file upload at once.
	Parts int `yaml:"parts"`
	// PartSize is the multipart part size; files at least this big upload in parts.
	PartSize edge.ByteSize `yaml:"part_size"`
}

// DefaultSettings is `duet upload`'s defaults.
func DefaultSettings() Settings {
	return Settings{Files: upload.DefaultFiles, Parts: upload.DefaultParts, PartSize: upload.DefaultPartSize}
}

// Command is `duet upload`. logger builds the logger once the flags are parsed; environ is the
// environment it reads DUET_UPLOAD_* and the AWS credentials from.
func Command(logger func() (*slog.Logger, error), stdout io.Writer, environ []string) *cobra.Command {
	set := DefaultSettings()
	cmd := &cobra.Command{
		Use:   "upload PATH... --region R [--prefix P] [--tag KEY...]",
		Short: "Upload files and folders to a region's bucket",
		Long: `Upload files and folders to a region's bucket: a file goes to PREFIX/its name, a
folder's files to PREFIX/their path below the folder. Large files upload in parallel parts,
several files at once. Files already in the bucket with the same size and ETag are skipped.

  duet upload ./out/abc --region eu --prefix vod/abc --tag show-abc
  duet upload ./out/abc --endpoint http://127.0.0.1:9000 --bucket media --prefix vod/abc --dry-run

Regions come from --config (YAML):

  regions:
    - {name: eu, endpoint: http://minio-eu:9000, bucket: media, path_style: true,
       access_key: ..., secret_key: ...}

or, for one bucket, from --endpoint and --bucket with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY
(or the AWS credential chain). Settings also read DUET_UPLOAD_REGION, DUET_UPLOAD_FILES,
DUET_UPLOAD_PARTS and DUET_UPLOAD_PART_SIZE.

Headers by kind (each overridable): playlists .m3u8/.mpd get "max-age=2" when live,
"max-age=86400" when VOD (#EXT-X-ENDLIST, PLAYLIST-TYPE:VOD, a static MPD), "max-age=60" when
multivariant; segments and init segments "max-age=31536000, immutable"; images a day; other
files an hour. Dotfiles inside folders are left out unless --hidden. Headers and tags are not
compared when skipping: after changing them, pass --force.`,
		Args: cobra.MinimumNArgs(1),
	}
	ld := config.NewLoader("upload", &set, cmd.Flags())
	_ = cmd.Flags().MarkHidden("regions") // a list of structs: YAML only
	for name, usage := range map[string]string{
		"region":    "region to upload to, from the config's regions (default: the only one)",
		"files":     "files uploading at once",
		"parts":     "parts of one large file uploading at once",
		"part_size": "multipart part size; files this big or bigger upload in parts",
	} {
		fl := cmd.Flags().Lookup(name)
		fl.Usage = usage + " (" + fl.Usage + ")"
	}
	f := cmd.Flags()
	var (
		file, prefix, endpoint, bucket, s3Region, contentType, cacheControl string
		tags                                                                []string
		pathStyle, dryRun, force, hidden, plain                             bool
		byKind                                                              = map[upload.Kind]*string{}
	)
	f.StringVarP(&file, "config", "c", "", "YAML config file with the regions (default: none; one bucket from --endpoint and --bucket)")
	f.StringVar(&prefix, "prefix", "", "key prefix (folder in the bucket), e.g. vod/abc (default: the bucket's root)")
	f.StringArrayVar(&tags, "tag", nil, "surrogate key, for purging with duet purge tag KEY (repeat for several; default: none)")
	f.StringVar(&endpoint, "endpoint", "", "S3 endpoint URL, for one bucket without --config, e.g. http://127.0.0.1:9000 (default: AWS S3)")
	f.StringVar(&bucket, "bucket", "", "bucket, for one bucket without --config (default: the --config region's)")
	f.StringVar(&s3Region, "s3-region", "", "the bucket's S3 region with --bucket (default us-east-1)")
	f.BoolVar(&pathStyle, "path-style", true, "path-style addressing with --endpoint (MinIO needs it)")
	f.BoolVar(&dryRun, "dry-run", false, "print what would upload and skip; change nothing")
	f.BoolVar(&force, "force", false, "upload unchanged files too (after changing headers or tags)")
	f.BoolVar(&hidden, "hidden", false, "include dotfiles and dot-folders inside folders")
	f.BoolVar(&plain, "plain", false, "plain lines instead of progress bars, even on a terminal")
	f.StringVar(&contentType, "content-type", "", "Content-Type of every file (default: by extension)")
	f.StringVar(&cacheControl, "cache-control", "", "Cache-Control of every file (default: by kind)")
	for _, k := range upload.Kinds {
		byKind[k] = f.String("cache-control-"+k.String(), "", "Cache-Control of "+k.String()+" files (default: by kind, see above)")
	}
	cmd.RunE = func(cmd *cobra.Command, paths []string) error {
		if err := ld.Load(file, environ); err != nil {
			return err
		}
		log, err := logger()
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		var region upload.Region
		switch {
		case bucket != "":
			region = upload.Region{Name: "--bucket", Config: s3conf.Config{Endpoint: endpoint, Bucket: bucket, S3Region: s3Region,
				PathStyle: new(pathStyle && endpoint != "")}}
			if u, err := url.Parse(endpoint); err == nil && u.Host != "" {
				region.Name = u.Host
			}
		case endpoint != "":
			return errors.New("--endpoint needs --bucket")
		default:
			if region, err = upload.FindRegion(set.Regions, set.Region); err != nil {
				return err
			}
		}
		cfg := upload.Config{
			Bucket: region.Bucket, Prefix: prefix, Tags: tags, Files: set.Files, Parts: set.Parts,
			PartSize: int64(set.PartSize), ContentType: contentType, CacheControl: cacheControl,
			CacheControlByKind: map[upload.Kind]string{}, Hidden: hidden, Force: force, DryRun: dryRun,
		}
		for k, v := range byKind {
			if *v != "" {
				cfg.CacheControlByKind[k] = *v
			}
		}
		if _, err := upload.New(cfg, noAPI{}); err != nil { // bad flags before any network
			return err
		}
		client, err := upload.NewClient(ctx, region, environ, cfg.Files*cfg.Parts)
		if err != nil {
			return err
		}
		if err := upload.CheckBucket(ctx, client, region); err != nil {
			return err
		}
		u, err := upload.New(cfg, client)
		if err != nil {
			return err
		}
		log.Debug("upload", "region", region.Name, "bucket", region.Bucket, "prefix", prefix, "files", cfg.Files, "parts", cfg.Parts)
		var prog progressUI
		if dryRun {
			prog = &lines{w: stdout, dry: true, big: -1}
		} else if isTerminal(stdout) && !plain {
			prog = newBars(stdout, cfg.PartSize)
		} else {
			prog = &lines{w: stdout, big: cfg.PartSize}
		}
		res, runErr := u.Run(ctx, paths, prog)
		prog.Close()
		printSummary(stdout, res, region, dryRun)
		if runErr != nil {
			return fmt.Errorf("upload to region %s stopped: %w", region.Name, runErr)
		}
		if failed := res.FailedItems(); len(failed) > 0 {
			names := make([]string, len(failed))
			for i, it := range failed {
				names[i] = it.Path
			}
			return fmt.Errorf("%d of %d files failed: %s", len(failed), len(res.Items), strings.Join(names, ", "))
		}
		return nil
	}
	return cmd
}

// noAPI lets upload.New validate the settings before a client exists; it is never called.
type noAPI struct{ upload.API }
