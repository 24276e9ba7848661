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
// The shell makes the image usable as a CircleCI executor, which runs a
// job's steps through a shell in the primary container: Debian's static
// busybox (busybox-static) at /bin/busybox with sh, mkdir, cat, ls, tar,
// gzip and env linked to it, and Debian's static bash (bash-static) at
// /bin/bash for the orb's scripts. Both come from the build machine, as the
// CA bundle does, so the image is reproducible as far as the build machine's
// packages are; each goes only into the image of its own architecture.
//
// Usage: go run .ci/image.go --binary linux/amd64=PATH [--binary linux/arm64=PATH]
//
//	--version V --revision SHA --source URL --created UNIX-TIME
//	[--ca-certs FILE] [--busybox FILE] [--bash FILE] OUTDIR
package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
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
	busybox := flag.String("busybox", "/bin/busybox", "a static busybox, the image's /bin/sh (Debian's busybox-static by default)")
	bash := flag.String("bash", "/bin/bash-static", "a static bash, the image's /bin/bash (Debian's bash-static by default)")
	flag.Parse()
	if err := build(bins, *version, *revision, *source, *created, *caCerts, shell{*busybox, *bash}, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

// shell names the static busybox and bash the images carry.
type shell struct{ busybox, bash string }

// elfArch maps an ELF machine to the Go architecture of the image it suits.
var elfArch = map[elf.Machine]string{elf.EM_X86_64: "amd64", elf.EM_AARCH64: "arm64"}

// load reads a static executable and says which architecture it runs on, so
// a build machine's busybox goes only into the image of its architecture.
func load(path, pkg string) (exe []byte, arch string, err error) {
	exe, err = os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("reading the image's shell: %w (install %s, or give its path)", err, pkg)
	}
	f, err := elf.NewFile(bytes.NewReader(exe))
	if err != nil {
		return nil, "", fmt.Errorf("%s is not a Linux executable: give %s's static binary", path, pkg)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return nil, "", fmt.Errorf("%s is linked dynamically and would not run on the empty base: give %s's static binary", path, pkg)
		}
	}
	return exe, elfArch[f.Machine], nil
}

func build(bins binaries, version, revision, source, created, caCerts string, sh shell, args []string) error {
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
	busybox, busyboxArch, err := load(sh.busybox, "busybox-static")
	if err != nil {
		return err
	}
	bash, bashArch, err := load(sh.bash, "bash-static")
	if err != nil {
		return err
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
		tools := map[string][]byte{}
		if arch == busyboxArch && arch == bashArch {
			tools["bin/busybox"], tools["bin/bash"] = busybox, bash
		} else {
			fmt.Fprintf(os.Stderr, "image: %s has no shell: the build machine's busybox and bash are for %s\n", platform, busyboxArch)
		}
		img, err := image(exe, certs, tools, arch, when, labels)
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

// image is the binary, the certificates, the user and the shell (tools, by
// path; none when empty) in one layer on an empty base, run as that user.
func image(exe, certs []byte, tools map[string][]byte, arch string, when time.Time, labels map[string]string) (v1.Image, error) {
	files, err := rootfs(exe, certs, tools, when)
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

// applets are the busybox commands linked in /bin: the shell CircleCI runs
// steps with, and the few commands a step or the agent commonly calls.
var applets = []string{"cat", "env", "gzip", "ls", "mkdir", "sh", "tar"}

// entry is one file of the layer: a directory when contents is nil and link
// empty, a symbolic link to link when that is set.
type entry struct {
	name     string
	mode     int64
	owner    int
	contents []byte
	link     string
}

// rootfs is the layer's tar: its entries in order, every one dated when,
// owned by root but for the user's home.
func rootfs(exe, certs []byte, tools map[string][]byte, when time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", uid, uid)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", uid)
	var entries []entry
	if tools["bin/busybox"] != nil {
		entries = append(entries, entry{"bin/", 0o755, 0, nil, ""},
			entry{"bin/bash", 0o755, 0, tools["bin/bash"], ""},
			entry{"bin/busybox", 0o755, 0, tools["bin/busybox"], ""})
		for _, a := range applets {
			entries = append(entries, entry{"bin/" + a, 0o777, 0, nil, "busybox"})
		}
	}
	entries = append(entries,
		entry{"etc/", 0o755, 0, nil, ""},
		entry{"etc/group", 0o644, 0, []byte(group), ""},
		entry{"etc/passwd", 0o644, 0, []byte(passwd), ""},
		entry{"etc/ssl/", 0o755, 0, nil, ""},
		entry{"etc/ssl/certs/", 0o755, 0, nil, ""},
		entry{"etc/ssl/certs/ca-certificates.crt", 0o644, 0, certs, ""},
		entry{"home/", 0o755, 0, nil, ""},
		entry{"home/nonroot/", 0o700, uid, nil, ""},
		entry{"tmp/", 0o1777, 0, nil, ""},
		entry{"usr/", 0o755, 0, nil, ""},
		entry{"usr/local/", 0o755, 0, nil, ""},
		entry{"usr/local/bin/", 0o755, 0, nil, ""},
		entry{"usr/local/bin/artifact-sync", 0o755, 0, exe, ""},
	)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.owner, Gid: e.owner, ModTime: when, Format: tar.FormatUSTAR}
		switch {
		case e.link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.link
		case e.contents == nil:
			h.Typeflag = tar.TypeDir
		default:
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
