package uploadcmd

import (
	"fmt"
	"io"
	"time"

	"github.com/duetcdn/duet/origin/upload"
)

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
