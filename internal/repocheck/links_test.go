package repocheck

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The rule TestDocLinks enforces: the project's documentation never links outside the
// repository, since a clone is all a reader has. A link is a path relative to the Markdown file
// that names a file or directory of the repository (not one git ignores, such as bin/ or out/),
// optionally with a #fragment that names a heading (GitHub's anchors) of the Markdown file it
// points to. Allowed beyond that: the standards the code implements (RFCs), on the IETF's own
// sites, and URLs of the reader's own machine (127.0.0.1, localhost), which are instructions,
// not links. Text outside links must not name paths outside the repository either: a path
// starting with ../ must resolve, from the file's directory, to something in the repository,
// and no text names a build machine's absolute paths (/work/..., /home/...).

// standardsHosts are the external sites a link may point to.
var standardsHosts = []string{"www.rfc-editor.org", "rfc-editor.org", "datatracker.ietf.org"}

// skipDirs are directories whose Markdown is not the project's documentation.
var skipDirs = map[string]bool{
	".git": true, "bin": true, "out": true, ".duet": true, ".duet-loadtest": true,
	"testdata": true, "node_modules": true, "vendor": true,
}

// TestDocLinks checks every link in the project's Markdown files (README.md, docs/**, every
// package's README and notes) against the rule above.
func TestDocLinks(t *testing.T) {
	root := repoRoot(t)
	var docs []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (skipDirs[d.Name()] || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.EqualFold(filepath.Ext(path), ".md") {
			docs = append(docs, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(docs, filepath.Join(root, "README.md")) {
		t.Fatal("README.md not found")
	}
	anchors := map[string]map[string]bool{} // Markdown file → its anchors, read on demand
	anchorsOf := func(path string) map[string]bool {
		if a, ok := anchors[path]; ok {
			return a
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		anchors[path] = markdownAnchors(b)
		return anchors[path]
	}
	var targets []linkTarget
	for _, doc := range docs {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, doc)
		for _, l := range markdownLinks(b) {
			where := fmt.Sprintf("%s:%d: link %q", filepath.ToSlash(rel), l.line, l.target)
			target, problem := resolveLink(root, doc, l.target)
			switch {
			case problem != "":
				t.Errorf("%s: %s", where, problem)
			case target.path == "":
				// an allowed URL
			default:
				if target.fragment != "" && strings.EqualFold(filepath.Ext(target.path), ".md") &&
					!anchorsOf(target.path)[target.fragment] {
					t.Errorf("%s: no heading or anchor #%s in %s", where, target.fragment, target.rel)
				}
				target.where = where
				targets = append(targets, target)
			}
		}
		for _, m := range outsidePaths(root, doc, b) {
			t.Errorf("%s:%d: %q names a path outside the repository, which a clone does not have", filepath.ToSlash(rel), m.line, m.target)
		}
	}
	checkNotIgnored(t, root, targets)
}

type link struct {
	line   int
	target string
}

type linkTarget struct {
	path, rel, fragment, where string
}

var (
	// [text](target "title") and ![alt](target), target optionally in <>.
	inlineLink = regexp.MustCompile(`\]\(\s*(<[^>]*>|[^()\s]*(?:\([^()\s]*\)[^()\s]*)*)(?:\s+(?:"[^"]*"|'[^']*'|\([^)]*\)))?\s*\)`)
	// [label]: target
	refDefinition = regexp.MustCompile(`^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)`)
	// <scheme:...> autolinks
	autoLink = regexp.MustCompile(`<([A-Za-z][A-Za-z0-9+.-]{1,31}:[^<>\s]*)>`)
	// bare URLs, which GitHub links too
	bareURL = regexp.MustCompile(`\b(?:https?://|www\.)[^\s<>]*[^\s<>.,:;"')\]*_~?!]`)
	// a fence opening or closing a code block
	fence = regexp.MustCompile("^ {0,3}(```+|~~~+)")
)

// markdownLinks returns the link targets of a Markdown document, outside code blocks and code
// spans: inline links and images, reference definitions, autolinks and bare URLs.
func markdownLinks(doc []byte) []link {
	var links []link
	for i, line := range proseLines(doc) {
		if line == "" {
			continue
		}
		add := func(target string) {
			links = append(links, link{line: i + 1, target: strings.TrimSuffix(strings.TrimPrefix(target, "<"), ">")})
		}
		if m := refDefinition.FindStringSubmatch(line); m != nil {
			add(m[1])
			continue
		}
		for _, m := range inlineLink.FindAllStringSubmatch(line, -1) {
			add(m[1])
		}
		rest := inlineLink.ReplaceAllString(line, "]")
		for _, m := range autoLink.FindAllStringSubmatch(rest, -1) {
			add(m[1])
		}
		rest = autoLink.ReplaceAllString(rest, "")
		for _, m := range bareURL.FindAllString(rest, -1) {
			add(m)
		}
	}
	return links
}

// proseLines returns doc's lines with code blocks emptied and code spans blanked, so that
// what is left is what Markdown renders as links.
func proseLines(doc []byte) []string {
	var lines []string
	inCode := ""
	sc := bufio.NewScanner(bytes.NewReader(doc))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := fence.FindStringSubmatch(line); m != nil {
			switch {
			case inCode == "":
				inCode = m[1]
			case strings.HasPrefix(m[1], inCode[:1]) && len(m[1]) >= len(inCode):
				inCode = ""
			}
			lines = append(lines, "")
			continue
		}
		// Indented code blocks are read as prose: in this project's Markdown, indented lines
		// are list items' continuations, and reading code as prose only adds checks.
		if inCode != "" {
			lines = append(lines, "")
			continue
		}
		lines = append(lines, blankCodeSpans(line))
	}
	return lines
}

// blankCodeSpans replaces each code span (a run of n backticks up to the next run of exactly n)
// with spaces.
func blankCodeSpans(line string) string {
	b := []byte(line)
	for i := 0; i < len(b); {
		if b[i] != '`' {
			i++
			continue
		}
		n := 0
		for i+n < len(b) && b[i+n] == '`' {
			n++
		}
		end := -1
		for j := i + n; j < len(b); {
			if b[j] != '`' {
				j++
				continue
			}
			m := 0
			for j+m < len(b) && b[j+m] == '`' {
				m++
			}
			if m == n {
				end = j + m
				break
			}
			j += m
		}
		if end < 0 {
			i += n
			continue
		}
		for k := i; k < end; k++ {
			b[k] = ' '
		}
		i = end
	}
	return string(b)
}

// resolveLink checks one link target of the Markdown file doc. It returns the repository file
// it names, an empty target for an allowed URL, or the problem.
func resolveLink(root, doc, raw string) (linkTarget, string) {
	if raw == "" {
		return linkTarget{}, "empty link"
	}
	u, err := url.Parse(raw)
	if err != nil {
		return linkTarget{}, fmt.Sprintf("not a URL: %v", err)
	}
	if strings.HasPrefix(raw, "www.") {
		u = &url.URL{Scheme: "https", Host: strings.SplitN(raw, "/", 2)[0]}
	}
	if u.Scheme != "" || u.Host != "" {
		host := u.Hostname()
		switch {
		case (u.Scheme == "http" || u.Scheme == "https") && slices.Contains(standardsHosts, host):
			return linkTarget{}, ""
		case (u.Scheme == "http" || u.Scheme == "https") && (host == "localhost" || strings.HasPrefix(host, "127.") || host == "::1"):
			return linkTarget{}, ""
		default:
			return linkTarget{}, "links outside the repository (the docs link only to the repository's own files, and to RFCs)"
		}
	}
	if strings.HasPrefix(u.Path, "/") {
		return linkTarget{}, "an absolute path: link relative to the file, so that the link works in a clone"
	}
	path := doc
	if u.Path != "" {
		path = filepath.Join(filepath.Dir(doc), filepath.FromSlash(u.Path))
	}
	rel, err := filepath.Rel(root, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return linkTarget{}, "leaves the repository"
	}
	if _, err := os.Stat(path); err != nil {
		return linkTarget{}, fmt.Sprintf("%s does not exist", filepath.ToSlash(rel))
	}
	return linkTarget{path: path, rel: filepath.ToSlash(rel), fragment: u.Fragment}, ""
}

// checkNotIgnored fails on link targets git ignores (build outputs, local state): they exist
// here but not in a clone.
func checkNotIgnored(t *testing.T, root string, targets []linkTarget) {
	t.Helper()
	if len(targets) == 0 {
		return
	}
	var in bytes.Buffer
	for _, tg := range targets {
		in.WriteString(tg.rel + "\n")
	}
	ignored := map[string]bool{}
	for _, p := range strings.Split(string(git(t, root, in.Bytes(), "check-ignore", "--stdin")), "\n") {
		ignored[p] = true
	}
	for _, tg := range targets {
		if ignored[tg.rel] {
			t.Errorf("%s: %s is ignored by git, so a clone does not have it", tg.where, tg.rel)
		}
	}
}

var (
	atxHeading   = regexp.MustCompile(`^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$`)
	setextLine   = regexp.MustCompile(`^ {0,3}(=+|-+)\s*$`)
	htmlAnchor   = regexp.MustCompile(`<a\s+(?:name|id)="([^"]+)"`)
	mdLinkText   = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
	notSlugChars = regexp.MustCompile(`[^\p{L}\p{N}\p{M}\p{Pc} -]`)
)

// markdownAnchors returns the fragments a Markdown document answers to: GitHub's anchors for
// its headings (lower case, punctuation dropped, spaces as hyphens, -1, -2 ... for repeats) and
// explicit <a name|id="...">.
func markdownAnchors(doc []byte) map[string]bool {
	anchors := map[string]bool{}
	count := map[string]int{}
	addHeading := func(text string) {
		slug := headingSlug(text)
		if n := count[slug]; n > 0 {
			anchors[fmt.Sprintf("%s-%d", slug, n)] = true
		} else {
			anchors[slug] = true
		}
		count[slug]++
	}
	raw := strings.Split(string(doc), "\n")
	lines := proseLines(doc)
	for i, line := range lines {
		for _, m := range htmlAnchor.FindAllStringSubmatch(raw[i], -1) {
			anchors[m[1]] = true
		}
		if line == "" {
			continue
		}
		if m := atxHeading.FindStringSubmatch(raw[i]); m != nil {
			addHeading(m[1])
			continue
		}
		if i+1 < len(lines) && lines[i+1] != "" && setextLine.MatchString(lines[i+1]) &&
			strings.TrimSpace(line) != "" && !setextLine.MatchString(line) && !strings.HasPrefix(strings.TrimSpace(line), "|") {
			addHeading(raw[i])
		}
	}
	return anchors
}

func headingSlug(text string) string {
	text = mdLinkText.ReplaceAllString(strings.TrimSpace(text), "$1")
	text = strings.NewReplacer("`", "", "*", "").Replace(text)
	text = notSlugChars.ReplaceAllString(strings.ToLower(text), "")
	return strings.ReplaceAll(text, " ", "-")
}

var (
	// a relative path that climbs: ../x, ../../x/y
	climbingPath = regexp.MustCompile(`(?:^|[^\w./-])((?:\.\./)+[\w.-][\w./-]*)`)
	// a build machine's absolute path
	machinePath = regexp.MustCompile(`(?:^|[\s(\x60'"=:])(/(?:work|home|Users)/[\w./-]*[\w/-])`)
)

// outsidePaths returns the paths doc's text names (code included) that are outside the
// repository: ../ paths that leave it or name nothing in it, and absolute paths of a machine.
func outsidePaths(root, doc string, b []byte) []link {
	var out []link
	for i, line := range strings.Split(string(b), "\n") {
		for _, m := range climbingPath.FindAllStringSubmatch(line, -1) {
			p := filepath.Join(filepath.Dir(doc), filepath.FromSlash(strings.TrimRight(m[1], ".")))
			rel, err := filepath.Rel(root, p)
			if err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
				if _, err := os.Stat(p); err == nil {
					continue
				}
			}
			out = append(out, link{line: i + 1, target: m[1]})
		}
		for _, m := range machinePath.FindAllStringSubmatch(line, -1) {
			out = append(out, link{line: i + 1, target: m[1]})
		}
	}
	return out
}
