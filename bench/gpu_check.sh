#!/usr/bin/env bash
# GPU check: on a machine with an NVIDIA GPU and the CUDA 13 runtime libraries, everything
# issue 12 asks of a GPU run, in one go, ending with one summary table:
#   golden   the golden suite on cuda:0 (TREEVIS_TEST_DEVICE=cuda:0 .gpu/golden)
#   bench    `treevis bench --device cuda:0` (beside PyTorch on the same GPU, when torch with
#            CUDA, torchvision and captum import: bench/pytorch_bench.py --device cuda:0) and
#            `treevis bench --device cpu,cpu-generic` (the two CPU backends side by side)
#   cache    a feature-cache build of 5000 generated 227-px images (bench/make_images.py)
#            with CaffeNet random weights on cuda:0: images/s of pass 1, reconstructions/s
#            (and dataset images/s) of pass 2
#
# Binaries, in .gpu/ (BIN):
#   .gpu/treevis         the CLI
#   .gpu/golden          the tests/golden.rs test binary
#   .gpu/golden_generic  the tests/golden_generic.rs test binary
#   .gpu/engine          the tests/engine.rs test binary (optional; CPU-only tests)
# Where `cargo` is on PATH (and --prebuilt is not given), the script builds them first:
#   cargo build --release --features cuda
#   cargo test --release --features cuda --no-run --test golden --test golden_generic --test engine
# (CUDA 13.0 toolkit, CUDA_COMPUTE_CAP=90) and links them into .gpu/. Elsewhere (a GPU
# machine without Rust) they must have been built like that and copied there; a compressed
# NAME.gz or NAME.xz in .gpu/ is unpacked to NAME first (when NAME is absent).
#
# --dry-run: CPU only, for CI and before spending GPU time. Builds without the cuda feature
# (the debug profile: `cargo build`, `cargo test --no-run ...`, so CI's test build is
# reused) into .gpu/dry/ (or takes .gpu/'s binaries where there is no cargo), checks that
# the binaries run, then the CPU steps at small sizes: golden on cpu-generic, bench
# --device cpu,cpu-generic (--runs 1, --no-resnet), a cache build of 50 images on
# cpu-generic (conv2, top 1). The GPU rows of the table say "not run (dry run)".
#
# Sizes (environment): RUNS_CUDA (15), RUNS_CPU (3; dry run 1), IMAGES (5000; dry run 50),
# CACHE_ARGS (extra `cache build` arguments; dry run `--layers conv2 --top-k 1`), GPU
# (cuda:0; `cpu` rehearses the GPU steps on the CPU), BIN (.gpu; dry run .gpu/dry), BUDGET
# (seconds for the whole run: each step's timeout is cut to what is left, and a step that
# finds under 15 s left is "not run" and counts as failed; unset: no limit). Step output,
# the JSON files and summary.md (the table so far, rewritten after each step) go to $OUT
# (default: the repository root; gpu_log.txt is the whole log); the images and the cache to
# $WORK (default ${TMPDIR:-/tmp}/treevis-gpu-check), so they are not shipped back with $OUT.
#
# Every step runs under `timeout`; a failing step does not stop the next one, and the exit
# status is 1 when any step failed (0 when every step that ran passed).
set -u

usage() { sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

DRY=0
BUILD=auto
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --prebuilt) BUILD=no ;;
        -h | --help) usage; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-.}"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_log.txt"
: > "$LOG"
WORK="${WORK:-${TMPDIR:-/tmp}/treevis-gpu-check}"
mkdir -p "$WORK"
GPU="${GPU:-cuda:0}"
if [ "$DRY" = 1 ]; then
    RUNS_CPU="${RUNS_CPU:-1}"
    IMAGES="${IMAGES:-50}"
    CACHE_ARGS="${CACHE_ARGS:---layers conv2 --top-k 1}"
    BIN="${BIN:-./.gpu/dry}"
else
    RUNS_CUDA="${RUNS_CUDA:-15}"
    RUNS_CPU="${RUNS_CPU:-3}"
    IMAGES="${IMAGES:-5000}"
    CACHE_ARGS="${CACHE_ARGS:-}"
    BIN="${BIN:-./.gpu}"
fi
[ "$BUILD" = auto ] && { command -v cargo >/dev/null 2>&1 && BUILD=yes || BUILD=no; }
[ "$DRY" = 1 ] && [ "$BUILD" = no ] && BIN=./.gpu
IMG="$WORK/images-227-$IMAGES"
# what the steps that are functions (run in a child bash, under timeout) read
export DRY BIN WORK IMG IMAGES CACHE_ARGS

log() { echo "$*" | tee -a "$LOG"; }

# The summary: one row per step, in order; $OUT/summary.md is rewritten after each step, so
# a run killed from outside still leaves the table of what it did.
ROWS=()
FAILED=0
summary() {
    echo "| step | status | time | result |"
    echo "|---|---|---:|---|"
    local r
    for r in "${ROWS[@]}"; do
        echo "$r"
    done
}
row() {
    ROWS+=("| $1 | $2 | $3 | $4 |")
    summary > "$OUT_DIR/summary.md"
}

# step NAME LABEL TIMEOUT_S CMD... : runs CMD (a program, or one of the functions below)
# under timeout, output tee'd to the log and to $OUT/NAME.txt; records the row LABEL (its
# result from the function `result_NAME`, if any); never fatal. Returns CMD's status.
step() {
    local name="$1" label="$2" limit="$3"
    shift 3
    if [ -n "${BUDGET:-}" ]; then
        local left=$((BUDGET - SECONDS))
        if [ $left -lt 15 ]; then
            not_run "$label" "BUDGET of ${BUDGET}s spent"
            FAILED=1
            return 1
        fi
        [ $left -lt "$limit" ] && limit=$left
    fi
    log ""
    log "=== $label: $* (timeout ${limit}s)"
    local t0=$SECONDS
    if declare -F "$1" >/dev/null; then
        timeout --kill-after=10 "$limit" bash -c '"$@"' "$1" "$@" 2>&1
    else
        timeout --kill-after=10 "$limit" "$@" 2>&1
    fi | tee "$OUT_DIR/$name.txt" | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    local dt=$((SECONDS - t0)) status note=""
    case $rc in
        0) status=ok ;;
        124 | 137) status="FAILED (timeout ${limit}s)" ;;
        *) status="FAILED (exit $rc)" ;;
    esac
    [ $rc -ne 0 ] && FAILED=1
    if declare -F "result_$name" >/dev/null; then
        note=$("result_$name" "$OUT_DIR/$name.txt" 2>/dev/null)
    fi
    log "=== $label: exit $rc after ${dt}s"
    row "$label" "$status" "${dt}s" "${note:--}"
    return $rc
}

# not_run LABEL WHY: a row for a step that did not run (not a failure).
not_run() { row "$1" "not run ($2)" - -; }

# jget FILE OBJECT KEY: a number from pretty-printed JSON, in the object OBJECT ("" for the
# top level): treevis bench's (flat, or keyed by device), pytorch_bench.py's, cache build's.
jget() {
    awk -v obj="$2" -v key="$3" '
        /^ +"[^"]*": *\{/ { match($0, /"[^"]*"/); cur = substr($0, RSTART + 1, RLENGTH - 2); next }
        /^ +\}/ { cur = ""; next }
        cur == obj && match($0, "\"" key "\": *[-0-9.eE+]+") {
            v = substr($0, RSTART, RLENGTH); sub(/.*: */, "", v); print v; exit
        }' "$1" 2>/dev/null
}

# fmt NUMBER: 3 significant figures, or "?".
fmt() { [ -n "$1" ] && awk -v v="$1" 'BEGIN { f = v < 10 ? "%.3g" : "%.0f"; printf f, v }' || echo "?"; }

# The headline numbers of a bench JSON (OBJECT: "" or a device).
bench_note() {
    local f="$1" o="$2"
    echo "fwd b1 $(fmt "$(jget "$f" "$o" forward_b1_ms)") ms, recon conv5 $(fmt "$(jget "$f" "$o" recon_conv5_ms)") ms, overview40 $(fmt "$(jget "$f" "$o" overview40_ms)") ms, resnet50 overview $(fmt "$(jget "$f" "$o" resnet50_overview_ms)") ms"
}

# ---------------------------------------------------------------- binaries
for f in "$BIN"/*.gz "$BIN"/*.xz; do
    [ -e "$f" ] || continue
    out="${f%.*}"
    [ -e "$out" ] && continue
    case "$f" in
        *.gz) gzip -dc "$f" > "$out.tmp" ;;
        *.xz) xz -dc "$f" > "$out.tmp" || python3 -c 'import lzma,sys; sys.stdout.buffer.write(lzma.open(sys.argv[1]).read())' "$f" > "$out.tmp" ;;
    esac && mv "$out.tmp" "$out" || { echo "could not unpack $f"; rm -f "$out.tmp"; }
done

log "=== gpu_check $(date -u +%FT%TZ) on $(hostname) in $PWD$([ "$DRY" = 1 ] && echo ', dry run')"

# build: cargo's binaries, hard-linked into BIN (a copy where a link cannot be made); the
# test binaries found by name in cargo's JSON messages
build() {
    local profile=() features=()
    [ "$DRY" = 1 ] || { profile=(--release); features=(--features cuda); }
    mkdir -p "$BIN" || return 1
    cargo build "${profile[@]}" "${features[@]}" --message-format=json-render-diagnostics \
        > "$WORK/cargo-build.json" || return 1
    cargo test "${profile[@]}" "${features[@]}" --no-run --test golden --test golden_generic \
        --test engine --message-format=json-render-diagnostics > "$WORK/cargo-test.json" ||
        return 1
    local exe name
    for exe in $(cat "$WORK/cargo-build.json" "$WORK/cargo-test.json" |
        grep -o '"executable":"[^"]*"' | sed 's/^"executable":"//; s/"$//' | sort -u); do
        name=$(basename "$exe" | sed 's/-[0-9a-f]\{16\}$//')
        case "$name" in
            treevis | golden | golden_generic | engine)
                ln -f "$exe" "$BIN/$name" 2>/dev/null || cp -f "$exe" "$BIN/$name" || return 1
                echo "$BIN/$name <- $exe"
                ;;
        esac
    done
}
export -f build
result_build() { grep -o '/[a-z_]* <-' "$1" | sed 's|^/||; s| <-$||' | paste -sd ',' - | sed 's/,/, /g'; }
if [ "$BUILD" = yes ]; then
    step build "build ($([ "$DRY" = 1 ] && echo "debug, no cuda" || echo "release, cuda"))" 3600 build
else
    not_run build "prebuilt binaries in $BIN"
fi
chmod +x "$BIN"/treevis "$BIN"/golden "$BIN"/golden_generic "$BIN"/engine 2>/dev/null

# binaries: each exists and starts (`--help`; the test binaries also list their tests)
binaries() {
    local b ok=0
    for b in treevis golden golden_generic; do
        if [ ! -x "$BIN/$b" ]; then
            echo "$BIN/$b: missing"
            ok=1
        elif ! "$BIN/$b" --help > /dev/null 2>&1; then
            echo "$BIN/$b: does not run:"
            "$BIN/$b" --help 2>&1 | head -5
            ok=1
        fi
    done
    [ $ok = 0 ] || return 1
    "$BIN/treevis" --version
    echo "golden: $("$BIN/golden" --list 2>/dev/null | grep -c ': test$') tests," \
        "golden_generic: $("$BIN/golden_generic" --list 2>/dev/null | grep -c ': test$') tests"
}
export -f binaries
result_binaries() { grep -o '^golden: .*\|^.*: missing$\|^.*: does not run' "$1" | paste -sd ';' - | sed 's/;/; /g'; }
step binaries "binaries in $BIN" 60 binaries

# The test binaries look for tests/golden under TREEVIS_ROOT (golden.rs) or the path they
# were built in (engine.rs: /work/main); point both at this checkout.
export TREEVIS_ROOT="$PWD"
BUILT_AT=/work/main
if [ "$DRY" = 0 ] && [ ! -e "$BUILT_AT" ]; then
    mkdir -p "$(dirname "$BUILT_AT")" 2>/dev/null && ln -s "$PWD" "$BUILT_AT" 2>/dev/null
fi

# ---------------------------------------------------------------- the GPU's libraries
if [ "$DRY" = 0 ]; then
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
    # Still missing? look for the libraries anywhere under /usr /opt (bounded in time).
    if ldd "$BIN/treevis" 2>/dev/null | grep -q "not found"; then
        for lib in $(ldd "$BIN/treevis" | awk '/not found/ {print $1}'); do
            d=$(timeout 60 find /usr /opt -name "$lib" -print -quit 2>/dev/null)
            [ -n "$d" ] && export LD_LIBRARY_PATH="$(dirname "$d")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        done
    fi
    log "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
    log "=== ldd $BIN/treevis"
    ldd "$BIN/treevis" 2>&1 | tee -a "$LOG"
fi
log "=== nproc: $(nproc); $(grep -m1 'model name' /proc/cpuinfo)"

# ---------------------------------------------------------------- golden
result_golden() { grep -o '[0-9]* passed; [0-9]* failed' "$1" | tail -1; }
result_golden_cpu_generic() { result_golden "$1"; }
result_engine() { result_golden "$1"; }
if [ "$DRY" = 1 ]; then
    not_run nvidia-smi "dry run"
    not_run "golden $GPU" "dry run"
    step golden_cpu_generic "golden cpu-generic" 600 \
        env TREEVIS_TEST_DEVICE=cpu-generic "$BIN/golden"
else
    result_gpu() { grep -v '^name' "$1" | head -1; }
    step gpu nvidia-smi 60 \
        nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv
    step golden "golden $GPU" 300 env TREEVIS_TEST_DEVICE="$GPU" "$BIN/golden" --test-threads=1
fi

# ---------------------------------------------------------------- bench
PY=python3
[ -x /work/venv/bin/python ] && PY=/work/venv/bin/python
result_pytorch() { bench_note "$OUT_DIR/pytorch_gpu.json" ""; }
result_bench() { bench_note "$OUT_DIR/bench_gpu.json" ""; }
result_bench_cpu() {
    local f="$OUT_DIR/bench_cpu.json" k a b
    for k in forward_b1_ms recon_conv5_ms overview40_ms resnet50_overview_ms; do
        a=$(jget "$f" cpu "$k")
        b=$(jget "$f" cpu-generic "$k")
        [ -n "$a" ] && [ -n "$b" ] || continue
        printf '%s %s / %s ms (%sx); ' "${k%_ms}" "$(fmt "$a")" "$(fmt "$b")" \
            "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b / a }')"
    done | sed 's/; $//'
}
if [ "$DRY" = 1 ]; then
    not_run "pytorch_bench.py $GPU" "dry run"
    not_run "bench $GPU" "dry run"
else
    compare=()
    # on a GPU, torch must see one (GPU=cpu rehearses this path on a CPU)
    if "$PY" -c 'import sys, torch, torchvision, captum
sys.exit(0 if not sys.argv[1].startswith("cuda") or torch.cuda.is_available() else 1)' "$GPU" \
        >/dev/null 2>&1; then
        step pytorch "pytorch_bench.py $GPU" 600 "$PY" bench/pytorch_bench.py --device "$GPU" --runs "$RUNS_CUDA" \
            --out "$OUT_DIR/pytorch_gpu.json" && compare=(--compare "$OUT_DIR/pytorch_gpu.json")
    else
        not_run "pytorch_bench.py $GPU" "no torch with CUDA, torchvision and captum for $PY"
    fi
    rm -f "$OUT_DIR/bench_gpu.json"
    step bench "bench $GPU" 300 "$BIN/treevis" bench --device "$GPU" --runs "$RUNS_CUDA" \
        --json "$OUT_DIR/bench_gpu.json" "${compare[@]}"
fi
cpu_bench=(--runs "$RUNS_CPU")
[ "$DRY" = 1 ] && cpu_bench+=(--no-resnet)
rm -f "$OUT_DIR/bench_cpu.json"
step bench_cpu "bench cpu,cpu-generic" 900 "$BIN/treevis" bench --device cpu,cpu-generic "${cpu_bench[@]}" \
    --json "$OUT_DIR/bench_cpu.json"

# ---------------------------------------------------------------- feature cache
# images: IMAGES generated 227-px PNGs (kept in WORK between runs), or the demo gallery's
# 64-px images where there is no python3
images() {
    [ -e "$IMG/.done" ] && { echo "reusing $IMG"; return 0; }
    rm -rf "$IMG"
    if command -v python3 >/dev/null 2>&1; then
        python3 bench/make_images.py --out "$IMG" --n "$IMAGES" --size 227
    else
        echo "no python3: the demo gallery's 64-px images instead"
        "$BIN/treevis" demo-gallery --out "$IMG" --n "$IMAGES"
    fi && touch "$IMG/.done"
}
export -f images
result_images() { grep -o '^wrote .*\|^reusing .*\|^no python3.*' "$1" | head -1; }
# cache DEVICE: a fresh build; its report (JSON) is in the step's output
cache() {
    rm -rf "$WORK/cache"
    # shellcheck disable=SC2086 # CACHE_ARGS are words
    "$BIN/treevis" cache build --data "$IMG" --out "$WORK/cache" --model caffenet \
        --weights random --device "$1" --quiet --json $CACHE_ARGS
}
export -f cache
cache_note() {
    local n s r c
    n=$(jget "$1" "" scanned)
    s=$(jget "$1" "" scan_seconds)
    r=$(jget "$1" "" reconstructions)
    c=$(jget "$1" "" crop_seconds)
    [ -n "$n" ] && [ -n "$s" ] && [ -n "$r" ] && [ -n "$c" ] || return
    awk -v n="$n" -v s="$s" -v r="$r" -v c="$c" 'BEGIN {
        printf "%d images: pass 1 %.1f images/s; pass 2 %d reconstructions, %.1f/s (%.1f dataset images/s)",
            n, n / s, r, r / c, n / c }'
}
result_cache() { cache_note "$1"; }
result_cache_cpu_generic() { cache_note "$1"; }
step images "images ($IMAGES)" 600 images
if [ "$DRY" = 1 ]; then
    not_run "cache build $GPU" "dry run"
    step cache_cpu_generic "cache build cpu-generic" 600 cache cpu-generic
else
    step cache "cache build $GPU" 900 cache "$GPU"
fi

if [ "$DRY" = 0 ] && [ -x "$BIN/engine" ]; then
    step engine "engine tests (CPU)" 300 "$BIN/engine"
fi

# ---------------------------------------------------------------- summary
log ""
log "=== summary ($([ "$DRY" = 1 ] && echo "dry run, CPU only" || echo "$GPU"); sizes: runs cuda ${RUNS_CUDA:--} cpu $RUNS_CPU, images $IMAGES, cache args '${CACHE_ARGS}')"
log ""
summary | tee -a "$LOG"
log ""
if [ $FAILED = 0 ]; then
    log "=== gpu_check done: every step that ran passed"
else
    log "=== gpu_check done: some step FAILED"
fi
exit $FAILED
