#!/usr/bin/env bash
# GPU check for a machine with an NVIDIA GPU and the CUDA 13 runtime libraries but no Rust.
#
# Run from the repository root, with binaries built elsewhere by
#   cargo build --release --features cuda ; cargo test --release --features cuda --no-run
# (CUDA 13.0 toolkit, CUDA_COMPUTE_CAP=90) copied into .gpu/:
#   .gpu/treevis   the CLI
#   .gpu/golden    the tests/golden.rs test binary
#   .gpu/engine    the tests/engine.rs test binary (optional; CPU-only tests)
# A compressed NAME.gz or NAME.xz in .gpu/ is unpacked to NAME first (when NAME is absent).
#
# Each step runs under `timeout` and a failing step does not stop the next one. Everything is
# tee'd to $OUT/gpu_log.txt ($OUT defaults to the current folder).
set -u

OUT_DIR="${OUT:-.}"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_log.txt"
: > "$LOG"
BIN=./.gpu

log() { echo "$*" | tee -a "$LOG"; }

# step NAME TIMEOUT_S CMD... : runs CMD under timeout, output tee'd, status logged, never fatal.
step() {
    local name="$1" limit="$2"
    shift 2
    log ""
    log "=== $name: $* (timeout ${limit}s)"
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    log "=== $name: exit $rc after $((SECONDS - t0))s"
}

for f in "$BIN"/*.gz "$BIN"/*.xz; do
    [ -e "$f" ] || continue
    out="${f%.*}"
    [ -e "$out" ] && continue
    case "$f" in
        *.gz) gzip -dc "$f" > "$out.tmp" ;;
        *.xz) xz -dc "$f" > "$out.tmp" || python3 -c 'import lzma,sys; sys.stdout.buffer.write(lzma.open(sys.argv[1]).read())' "$f" > "$out.tmp" ;;
    esac && mv "$out.tmp" "$out" || { echo "could not unpack $f"; rm -f "$out.tmp"; }
done
chmod +x "$BIN"/treevis "$BIN"/golden "$BIN"/engine 2>/dev/null

# The binaries link libcuda.so.1 (driver) and the CUDA 13 toolkit's libcudart.so.13,
# libcublas.so.13 (+ libcublasLt.so.13) and libcurand.so.10. Put any folder that
# holds them on LD_LIBRARY_PATH (system toolkit or pip-installed nvidia wheels).
extra=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
    /usr/local/cuda-13*/lib64 /usr/local/cuda-13*/targets/x86_64-linux/lib \
    /usr/lib/x86_64-linux-gnu /usr/lib64 /opt/cuda/lib64; do
    [ -d "$d" ] || continue
    if ls "$d"/libcublas.so.13* "$d"/libcudart.so.13* >/dev/null 2>&1; then
        extra="$extra:$d"
    fi
done
for py in python3 python; do
    command -v "$py" >/dev/null 2>&1 || continue
    for d in $("$py" -c 'import site,sys; print(" ".join(site.getsitepackages()+[site.getusersitepackages()]))' 2>/dev/null); do
        for sub in "$d"/nvidia/cu13/lib "$d"/nvidia/*/lib; do
            [ -d "$sub" ] && extra="$extra:$sub"
        done
    done
    break
done
extra="${extra#:}"
if [ -n "$extra" ]; then
    export LD_LIBRARY_PATH="$extra${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# Still missing? look for the libraries anywhere under /usr /opt /usr/local (bounded in time).
if ldd "$BIN/treevis" 2>/dev/null | grep -q "not found"; then
    for lib in $(ldd "$BIN/treevis" | awk '/not found/ {print $1}'); do
        d=$(timeout 60 find /usr /opt /usr/local -name "$lib" -print -quit 2>/dev/null)
        [ -n "$d" ] && export LD_LIBRARY_PATH="$(dirname "$d")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    done
fi

# The test binaries look for tests/golden under TREEVIS_ROOT (golden.rs) or the path they
# were built in (engine.rs: /work/main); point both at this checkout.
export TREEVIS_ROOT="$PWD"
BUILT_AT=/work/main
if [ ! -e "$BUILT_AT/tests/golden" ] && [ ! -e "$BUILT_AT" ]; then
    mkdir -p "$(dirname "$BUILT_AT")" 2>/dev/null && ln -s "$PWD" "$BUILT_AT" 2>/dev/null
fi

log "=== gpu_check $(date -u +%FT%TZ) on $(hostname) in $PWD"
log "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
step nvidia-smi 60 nvidia-smi -L
step nvidia-smi-q 60 bash -c 'nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv'
log ""
log "=== ldd $BIN/treevis"
ldd "$BIN/treevis" 2>&1 | tee -a "$LOG"
log "=== nproc: $(nproc); $(grep -m1 'model name' /proc/cpuinfo)"

step bench-cuda 240 "$BIN/treevis" bench --device cuda:0 --runs 15
step bench-cpu 240 "$BIN/treevis" bench --device cpu --runs 5
step golden-cuda 300 env TREEVIS_TEST_DEVICE=cuda:0 "$BIN/golden" --test-threads=1
if [ -x "$BIN/engine" ]; then
    step engine-cpu 180 "$BIN/engine"
fi
log ""
log "=== gpu_check done"
