// Package repocheck holds no code: its tests check the repository itself, as `go test ./...`
// runs them, so that what a clone needs stays in the clone.
//
//   - TestTrackedFileSizes: no tracked file over 1 MiB except the documented data files (a
//     compiled binary committed by mistake fails it).
//   - TestDocLinks: every link in the project's Markdown (README.md, docs/, every package's
//     README) resolves inside the repository, anchors included, and no text names a path
//     outside it (another checkout's ../shared/..., a machine's /work/...).
package repocheck
