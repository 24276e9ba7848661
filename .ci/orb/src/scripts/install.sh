#!/usr/bin/env bash
# install.sh: the orb's install command. Downloads the artifact-sync release
# archive for this machine, checks it against the release's SHA256SUMS,
# unpacks it and installs the binary into PARAM_INSTALL_PATH.
#
# Environment: PARAM_VERSION (a version such as 1.4.0 or v1.4.0, or latest),
# PARAM_INSTALL_PATH (default /usr/local/bin), and ARTIFACT_SYNC_RELEASES_URL
# (default https://github.com/artifact-sync/artifact-sync/releases: the
# archives are at $base/download/v<version>/<name>, and $base/latest
# redirects to $base/tag/v<version> of the newest release).
set -euo pipefail

base=${ARTIFACT_SYNC_RELEASES_URL:-https://github.com/artifact-sync/artifact-sync/releases}
base=${base%/}
version=${PARAM_VERSION:-latest}
install_path=${PARAM_INSTALL_PATH:-/usr/local/bin}

die() {
  echo "artifact-sync install: $*" >&2
  exit 1
}

case "$(uname -s)" in
  Linux) os=linux ;;
  Darwin) os=darwin ;;
  MINGW* | MSYS* | CYGWIN* | Windows_NT) os=windows ;;
  *) die "no release for the operating system '$(uname -s)' (there are Linux, macOS and Windows builds): build it with 'go install github.com/artifact-sync/artifact-sync@latest'" ;;
esac
case "$(uname -m)" in
  x86_64 | amd64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) die "no release for the architecture '$(uname -m)' (there are amd64 and arm64 builds): build it with 'go install github.com/artifact-sync/artifact-sync@latest'" ;;
esac
if [ "$os/$arch" = windows/arm64 ]; then
  die "no release for Windows on arm64 (there is windows/amd64): build it with 'go install github.com/artifact-sync/artifact-sync@latest'"
fi

# fetch URL FILE downloads with curl or wget, whichever is there.
fetch() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q --tries=3 -O "$2" "$1"
  else
    die "neither curl nor wget is installed: install one of them first"
  fi
}

# redirect URL prints where URL redirects to, without following it.
redirect() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS --retry 3 -o /dev/null -w '%{redirect_url}' "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -S --max-redirect=0 -O /dev/null "$1" 2>&1 | sed -n 's/^ *[Ll]ocation: *//p' | tr -d '\r' | tail -n 1 || true
  else
    die "neither curl nor wget is installed: install one of them first"
  fi
}

# sha256 FILE prints the file's SHA-256 in hex.
sha256() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d ' ' -f 1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d ' ' -f 1
  else
    die "neither sha256sum nor shasum is installed: install coreutils or perl's shasum to check the download"
  fi
}

if [ "$version" = latest ]; then
  location=$(redirect "$base/latest") || die "could not reach $base/latest to find the newest release: check the network, or give a version"
  version=${location##*/}
  case "$version" in
    v[0-9]*) ;;
    *) die "could not tell the newest release from $base/latest (it redirects to '$location'): give a version such as 1.4.0" ;;
  esac
fi
version=${version#v}

name="artifact-sync_${version}_${os}_${arch}"
exe=artifact-sync
archive="$name.tar.gz"
if [ "$os" = windows ]; then
  exe=artifact-sync.exe
  archive="$name.zip"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "Downloading artifact-sync $version for $os/$arch"
fetch "$base/download/v$version/SHA256SUMS" "$work/SHA256SUMS" ||
  die "could not download SHA256SUMS of release v$version from $base: check that the version exists"
fetch "$base/download/v$version/$archive" "$work/$archive" ||
  die "could not download $archive from $base/download/v$version: check that the version exists and has a $os/$arch build"

want=$(awk -v f="$archive" '$2 == f || $2 == "*" f { print $1; exit }' "$work/SHA256SUMS")
[ -n "$want" ] || die "SHA256SUMS of release v$version does not list $archive: not installing an archive that cannot be checked"
got=$(sha256 "$work/$archive")
if [ "$got" != "$want" ]; then
  die "$archive does not match its checksum (SHA256SUMS says $want, the download has $got): not installing it; download it again, and if it still differs, report it"
fi
echo "Checksum of $archive matches SHA256SUMS"

case "$archive" in
  *.zip)
    if command -v unzip >/dev/null 2>&1; then
      unzip -q "$work/$archive" -d "$work"
    else
      tar -xf "$work/$archive" -C "$work"
    fi
    ;;
  *) tar -xzf "$work/$archive" -C "$work" ;;
esac
[ -f "$work/$name/$exe" ] || die "$archive has no $name/$exe: not a release archive of artifact-sync"

# as_root runs a command with sudo when the install path needs it. (A
# function, not an array, since bash 3.2 on macOS treats an empty array as
# unset under set -u.)
use_sudo=
if { [ -d "$install_path" ] && [ ! -w "$install_path" ]; } || { [ ! -d "$install_path" ] && [ ! -w "$(dirname "$install_path")" ]; }; then
  if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then
    use_sudo=1
  else
    die "cannot write to $install_path: give an install-path you can write to, such as ~/bin"
  fi
fi
as_root() {
  if [ -n "$use_sudo" ]; then sudo "$@"; else "$@"; fi
}
as_root mkdir -p "$install_path"
as_root install -m 0755 "$work/$name/$exe" "$install_path/$exe"
echo "Installed $install_path/$exe"
"$install_path/$exe" version
