#!/usr/bin/env bash
# Build one fuzz target with clang (-fsanitize=fuzzer,address,undefined) and
# run it for a given time on the committed seed corpus.
#
#   fuzz/run.sh recv   SECONDS [libFuzzer flags...]   C++ libFuzzer target
#   fuzz/run.sh python SECONDS [libFuzzer flags...]   atheris target (Python API)
#
# New corpus entries go to build/fuzz/work/<target> (fuzz/corpus/<target> is
# only read); crashes, leaks and timeouts to build/fuzz/artifacts/<target>/.
# The log is build/fuzz/logs/<target>-<time>.log. At the end the number of
# executions and the time are printed. Needs clang, libFuzzer and the
# compiler-rt sanitizer runtimes (Debian: clang libfuzzer-14-dev
# libclang-rt-14-dev), and for the python target atheris (pip install atheris).
set -euo pipefail

usage() {
    echo "usage: $0 {recv|python} SECONDS [libFuzzer flags...]" >&2
    exit 2
}
[ $# -ge 2 ] || usage
target=$1
seconds=$2
shift 2
case "$seconds" in '' | *[!0-9]*) usage ;; esac

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cxx=${CXX:-clang++}
cc=${CC:-clang}
python=${PYTHON:-python}
work=build/fuzz/work/$target
artifacts=build/fuzz/artifacts/$target
logs=build/fuzz/logs
mkdir -p "$work" "$artifacts" "$logs"
log=$logs/$target-$(date +%Y%m%d-%H%M%S).log
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)

common_flags=(
    -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096
    -print_final_stats=1 -artifact_prefix="$artifacts/"
)

case "$target" in
recv)
    if [ ! -f build/fuzz/cxx/CMakeCache.txt ]; then
        cmake -S fuzz -B build/fuzz/cxx "${generator[@]}" -DCMAKE_CXX_COMPILER="$cxx" >/dev/null
    fi
    cmake --build build/fuzz/cxx --target fuzz_recv -j "${JOBS:-2}"
    set +e
    build/fuzz/cxx/fuzz_recv "${common_flags[@]}" -max_len=8192 "$@" "$work" fuzz/corpus/recv 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    set -e
    ;;
python)
    # The extension, built with clang and the sanitizers (not in place: the
    # package under python/ keeps its normal build), in a copy of the package.
    build=build/fuzz/python
    if [ ! -f $build/CMakeCache.txt ]; then
        san="-fsanitize=address,undefined -fno-sanitize=vptr,function -fno-sanitize-recover=undefined -fsanitize=fuzzer-no-link"
        cmake -S . -B $build "${generator[@]}" -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
            -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPEAD2GPU_CUDA=OFF -DSPEAD2GPU_INPLACE=OFF \
            -DCMAKE_CXX_FLAGS="$san -fno-omit-frame-pointer" \
            -Dpybind11_DIR="$("$python" -m pybind11 --cmakedir)" >/dev/null
    fi
    cmake --build $build --target _spead2 -j "${JOBS:-2}"
    rm -rf $build/pkg
    mkdir -p $build/pkg
    cp -r python/spead2gpu $build/pkg/
    rm -f $build/pkg/spead2gpu/_spead2*.so
    cp $build/_spead2*.so $build/pkg/spead2gpu/
    atheris_dir=$("$python" -c 'import atheris; print(atheris.path())')
    set +e
    # Python and numpy leak by design (no leak checks); an allocation above
    # 256 MiB fails as malloc would on a small machine (the stream counts
    # the packet as no_memory) instead of ending the run.
    LD_PRELOAD="$atheris_dir/asan_with_fuzzer.so" \
        ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:max_allocation_size_mb=256:${ASAN_OPTIONS:-} \
        UBSAN_OPTIONS=print_stacktrace=1:${UBSAN_OPTIONS:-} \
        PYTHONPATH=$build/pkg "$python" fuzz/fuzz_python.py "${common_flags[@]}" -max_len=4096 "$@" \
        "$work" fuzz/corpus/python 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    set -e
    ;;
*)
    usage
    ;;
esac

runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
echo "== $target: ${runs:-?} executions in ${took:-?} s (exit status $status; log $log)"
exit "$status"
