package main

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The player tests' browser: headless chromium, driven with chromedp.

// chromiumPath is the chromium the player tests drive (make browser installs it): without it
// they fail under CI=true and are skipped otherwise.
func chromiumPath(t *testing.T) string {
	t.Helper()
	exe, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is missing: make browser installs it")
		}
		t.Skip("no chromium on PATH (make browser): the player is not played in a browser")
	}
	return exe
}

// openBrowser starts chromium at exe for at most within and returns its first tab; the browser
// goes when the test ends (before what the test started earlier). extra adds flags.
func openBrowser(t *testing.T, exe string, within time.Duration, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	t.Cleanup(cancel)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("autoplay-policy", "no-user-gesture-required"))
	actx, acancel := chromedp.NewExecAllocator(ctx, append(opts, extra...)...)
	t.Cleanup(acancel)
	tab, tcancel := chromedp.NewContext(actx)
	t.Cleanup(tcancel)
	return tab
}
