// Command image builds artifact-sync's container image as an OCI image
// layout, without a registry or a container engine: for each static linux
// binary given, one image of a single layer (the binary at
// /usr/local/bin/artifact-sync, the CA certificates, a non-root user) on an
// empty base, all of them in one index. .ci/release runs it and packs the
// layout; 'podman load', 'skopeo copy oci-archive:' and 'crane push' take
// the packed layout to a registry.
//
// It uses github.com/google/go-containerregistry rather than buildah or
// podman: neither runs on CircleCI's Docker executors or on a developer's Mac
// without a VM, and an image of one layer needs no container engine, only
// the OCI formats, which the library writes the way registries expect.
// Every timestamp comes from --created, so one commit gives one image
// digest.
//
// Usage: go run .ci/image.go --binary linux/amd64=PATH [--binary linux/arm64=PATH]
//
//	--version V --revision SHA --source URL --created UNIX-TIME
//	[--ca-certs FILE] OUTDIR
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// uid is the image's user: not root, and the number distroless images use,
// so a volume prepared for one suits the other.
const uid = 65532

// binaries collects repeated --binary os/arch=PATH flags.
type binaries map[string]string

func (b binaries) String() string { return fmt.Sprint(map[string]string(b)) }

func (b binaries) Set(s string) error {
	platform, path, ok := strings.Cut(s, "=")
	if !ok || !strings.HasPrefix(platform, "linux/") {
		return errors.New("give linux/ARCH=PATH, such as linux/amd64=dist/artifact-sync")
	}
	b[platform] = path
	return nil
}

func main() {
	bins := binaries{}
	flag.Var(bins, "binary", "linux/ARCH=PATH of a static binary (repeatable)")
	version := flag.String("version", "", "the release, for the org.opencontainers.image.version label")
	revision := flag.String("revision", "", "the commit, for the org.opencontainers.image.revision label")
	source := flag.String("source", "", "the repository URL, for the org.opencontainers.image.source label")
	created := flag.String("created", "", "the commit time in Unix seconds, the date of every file and of the image")
	caCerts := flag.String("ca-certs", "/etc/ssl/certs/ca-certificates.crt", "the CA certificates the image trusts (Debian's and Ubuntu's bundle by default)")
	flag.Parse()
	if err := build(bins, *version, *revision, *source, *created, *caCerts, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func build(bins binaries, version, revision, source, created, caCerts string, args []string) error {
	if len(bins) == 0 || version == "" || revision == "" || source == "" || len(args) != 1 {
		return errors.New("usage: go run .ci/image.go --binary linux/ARCH=PATH... --version V --revision SHA --source URL --created UNIX-TIME OUTDIR")
	}
	secs, err := strconv.ParseInt(created, 10, 64)
	if err != nil {
		return fmt.Errorf("--created %q: give the commit time in Unix seconds (git log -1 --format=%%ct)", created)
	}
	when := time.Unix(secs, 0).UTC()
	certs, err := os.ReadFile(caCerts)
	if err != nil {
		return fmt.Errorf("reading the CA certificates: %w (install ca-certificates, or give --ca-certs FILE)", err)
	}
	labels := map[string]string{
		"org.opencontainers.image.title":       "artifact-sync",
		"org.opencontainers.image.description": "Mirror CircleCI build artifacts to a directory or S3",
		"org.opencontainers.image.version":     version,
		"org.opencontainers.image.revision":    revision,
		"org.opencontainers.image.source":      source,
		"org.opencontainers.image.created":     when.Format(time.RFC3339),
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, platform := range slices.Sorted(maps.Keys(bins)) {
		exe, err := os.ReadFile(bins[platform])
		if err != nil {
			return err
		}
		arch := strings.TrimPrefix(platform, "linux/")
		img, err := image(exe, certs, arch, when, labels)
		if err != nil {
			return fmt.Errorf("%s: %w", platform, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	if err := os.RemoveAll(args[0]); err != nil {
		return err
	}
	// The layout's index.json names one image, the multi-architecture
	// index, by the version: what 'podman load' and 'skopeo copy --all
	// oci-archive:' look for.
	p, err := layout.Write(args[0], empty.Index)
	if err != nil {
		return err
	}
	return p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": version}))
}

// image is the binary, the certificates and the user in one layer on an
// empty base, run as that user.
func image(exe, certs []byte, arch string, when time.Time, labels map[string]string) (v1.Image, error) {
	files, err := rootfs(exe, certs, when)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(files)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: when}, CreatedBy: "go run .ci/image.go", Comment: "artifact-sync " + labels["org.opencontainers.image.version"]},
	})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", arch
	cfg.Created = v1.Time{Time: when}
	cfg.Config = v1.Config{
		Entrypoint: []string{"/usr/local/bin/artifact-sync"},
		User:       fmt.Sprintf("%d:%d", uid, uid),
		WorkingDir: "/home/nonroot",
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		Labels:     labels,
	}
	return mutate.ConfigFile(img, cfg)
}

// rootfs is the layer's tar: its entries in order, every one dated when,
// owned by root but for the user's home.
func rootfs(exe, certs []byte, when time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", uid, uid)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", uid)
	entries := []struct {
		name     string
		mode     int64
		owner    int
		contents []byte // nil: a directory
	}{
		{"etc/", 0o755, 0, nil},
		{"etc/group", 0o644, 0, []byte(group)},
		{"etc/passwd", 0o644, 0, []byte(passwd)},
		{"etc/ssl/", 0o755, 0, nil},
		{"etc/ssl/certs/", 0o755, 0, nil},
		{"etc/ssl/certs/ca-certificates.crt", 0o644, 0, certs},
		{"home/", 0o755, 0, nil},
		{"home/nonroot/", 0o700, uid, nil},
		{"tmp/", 0o1777, 0, nil},
		{"usr/", 0o755, 0, nil},
		{"usr/local/", 0o755, 0, nil},
		{"usr/local/bin/", 0o755, 0, nil},
		{"usr/local/bin/artifact-sync", 0o755, 0, exe},
	}
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.owner, Gid: e.owner, ModTime: when, Format: tar.FormatUSTAR}
		if e.contents == nil {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.contents))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.contents); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
