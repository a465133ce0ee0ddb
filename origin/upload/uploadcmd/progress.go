package uploadcmd

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/duetcdn/duet/origin/upload"
)

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
