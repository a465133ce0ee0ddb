package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/duetcdn/duet/edge"
	"github.com/duetcdn/duet/internal/config"
	"github.com/duetcdn/duet/origin/upload"
)

// uploadSettings is what `duet upload` reads from --config, DUET_UPLOAD_* and the matching flags.
type uploadSettings struct {
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

func uploadCommand(logger func() (*slog.Logger, error), stdout io.Writer, environ []string) *cobra.Command {
	set := uploadSettings{Files: upload.DefaultFiles, Parts: upload.DefaultParts, PartSize: upload.DefaultPartSize}
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
		"region":    "region to upload to, from the config's regions",
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
	f.StringVarP(&file, "config", "c", "", "YAML config file with the regions")
	f.StringVar(&prefix, "prefix", "", "key prefix (folder in the bucket), e.g. vod/abc")
	f.StringArrayVar(&tags, "tag", nil, "surrogate key, for purging with duet purge tag KEY (repeat for several)")
	f.StringVar(&endpoint, "endpoint", "", "S3 endpoint URL, for one bucket without --config (e.g. http://127.0.0.1:9000)")
	f.StringVar(&bucket, "bucket", "", "bucket, for one bucket without --config")
	f.StringVar(&s3Region, "s3-region", "", "the bucket's S3 region with --bucket (default us-east-1)")
	f.BoolVar(&pathStyle, "path-style", true, "path-style addressing with --endpoint (MinIO needs it)")
	f.BoolVar(&dryRun, "dry-run", false, "print what would upload and skip; change nothing")
	f.BoolVar(&force, "force", false, "upload unchanged files too (after changing headers or tags)")
	f.BoolVar(&hidden, "hidden", false, "include dotfiles and dot-folders inside folders")
	f.BoolVar(&plain, "plain", false, "plain lines instead of progress bars, even on a terminal")
	f.StringVar(&contentType, "content-type", "", "Content-Type of every file (default: by extension)")
	f.StringVar(&cacheControl, "cache-control", "", "Cache-Control of every file (default: by kind)")
	for _, k := range upload.Kinds {
		byKind[k] = f.String("cache-control-"+k.String(), "", "Cache-Control of "+k.String()+" files")
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
			region = upload.Region{Name: "--bucket", Endpoint: endpoint, Bucket: bucket, S3Region: s3Region, PathStyle: pathStyle && endpoint != ""}
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

// isTerminal: bars only on a terminal with a known width (a pty without a size draws nothing).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return false
	}
	width, _, err := term.GetSize(int(f.Fd()))
	return err == nil && width > 0
}

// progressUI is an upload.Progress that is closed when the run ends.
type progressUI interface {
	upload.Progress
	Close()
}

// lines prints one line per finished file: for logs, pipes and CI.
type lines struct {
	mu  sync.Mutex // guards w
	w   io.Writer
	dry bool
	big int64 // files at least this size (multipart) also get a line when they start; -1: none
}

func (l *lines) Begin(int, int64) {}
func (l *lines) Started(it upload.Item) {
	if l.big < 0 || it.Size < l.big {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "uploading %s %s in parts\n", it.Key, size(it.Size))
}
func (l *lines) Advanced(upload.Item, int64) {}
func (l *lines) Close()                      {}
func (l *lines) Finished(it upload.Item) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintln(l.w, itemLine(it, l.dry))
}

func itemLine(it upload.Item, dry bool) string {
	switch {
	case it.Action == upload.ActionFail:
		return "failed " + failure(it)
	case dry && it.Action == upload.ActionUpload:
		return fmt.Sprintf("would upload %s %s (%s; %s, %s)", it.Key, size(it.Size), it.Reason, it.ContentType, it.CacheControl)
	case dry:
		return fmt.Sprintf("would skip %s (%s)", it.Key, it.Reason)
	case it.Action == upload.ActionSkip:
		return fmt.Sprintf("skipped %s (%s)", it.Key, it.Reason)
	}
	return fmt.Sprintf("uploaded %s %s", it.Key, size(it.Size))
}

// failure is "PATH: reason", without saying the path twice when the reason names it.
func failure(it upload.Item) string {
	msg := fmt.Sprint(it.Err)
	if p := it.Path + ": "; strings.HasPrefix(msg, p) {
		msg = strings.TrimPrefix(msg, p)
	}
	return it.Path + ": " + msg
}

// bars draws a total bar (bytes, rate, ETA) and one bar per large file on a terminal; failures
// print above them.
type bars struct {
	p        *mpb.Progress
	big      int64 // files at least this size get their own bar
	mu       sync.Mutex
	total    *mpb.Bar            // guarded by mu until Begin has run
	want     int64               // bytes the total bar expects; guarded by mu
	done     map[string]int64    // bytes acknowledged per key; guarded by mu
	fileBars map[string]*mpb.Bar // guarded by mu
}

func newBars(w io.Writer, big int64, opts ...mpb.ContainerOption) *bars {
	opts = append([]mpb.ContainerOption{mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(150 * time.Millisecond)}, opts...)
	return &bars{p: mpb.New(opts...),
		big: big, done: map[string]int64{}, fileBars: map[string]*mpb.Bar{}}
}

func (b *bars) Begin(files int, bytes int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.want = bytes
	b.total = b.p.AddBar(max(bytes, 1),
		mpb.BarPriority(1<<30), // stays at the bottom
		mpb.PrependDecorators(decor.Name(fmt.Sprintf("total (%d files) ", files)), decor.Counters(decor.SizeB1024(0), "% .1f / % .1f")),
		mpb.AppendDecorators(decor.AverageSpeed(decor.SizeB1024(0), " % .1f"), decor.Name(" ETA "), decor.AverageETA(decor.ET_STYLE_GO)),
	)
}

func (b *bars) Started(it upload.Item) {
	if it.Size < b.big {
		return
	}
	bar := b.p.AddBar(it.Size, mpb.BarRemoveOnComplete(),
		mpb.PrependDecorators(decor.Name(shorten(it.Key, 40)+" "), decor.Counters(decor.SizeB1024(0), "% .1f / % .1f")),
		mpb.AppendDecorators(decor.AverageSpeed(decor.SizeB1024(0), " % .1f")),
	)
	b.mu.Lock()
	b.fileBars[it.Key] = bar
	b.mu.Unlock()
}

func (b *bars) Advanced(it upload.Item, n int64) {
	b.mu.Lock()
	b.done[it.Key] += n
	bar := b.fileBars[it.Key]
	b.mu.Unlock()
	b.total.IncrInt64(n)
	if bar != nil {
		bar.IncrInt64(n)
	}
}

func (b *bars) Finished(it upload.Item) {
	b.mu.Lock()
	bar := b.fileBars[it.Key]
	delete(b.fileBars, it.Key)
	if it.Action != upload.ActionUpload {
		// Skipped or failed: its bytes (or those not sent) no longer count towards the total.
		b.want -= it.Size - b.done[it.Key]
		b.total.SetTotal(max(b.want, 1), false)
	}
	b.mu.Unlock()
	if bar != nil {
		bar.Abort(true)
	}
	if it.Action == upload.ActionFail {
		_, _ = fmt.Fprintln(b.p, itemLine(it, false))
	}
}

func (b *bars) Close() {
	b.mu.Lock()
	if b.total != nil {
		b.total.SetTotal(-1, true) // complete at what was sent
	}
	for _, bar := range b.fileBars {
		bar.Abort(true)
	}
	b.mu.Unlock()
	b.p.Wait()
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return fmt.Sprintf("%-*s", n, s)
	}
	return "…" + s[len(s)-n+1:]
}

func printSummary(w io.Writer, res upload.Result, region upload.Region, dry bool) {
	secs := res.Elapsed.Seconds()
	if dry {
		var n int
		var bytes int64
		for _, it := range res.Items {
			if it.Action == upload.ActionUpload {
				n++
				bytes += it.Size
			}
		}
		fmt.Fprintf(w, "dry run, nothing changed: would upload %d files (%s) to s3://%s, skip %d unchanged; %d failed\n",
			n, size(bytes), region.Bucket, res.Skipped, res.Failed)
	} else {
		rate := 0.0
		if secs > 0 {
			rate = float64(res.Bytes) / (1 << 20) / secs
		}
		fmt.Fprintf(w, "uploaded %d files (%s) to s3://%s in %s, %.1f MiB/s; skipped %d unchanged; %d failed\n",
			res.Uploaded, size(res.Bytes), region.Bucket, res.Elapsed.Round(time.Millisecond), rate, res.Skipped, res.Failed)
	}
	if res.Hidden > 0 {
		fmt.Fprintf(w, "left out %d hidden files and folders (dotfiles); --hidden includes them\n", res.Hidden)
	}
	for _, d := range res.SymlinkedDirs {
		fmt.Fprintf(w, "not followed: %s is a symlink to a folder\n", d)
	}
	for _, it := range res.FailedItems() {
		fmt.Fprintln(w, "FAILED", failure(it))
	}
}

// size prints bytes as 1.2 MiB.
func size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
