// Package upload puts local files and folders into a region's bucket, the way `duet upload`
// does: Plan walks the paths into items (local file, key, kind, headers), Run compares them with
// the bucket (size and ETag, so unchanged files are skipped) and uploads the rest with bounded
// file and part parallelism, multipart for large files. A multipart upload that fails or is
// cancelled is aborted, so no half object is ever visible or billed. Progress goes through the
// Progress interface, so the CLI draws bars and this package stays silent.
package upload

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"
)

// Defaults for Config.
const (
	DefaultFiles     = 4
	DefaultParts     = 4
	DefaultPartSize  = 16 << 20
	MinPartSize      = 5 << 20 // S3's smallest part (except the last)
	MaxPartSize      = 5 << 30
	SurrogateKeyMeta = "surrogate-key" // x-amz-meta-surrogate-key, read by the edge's S3 origin
)

// Config says how to upload. The zero value (plus a bucket) works.
type Config struct {
	// Bucket receives the objects. Required.
	Bucket string
	// Prefix is prepended to every key: "vod/abc" puts dir/a.ts at vod/abc/a.ts. Slashes at either
	// end do not matter.
	Prefix string
	// Tags become the objects' surrogate keys (metadata surrogate-key, space-separated), which
	// `duet purge tag` removes together.
	Tags []string
	// Files is how many files upload at once. Zero means 4.
	Files int
	// Parts is how many parts of one large file upload at once. Zero means 4.
	Parts int
	// PartSize is the multipart part size in bytes, and files of at least this size upload in
	// parts. Zero means 16 MiB; at least 5 MiB. It grows for files that would need more than
	// 10,000 parts.
	PartSize int64
	// ContentType, when set, is every object's Content-Type instead of the one by extension.
	ContentType string
	// CacheControl, when set, is every object's Cache-Control; CacheControlByKind overrides one
	// kind's default. Both win over the defaults (see DefaultCacheControl).
	CacheControl       string
	CacheControlByKind map[Kind]string
	// Hidden includes dotfiles and dot-folders found inside walked folders.
	Hidden bool
	// Force uploads every file, even unchanged ones (after changing headers or tags).
	Force bool
	// DryRun plans and compares but uploads nothing.
	DryRun bool
}

func (c *Config) setDefaults() error {
	if c.Files == 0 {
		c.Files = DefaultFiles
	}
	if c.Parts == 0 {
		c.Parts = DefaultParts
	}
	if c.PartSize == 0 {
		c.PartSize = DefaultPartSize
	}
	switch {
	case c.Bucket == "":
		return fmt.Errorf("%w: no bucket", ErrInvalidConfig)
	case c.Files < 0 || c.Files > 256:
		return fmt.Errorf("%w: files %d: want 1 to 256 files at once", ErrInvalidConfig, c.Files)
	case c.Parts < 0 || c.Parts > 256:
		return fmt.Errorf("%w: parts %d: want 1 to 256 parts at once", ErrInvalidConfig, c.Parts)
	case c.PartSize < MinPartSize || c.PartSize > MaxPartSize:
		return fmt.Errorf("%w: part size %d: want 5 MiB to 5 GiB", ErrInvalidConfig, c.PartSize)
	}
	for _, t := range c.Tags {
		if t == "" || strings.ContainsAny(t, " \t\r\n") {
			return fmt.Errorf("%w: tag %q: a tag is one word without spaces", ErrInvalidConfig, t)
		}
	}
	return nil
}

// headers returns an item's Content-Type and Cache-Control.
func (c Config) headers(it Item, local string) (string, string) {
	ct := c.ContentType
	if ct == "" {
		ct = ContentType(it.Key)
	}
	cc := c.CacheControlByKind[it.Kind]
	if cc == "" {
		cc = c.CacheControl
	}
	if cc == "" {
		var head []byte
		if it.Kind == KindPlaylist {
			head = readHead(local, it.Size)
		}
		cc = DefaultCacheControl(it.Kind, it.Key, head)
	}
	return ct, cc
}

// Progress receives what a run does. Run calls it from several goroutines at once, so
// implementations must be safe for concurrent use.
type Progress interface {
	// Begin is called once, after comparing, with the bytes and files that will upload.
	Begin(files int, bytes int64)
	// Started is called when an item starts uploading.
	Started(it Item)
	// Advanced is called as the bucket acknowledges n more bytes of it (a whole small file, or
	// one part of a large one).
	Advanced(it Item, n int64)
	// Finished is called once per item: uploaded, skipped or failed (it.Action and it.Err say).
	Finished(it Item)
}

// Result is what a run did.
type Result struct {
	Planned
	// Uploaded, Skipped and Failed count Items by outcome; Bytes is what was uploaded.
	Uploaded, Skipped, Failed int
	Bytes                     int64
	Elapsed                   time.Duration
}

// FailedItems returns the items that failed, in plan order.
func (r Result) FailedItems() []Item {
	var out []Item
	for _, it := range r.Items {
		if it.Action == ActionFail {
			out = append(out, it)
		}
	}
	return out
}

// API is the S3 operations an Uploader uses; *s3.Client has them.
type API interface {
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error)
	UploadPart(ctx context.Context, in *s3.UploadPartInput, optFns ...func(*s3.Options)) (*s3.UploadPartOutput, error)
	CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error)
	AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
}

var _ API = (*s3.Client)(nil)

// Uploader uploads into one bucket.
type Uploader struct {
	cfg Config
	api API
}

// New validates cfg and returns an Uploader that talks to the bucket through api.
func New(cfg Config, api API) (*Uploader, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if api == nil {
		return nil, fmt.Errorf("%w: no S3 client", ErrInvalidConfig)
	}
	return &Uploader{cfg: cfg, api: api}, nil
}

// Run plans paths, compares them with the bucket and uploads what changed (nothing with
// DryRun). Files that fail are in the result with their reason; the others still upload. The
// error is for what stops the whole run: a cancelled ctx, or a bucket listing that fails. p may
// be nil.
func (u *Uploader) Run(ctx context.Context, paths []string, p Progress) (Result, error) {
	if p == nil {
		p = nopProgress{}
	}
	start := time.Now()
	planned, err := Plan(ctx, u.cfg, paths)
	res := Result{Planned: planned}
	if err != nil {
		return res, err
	}
	remote, err := u.list(ctx, planned.Items)
	if err != nil {
		return res, err
	}
	items := res.Items
	// Compare, then upload, one goroutine per file up to cfg.Files. The comparison hashes only
	// files whose size matches an object's, so a first upload reads each file once.
	var mu sync.Mutex // guards res counters
	var files int
	var bytes int64
	for _, it := range items {
		if it.Action != ActionFail {
			files++
			bytes += it.Size
		}
	}
	p.Begin(files, bytes) // an upper bound until the comparison says what is unchanged
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(u.cfg.Files)
	for i := range items {
		it := &items[i]
		if it.Action == ActionFail {
			p.Finished(*it)
			continue
		}
		g.Go(func() error {
			u.one(gctx, it, remote, p)
			if it.Action == ActionUpload && !u.cfg.DryRun {
				mu.Lock()
				res.Bytes += it.Size
				mu.Unlock()
			}
			p.Finished(*it)
			return nil
		})
	}
	_ = g.Wait()
	for _, it := range items {
		switch it.Action {
		case ActionUpload:
			res.Uploaded++
		case ActionSkip:
			res.Skipped++
		case ActionFail:
			res.Failed++
		}
	}
	res.Elapsed = time.Since(start)
	return res, ctx.Err()
}

// one compares one item with the bucket and uploads it when it changed.
func (u *Uploader) one(ctx context.Context, it *Item, remote map[string]object, p Progress) {
	fail := func(err error) { it.Action, it.Err = ActionFail, err }
	if err := ctx.Err(); err != nil {
		fail(fmt.Errorf("not uploaded: %w", err))
		return
	}
	it.Action, it.Reason = ActionUpload, "new"
	if o, ok := remote[it.Key]; ok && !u.cfg.Force {
		it.Reason = "size differs"
		if o.size == it.Size {
			same, err := sameETag(ctx, it.Path, it.Size, o.etag, u.cfg.PartSize)
			if err != nil {
				fail(err)
				return
			}
			it.Action, it.Reason = ActionSkip, "unchanged"
			if !same {
				it.Action, it.Reason = ActionUpload, "content differs"
			}
		}
	} else if ok {
		it.Reason = "forced"
	}
	if it.Action == ActionSkip || u.cfg.DryRun {
		return
	}
	p.Started(*it)
	if err := u.put(ctx, *it, p); err != nil {
		fail(err)
	}
}

// object is what the listing says about one key.
type object struct {
	size int64
	etag string
}

// list returns the bucket's objects under the longest folder shared by all items' keys (one
// listing, however many files).
func (u *Uploader) list(ctx context.Context, items []Item) (map[string]object, error) {
	out := map[string]object{}
	if u.cfg.Force && !u.cfg.DryRun {
		return out, nil
	}
	var keys []string
	for _, it := range items {
		if it.Action != ActionFail {
			keys = append(keys, it.Key)
		}
	}
	if len(keys) == 0 {
		return out, nil
	}
	prefix := commonFolder(keys)
	in := &s3.ListObjectsV2Input{Bucket: aws.String(u.cfg.Bucket), Prefix: aws.String(prefix)}
	for pg := s3.NewListObjectsV2Paginator(u.api, in); pg.HasMorePages(); {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list s3://%s/%s to find unchanged files: %w", u.cfg.Bucket, prefix, err)
		}
		for _, o := range page.Contents {
			out[aws.ToString(o.Key)] = object{size: aws.ToInt64(o.Size), etag: aws.ToString(o.ETag)}
		}
	}
	return out, nil
}

// commonFolder is the longest "a/b/" that starts every key.
func commonFolder(keys []string) string {
	slices.Sort(keys)
	first, last := keys[0], keys[len(keys)-1]
	n := 0
	for n < len(first) && n < len(last) && first[n] == last[n] {
		n++
	}
	if i := strings.LastIndexByte(first[:n], '/'); i >= 0 {
		return first[:i+1]
	}
	return ""
}

// put uploads one file: one PutObject below the part size, multipart at or above it.
func (u *Uploader) put(ctx context.Context, it Item, p Progress) error {
	f, err := os.Open(it.Path)
	if err != nil {
		return fmt.Errorf("open %s: %w", it.Path, err)
	}
	defer f.Close()
	// The file may have changed since it was planned; upload what it holds now, whole.
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", it.Path, err)
	}
	if fi.Size() != it.Size {
		return fmt.Errorf("%s changed size while uploading (%d -> %d bytes): upload it again", it.Path, it.Size, fi.Size())
	}
	var meta map[string]string
	if len(u.cfg.Tags) > 0 {
		meta = map[string]string{SurrogateKeyMeta: strings.Join(u.cfg.Tags, " ")}
	}
	if it.Size < u.cfg.PartSize {
		_, err := u.api.PutObject(ctx, &s3.PutObjectInput{
			Bucket:        aws.String(u.cfg.Bucket),
			Key:           aws.String(it.Key),
			Body:          newSection(f, 0, it.Size),
			ContentLength: aws.Int64(it.Size),
			ContentType:   aws.String(it.ContentType),
			CacheControl:  aws.String(it.CacheControl),
			Metadata:      meta,
		})
		if err != nil {
			return fmt.Errorf("upload %s to s3://%s/%s: %w", it.Path, u.cfg.Bucket, it.Key, err)
		}
		p.Advanced(it, it.Size)
		return nil
	}
	return u.multipart(ctx, f, it, meta, p)
}

// multipart uploads f in parts, cfg.Parts at a time, and aborts the upload on any failure or
// cancellation, so the key never shows a partial object and no parts are left stored.
func (u *Uploader) multipart(ctx context.Context, f *os.File, it Item, meta map[string]string, p Progress) (err error) {
	where := fmt.Sprintf("s3://%s/%s", u.cfg.Bucket, it.Key)
	created, err := u.api.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:       aws.String(u.cfg.Bucket),
		Key:          aws.String(it.Key),
		ContentType:  aws.String(it.ContentType),
		CacheControl: aws.String(it.CacheControl),
		Metadata:     meta,
	})
	if err != nil {
		return fmt.Errorf("upload %s to %s: start multipart upload: %w", it.Path, where, err)
	}
	id := created.UploadId
	defer func() {
		if err == nil {
			return
		}
		// The run's context may be the reason: abort on a detached one, bounded.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, aerr := u.api.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
			Bucket: aws.String(u.cfg.Bucket), Key: aws.String(it.Key), UploadId: id,
		}); aerr != nil {
			err = errors.Join(err, fmt.Errorf("abort the multipart upload %s of %s (its parts stay stored until the bucket's lifecycle removes them): %w", aws.ToString(id), where, aerr))
		}
	}()
	ps := partSizeFor(it.Size, u.cfg.PartSize)
	n := int((it.Size + ps - 1) / ps)
	parts := make([]s3Part, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(u.cfg.Parts)
	for i := range n {
		off := int64(i) * ps
		size := min(ps, it.Size-off)
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			out, err := u.api.UploadPart(gctx, &s3.UploadPartInput{
				Bucket:        aws.String(u.cfg.Bucket),
				Key:           aws.String(it.Key),
				UploadId:      id,
				PartNumber:    aws.Int32(int32(i + 1)),
				Body:          newSection(f, off, size),
				ContentLength: aws.Int64(size),
			})
			if err != nil {
				return fmt.Errorf("part %d of %d: %w", i+1, n, err)
			}
			parts[i] = s3Part{num: int32(i + 1), etag: aws.ToString(out.ETag)}
			p.Advanced(it, size)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("upload %s to %s: %w", it.Path, where, err)
	}
	done := make([]s3types.CompletedPart, n)
	for i, pt := range parts {
		done[i] = s3types.CompletedPart{PartNumber: aws.Int32(pt.num), ETag: aws.String(pt.etag)}
	}
	if _, err := u.api.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(u.cfg.Bucket),
		Key:             aws.String(it.Key),
		UploadId:        id,
		MultipartUpload: &s3types.CompletedMultipartUpload{Parts: done},
	}); err != nil {
		return fmt.Errorf("upload %s to %s: complete multipart upload: %w", it.Path, where, err)
	}
	return nil
}

type s3Part struct {
	num  int32
	etag string
}

type nopProgress struct{}

func (nopProgress) Begin(int, int64)     {}
func (nopProgress) Started(Item)         {}
func (nopProgress) Advanced(Item, int64) {}
func (nopProgress) Finished(Item)        {}
