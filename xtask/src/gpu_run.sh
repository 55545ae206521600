#!/usr/bin/env bash
# llama3-bench GPU bundle (written by `cargo xtask gpu-bundle`): native-only, torch-only and
# compare built with CUDA 13.0 for sm_90 (H100 / H200) on a machine without a GPU.
#
#   ./run.sh compare --device cuda --synthetic --size 8B --dtype bf16 --iterations 5
#   ./run.sh native-only --device cuda --synthetic --size 1B --dtype bf16 --benchmark
#   ./run.sh torch-only --device cuda:0 --synthetic --size 1B --dtype f32 --prompt Hi
#
# The binaries travel gzip-compressed (bin.tar.gz; stripped they are over the 64 MiB a GPU machine
# takes) and are unpacked once into the cache. They link libtorch and open the CUDA libraries of the machine's Python venv with torch
# 2.11.0+cu130 (SITE= its site-packages). The Llama 3 tokenizer that --synthetic needs is
# unpacked into the cache ($LLAMA3_BENCH_HOME, default ~/.cache/llama3-bench) on first use.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SITE="${SITE:-/opt/torch/.venv/lib/python3.12/site-packages}"

usage() {
    echo "usage: $0 native-only|torch-only|compare [ARGS...]" >&2
    exit 2
}
[ $# -gt 0 ] || usage
case "$1" in */* | "" | .*) usage ;; esac
if [ ! -f "$SITE/torch/lib/libtorch_cuda.so" ]; then
    echo "run.sh: $SITE/torch/lib/libtorch_cuda.so not found: set SITE to the site-packages of a Python with torch 2.11.0+cu130" >&2
    exit 1
fi

# The tokenizer, where the binaries look for it (an atomic rename: never a half-written file).
cache="${LLAMA3_BENCH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/llama3-bench}"
tok="$cache/models/llama3-tokenizer/tokenizer.json"
if [ ! -f "$tok" ]; then
    mkdir -p "$(dirname "$tok")"
    gzip -dc "$here/llama3-tokenizer.json.gz" > "$tok.tmp.$$"
    mv "$tok.tmp.$$" "$tok"
fi

# The binaries, unpacked once per bundle (keyed by the archive's checksum; an atomic rename).
sum="$(cksum < "$here/bin.tar.gz" | cut -d' ' -f1)"
bin="$cache/gpu-bundle-$sum"
if [ ! -x "$bin/compare" ]; then
    mkdir -p "$cache"
    tmp="$bin.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    tar -xzf "$here/bin.tar.gz" -C "$tmp"
    rm -rf "$bin"
    mv "$tmp" "$bin"
fi
[ -x "$bin/$1" ] || usage

# cudarc (native) opens unversioned names first (libcublas.so), which the CUDA wheels do not ship
# (libcublas.so.13): a folder of unversioned links to the venv's copies, first on the path, so
# candle and libtorch load the same copy of each library rather than one from elsewhere.
links="${TMPDIR:-/tmp}/llama3-bench-cuda-links-$(id -u)"
mkdir -p "$links"
libdirs=""
for d in "$SITE"/nvidia/*/lib; do
    [ -d "$d" ] || continue
    libdirs="$libdirs:$d"
    for f in "$d"/lib*.so.*; do
        [ -e "$f" ] || continue
        base="$(basename "$f")"
        ln -sfn "$f" "$links/${base%%.so.*}.so"
    done
done

export LD_LIBRARY_PATH="$links:$SITE/torch/lib$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$bin/$1" "${@:2}"
