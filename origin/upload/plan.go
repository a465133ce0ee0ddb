package upload

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Action is what a run does, or would do, with one item.
type Action int

// The actions.
const (
	ActionUpload Action = iota // new, or changed since the last upload
	ActionSkip                 // the bucket already holds the same bytes
	ActionFail                 // could not be read or uploaded; Item.Err says why
)

func (a Action) String() string {
	switch a {
	case ActionSkip:
		return "skip"
	case ActionFail:
		return "fail"
	}
	return "upload"
}

// Item is one local file and the object it becomes.
type Item struct {
	// Path is the local file as the user named it (a walked folder's files are joined to it).
	Path string
	// Key is the object key: the prefix, then the file's path below the folder that was named
	// (or its base name, for a file named directly), with forward slashes.
	Key  string
	Size int64
	Kind Kind
	// ContentType and CacheControl are the headers the object gets.
	ContentType, CacheControl string
	// Action is filled in by Plan (ActionFail for unreadable paths) and Run (upload or skip).
	Action Action
	// Reason says why an item is skipped ("unchanged") or uploaded ("new", "size differs",
	// "content differs").
	Reason string
	// Err is why the item failed, when Action is ActionFail.
	Err error
}

// Planned is the result of walking the paths.
type Planned struct {
	Items []Item
	// Hidden counts dotfiles and dot-folders left out (Config.Hidden includes them).
	Hidden int
	// SymlinkedDirs lists symlinks to folders inside walked folders, which are not followed (a
	// loop would never end).
	SymlinkedDirs []string
}

// Plan walks paths into items: a file becomes prefix/base-name, a folder's files become
// prefix/their path below the folder. Symlinks to files are followed; symlinks to folders inside a
// walked folder are not. Dotfiles and dot-folders inside walked folders are left out unless
// cfg.Hidden. A path that cannot be read (missing, a dangling symlink, a FIFO) becomes a failed
// item; it does not stop the others. Two paths that map to one key fail the second.
func Plan(ctx context.Context, cfg Config, paths []string) (Planned, error) {
	var p Planned
	seen := map[string]string{} // key -> path
	prefix := cleanPrefix(cfg.Prefix)
	add := func(local, rel string) {
		it := Item{Path: local, Key: prefix + rel, Kind: Classify(rel)}
		fi, err := os.Stat(local) // follows symlinks
		switch {
		case err != nil:
			it.Action, it.Err = ActionFail, fmt.Errorf("read %s: %w", local, err)
		case !fi.Mode().IsRegular():
			it.Action, it.Err = ActionFail, fmt.Errorf("%s: %w (%s)", local, ErrNotRegular, fileType(fi))
		default:
			it.Size = fi.Size()
			if f, err := os.Open(local); err != nil {
				it.Action, it.Err = ActionFail, fmt.Errorf("open %s: %w", local, err)
			} else {
				f.Close()
			}
		}
		if other, dup := seen[it.Key]; dup && it.Err == nil {
			it.Action, it.Err = ActionFail, fmt.Errorf("%s: key %s is also the key of %s", local, it.Key, other)
		}
		if it.Err == nil {
			seen[it.Key] = local
			it.ContentType, it.CacheControl = cfg.headers(it, local)
		}
		p.Items = append(p.Items, it)
	}
	for _, root := range paths {
		if err := ctx.Err(); err != nil {
			return p, err
		}
		fi, err := os.Stat(root)
		if err != nil || !fi.IsDir() {
			add(root, path.Base(filepath.ToSlash(filepath.Clean(root))))
			continue
		}
		err = filepath.WalkDir(root, func(local string, d fs.DirEntry, err error) error {
			if cerr := ctx.Err(); cerr != nil {
				return cerr
			}
			rel, _ := filepath.Rel(root, local)
			rel = filepath.ToSlash(rel)
			if err != nil {
				if local == root {
					return err
				}
				p.Items = append(p.Items, Item{Path: local, Key: prefix + rel, Action: ActionFail, Err: fmt.Errorf("read %s: %w", local, err)})
				if d != nil && d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			if local == root {
				return nil
			}
			if !cfg.Hidden && strings.HasPrefix(d.Name(), ".") {
				p.Hidden++
				if d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			if d.IsDir() {
				return nil
			}
			if d.Type()&fs.ModeSymlink != 0 {
				if t, err := os.Stat(local); err == nil && t.IsDir() {
					p.SymlinkedDirs = append(p.SymlinkedDirs, local)
					return nil
				}
			}
			add(local, rel)
			return nil
		})
		if err != nil {
			if ctx.Err() != nil {
				return p, ctx.Err()
			}
			add(root, path.Base(filepath.ToSlash(filepath.Clean(root))))
		}
	}
	return p, nil
}

// cleanPrefix turns "vod/abc", "/vod/abc/" or "vod//abc" into "vod/abc/", and "" or "/" into "".
func cleanPrefix(p string) string {
	p = strings.Trim(path.Clean("/"+strings.ReplaceAll(p, "\\", "/")), "/")
	if p == "" {
		return ""
	}
	return p + "/"
}

func fileType(fi fs.FileInfo) string {
	m := fi.Mode()
	switch {
	case m.IsDir():
		return "a folder"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return m.Type().String()
}
