package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	ggmutate "github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// releaseVersion is what the tests stamp their release builds with.
const releaseVersion = "9.8.7-test"

// release runs .ci/release for this machine's linux target into a new
// directory, as .ci/run does, and returns the directory.
func release(t *testing.T) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the release build runs on linux (GNU tar; the image's binary runs here)")
	}
	if testing.Short() {
		t.Skip("-short: the release build takes a while")
	}
	out := t.TempDir()
	cmd := exec.Command("bash", ".ci/release", "--targets", "linux/"+runtime.GOARCH, "--version", "v"+releaseVersion, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf(".ci/release: %v\n%s", err, b)
	}
	return out
}

// readTree is every file under dir by its slash path, with its bytes.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		b, err := os.ReadFile(path)
		files[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// untar is a tar's regular files by name, and its headers in order.
func untar(t *testing.T, r io.Reader) (map[string][]byte, []*tar.Header) {
	t.Helper()
	files := map[string][]byte{}
	var headers []*tar.Header
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, headers
		}
		if err != nil {
			t.Fatal(err)
		}
		headers = append(headers, h)
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = b
		}
	}
}

// commitTime is HEAD's commit time, which dates every file of a release.
func commitTime(t *testing.T) time.Time {
	t.Helper()
	out, err := exec.Command("git", "log", "-1", "--format=%ct", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	secs, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return time.Unix(secs, 0)
}

// runBinary writes exe to a temporary file and runs it with args.
func runBinary(t *testing.T, exe []byte, env []string, args ...string) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "artifact-sync")
	if err := os.WriteFile(path, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestReleaseIsReproducible: two release builds of one commit give the same
// bytes; the archive holds the binary, the README and the man pages under
// one folder, every entry dated from the commit and owned by root;
// SHA256SUMS checks every archive; the binary says the release's version
// and prints a completion script.
func TestReleaseIsReproducible(t *testing.T) {
	first, second := release(t), release(t)
	a, b := readTree(t, first), readTree(t, second)
	if !slices.Equal(slices.Sorted(maps.Keys(a)), slices.Sorted(maps.Keys(b))) {
		t.Fatalf("two builds wrote different files: %v and %v", slices.Sorted(maps.Keys(a)), slices.Sorted(maps.Keys(b)))
	}
	for name := range a {
		if !bytes.Equal(a[name], b[name]) {
			t.Errorf("two builds of one commit wrote different %s", name)
		}
	}

	base := "artifact-sync_" + releaseVersion + "_linux_" + runtime.GOARCH
	archive := base + ".tar.gz"
	image := "artifact-sync_" + releaseVersion + "_oci.tar"
	sums := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(string(a["SHA256SUMS"]), "\n"), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("SHA256SUMS has a line not in sha256sum's format: %q", line)
		}
		sums[name] = sum
	}
	for _, name := range []string{archive, image} {
		got := sha256.Sum256(a[name])
		if sums[name] != hex.EncodeToString(got[:]) {
			t.Errorf("SHA256SUMS says %s is %q, it is %x", name, sums[name], got)
		}
	}
	if len(sums) != len(a)-1 {
		t.Errorf("SHA256SUMS lists %d files, the release has %d archives", len(sums), len(a)-1)
	}

	zr, err := gzip.NewReader(bytes.NewReader(a[archive]))
	if err != nil {
		t.Fatal(err)
	}
	files, headers := untar(t, zr)
	when := commitTime(t)
	for _, h := range headers {
		if !strings.HasPrefix(h.Name, base+"/") || h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(when) {
			t.Errorf("%s: want it under %s/, owned by 0:0 and dated %v (the commit); it is owned by %d:%d, dated %v", h.Name, base, when, h.Uid, h.Gid, h.ModTime)
		}
		if h.Name == base+"/artifact-sync" && h.Mode != 0o755 {
			t.Errorf("the binary's mode is %o, want 755", h.Mode)
		}
	}
	for _, want := range []string{"artifact-sync", "README.md", "man/artifact-sync.1", "man/artifact-sync-pull.1", "man/artifact-sync-list.1", "man/artifact-sync-verify.1"} {
		if _, ok := files[base+"/"+want]; !ok {
			t.Errorf("the archive has no %s", want)
		}
	}
	if !bytes.Contains(files[base+"/man/artifact-sync-pull.1"], []byte("--to")) ||
		!bytes.Contains(files[base+"/man/artifact-sync.1"], []byte(releaseVersion)) {
		t.Errorf("the man pages do not describe pull's flags or name the release:\n%s", files[base+"/man/artifact-sync.1"])
	}

	exe := files[base+"/artifact-sync"]
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := runBinary(t, exe, nil, args...)
		if err != nil || !strings.HasPrefix(out, "artifact-sync "+releaseVersion+" ") {
			t.Errorf("artifact-sync %s: %v %q, want artifact-sync %s ...", args[0], err, out, releaseVersion)
		}
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		out, err := runBinary(t, exe, nil, "completion", shell)
		if err != nil || !strings.Contains(out, "artifact-sync") || !strings.Contains(out, "complete") {
			t.Errorf("artifact-sync completion %s: %v, printed %.200q", shell, err, out)
		}
	}
}

// TestReleaseImage: the container image the release builds runs the binary
// as a non-root user, says its version and source in labels, trusts the CA
// certificates, and its binary, taken from the image's layer, pulls
// artifacts from the fake CircleCI.
func TestReleaseImage(t *testing.T) {
	out := release(t)
	f, err := os.Open(filepath.Join(out, "artifact-sync_"+releaseVersion+"_oci.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir := t.TempDir()
	files, _ := untar(t, f)
	for name, b := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("the image is not an OCI image layout: %v", err)
	}
	top, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	// index.json names one multi-architecture index, by the version.
	if len(top.Manifests) != 1 || !top.Manifests[0].MediaType.IsIndex() ||
		top.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != releaseVersion {
		t.Fatalf("index.json does not name one image index by the version %s: %+v", releaseVersion, top.Manifests)
	}
	if idx, err = idx.ImageIndex(top.Manifests[0].Digest); err != nil {
		t.Fatal(err)
	}
	manifest, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var img v1.Image
	for _, d := range manifest.Manifests {
		if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == runtime.GOARCH {
			if img, err = idx.Image(d.Digest); err != nil {
				t.Fatal(err)
			}
		}
	}
	if img == nil {
		t.Fatalf("the image index has no linux/%s image: %+v", runtime.GOARCH, manifest.Manifests)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Config
	if !slices.Equal(c.Entrypoint, []string{"/usr/local/bin/artifact-sync"}) || c.User != "65532:65532" {
		t.Errorf("the image runs %q as %q, want /usr/local/bin/artifact-sync as 65532:65532", c.Entrypoint, c.User)
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	for label, want := range map[string]string{
		"org.opencontainers.image.version":  releaseVersion,
		"org.opencontainers.image.revision": strings.TrimSpace(string(head)),
		"org.opencontainers.image.created":  commitTime(t).UTC().Format(time.RFC3339),
	} {
		if c.Labels[label] != want {
			t.Errorf("label %s is %q, want %q", label, c.Labels[label], want)
		}
	}
	if !strings.HasPrefix(c.Labels["org.opencontainers.image.source"], "https://") {
		t.Errorf("label org.opencontainers.image.source is %q, want the repository's URL", c.Labels["org.opencontainers.image.source"])
	}

	rootfs, _ := untar(t, ggmutate.Extract(img))
	if !strings.Contains(string(rootfs["etc/passwd"]), ":65532:65532:") {
		t.Errorf("/etc/passwd has no user 65532:\n%s", rootfs["etc/passwd"])
	}
	if !bytes.Contains(rootfs["etc/ssl/certs/ca-certificates.crt"], []byte("BEGIN CERTIFICATE")) {
		t.Errorf("the image has no CA certificates")
	}
	exe := rootfs["usr/local/bin/artifact-sync"]
	shellRunsTheTool(t, img)
	if v, err := runBinary(t, exe, nil, "version"); err != nil || !strings.HasPrefix(v, "artifact-sync "+releaseVersion+" ") {
		t.Errorf("the image's artifact-sync version: %v %q", err, v)
	}
	w, _ := demoWorld()
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	dest := t.TempDir()
	if msg, err := runBinary(t, exe, toolEnv(t, srv), "pull", "gh/acme/widgets", "--branch", "main", "--to", dest); err != nil {
		t.Fatalf("the image's artifact-sync pull: %v\n%s", err, msg)
	}
	var got []string
	filepath.WalkDir(dest, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Base(path) == "index.html" {
			got = append(got, path)
		}
		return err
	})
	if len(got) != 1 {
		t.Errorf("the image's artifact-sync pull did not write the newest pipeline's coverage/index.html to %s", dest)
	}
}

// shellRunsTheTool: the image carries a shell, so it can be a CircleCI
// executor: /bin/sh is busybox's, and that shell, extracted as the image
// has it, runs the tool on the image's PATH; /bin/bash runs too, for the
// orb's scripts.
func shellRunsTheTool(t *testing.T, img v1.Image) {
	t.Helper()
	root := t.TempDir()
	tr := tar.NewReader(ggmutate.Extract(img))
	links := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, filepath.FromSlash(h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			os.MkdirAll(p, 0o755)
		case tar.TypeSymlink:
			links[h.Name] = h.Linkname
			if err := os.Symlink(h.Linkname, p); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			b, _ := io.ReadAll(tr)
			if err := os.WriteFile(p, b, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	if links["bin/sh"] != "busybox" {
		t.Fatalf("the image's /bin/sh is not a link to busybox (%q): it has no shell to be a CircleCI executor", links["bin/sh"])
	}
	for _, sh := range []string{"bin/sh", "bin/bash"} {
		cmd := exec.Command(filepath.Join(root, sh), "-c", "artifact-sync version")
		cmd.Env = []string{"PATH=" + filepath.Join(root, "usr/local/bin") + ":" + filepath.Join(root, "bin")}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "artifact-sync "+releaseVersion+" ") {
			t.Errorf("the image's /%s -c 'artifact-sync version': %v %q", sh, err, out)
		}
	}
}

// TestReleaseVersionFromTag: without --version, a release of a tagged
// commit is named and stamped with the tag less its "v". It builds a clone,
// so the tag stays there.
func TestReleaseVersionFromTag(t *testing.T) {
	if runtime.GOOS != "linux" || testing.Short() {
		t.Skip("the release build runs on linux, and takes a while (not with -short)")
	}
	clone := filepath.Join(t.TempDir(), "src")
	script, err := os.ReadFile(".ci/release")
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"clone", "--quiet", ".", clone},
		{"-C", clone, "-c", "user.name=test", "-c", "user.email=test@example.com", "tag", "-a", "v4.5.6", "-m", "4.5.6"},
	} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// The script as it is here, on the committed sources.
	if err := os.WriteFile(filepath.Join(clone, ".ci", "release"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cmd := exec.Command("bash", ".ci/release", "--targets", "linux/"+runtime.GOARCH, "--no-image", out)
	cmd.Dir = clone
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf(".ci/release: %v\n%s", err, b)
	}
	base := "artifact-sync_4.5.6_linux_" + runtime.GOARCH
	f, err := os.Open(filepath.Join(out, base+".tar.gz"))
	if err != nil {
		t.Fatalf("the release of tag v4.5.6 is not named 4.5.6: %v", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := untar(t, zr)
	if v, err := runBinary(t, files[base+"/artifact-sync"], nil, "version"); err != nil || !strings.HasPrefix(v, "artifact-sync 4.5.6 ") {
		t.Errorf("the release of tag v4.5.6 says %v %q, want artifact-sync 4.5.6 ...", err, v)
	}
	if sums, _ := os.ReadFile(filepath.Join(out, "SHA256SUMS")); strings.Count(string(sums), "\n") != 1 {
		t.Errorf("SHA256SUMS of one archive, no image:\n%s", sums)
	}
}
