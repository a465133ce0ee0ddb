package upload

import (
	"context"
	"crypto/md5" //nolint:gosec // S3's ETag is an MD5; it detects change, it does not secure anything
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// How unchanged files are found (what `aws s3 sync` and `s3cmd` do, without extra metadata): the
// bucket's listing gives each object's size and ETag. A different size means changed. With the
// same size, the file's ETag is computed the way S3 computes it and compared:
//   - a plain ETag is the MD5 of the bytes;
//   - a multipart ETag "X-N" is the MD5 of the N parts' binary MD5s, followed by -N. It depends on
//     the part size, so the local file is hashed with every common part size (ours first, then
//     5, 8, 16, 32, 64, 128 MiB, as AWS CLI, mc, rclone and the SDKs use) that gives exactly N parts.
//
// An ETag in any other form (SSE-KMS or SSE-C objects, whose ETag is not an MD5) never matches, so
// such a file is uploaded again: correct, only slower. Headers and tags are not compared: after
// changing --cache-control or --tag, pass --force.

// commonPartSizes are the part sizes other tools use, tried after ours.
var commonPartSizes = []int64{5 << 20, 8 << 20, 16 << 20, 32 << 20, 64 << 20, 128 << 20}

// maxParts is S3's limit on parts per upload.
const maxParts = 10000

// partSizeFor returns the part size used for a file of size bytes: want, grown to a whole MiB
// when the file would need more than maxParts parts.
func partSizeFor(size, want int64) int64 {
	if size > want*maxParts {
		want = (size + maxParts - 1) / maxParts
		want = (want + 1<<20 - 1) &^ (1<<20 - 1)
	}
	return want
}

// sameETag reports whether the local file at p (size bytes) has the remote ETag. partSize is what
// this uploader would use.
func sameETag(ctx context.Context, p string, size int64, etag string, partSize int64) (bool, error) {
	etag = strings.ToLower(strings.Trim(etag, `"`))
	sum, parts, multipart := strings.Cut(etag, "-")
	if len(sum) != 32 {
		return false, nil
	}
	if _, err := hex.DecodeString(sum); err != nil {
		return false, nil
	}
	if !multipart {
		got, err := fileETag(ctx, p, size, 0)
		return err == nil && got == etag, err
	}
	n, err := strconv.ParseInt(parts, 10, 64)
	if err != nil || n < 1 {
		return false, nil
	}
	tried := map[int64]bool{}
	for _, ps := range append([]int64{partSizeFor(size, partSize)}, commonPartSizes...) {
		if tried[ps] || (size+ps-1)/ps != n && !(size == 0 && n == 1) {
			continue
		}
		tried[ps] = true
		got, err := fileETag(ctx, p, size, ps)
		if err != nil {
			return false, err
		}
		if got == etag {
			return true, nil
		}
	}
	return false, nil
}

// fileETag computes the ETag S3 gives the file: the MD5 when partSize is 0, else the multipart
// form for that part size.
func fileETag(ctx context.Context, p string, size, partSize int64) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", p, err)
	}
	defer f.Close()
	if partSize == 0 {
		h := md5.New() //nolint:gosec // see above
		if _, err := io.Copy(h, ctxReader{ctx, f}); err != nil {
			return "", fmt.Errorf("hash %s: %w", p, err)
		}
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	outer := md5.New() //nolint:gosec // see above
	var n int64
	for off := int64(0); off < size || n == 0; off += partSize {
		h := md5.New() //nolint:gosec // see above
		if _, err := io.Copy(h, ctxReader{ctx, io.NewSectionReader(f, off, min(partSize, size-off))}); err != nil {
			return "", fmt.Errorf("hash %s: %w", p, err)
		}
		outer.Write(h.Sum(nil))
		n++
	}
	return hex.EncodeToString(outer.Sum(nil)) + "-" + strconv.FormatInt(n, 10), nil
}

// ctxReader stops a long hash when the run is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
