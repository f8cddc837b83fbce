#!/usr/bin/env bash
# Build the extension and the C++ unit tests with sanitizers and run the tests
# under them. See docs/sanitizers.md for what each run covers and why.
#
#   tools/sanitize.sh asan [pytest arguments]   AddressSanitizer + UndefinedBehaviorSanitizer
#   tools/sanitize.sh tsan [pytest arguments]   ThreadSanitizer
#
# With no pytest arguments, asan runs the whole Python suite and tsan the
# concurrency subset (TSAN_TESTS below). Exit status: non-zero if the build
# fails, a test fails, or a sanitizer reports anything (the first report
# aborts the process that made it, so the test that triggered it fails).
# Reports go to build/sanitize-<kind>/reports/ as well as the terminal.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

kind="${1:-}"
shift || true
case "$kind" in
  asan) sanitize="address,undefined"; runtime=libasan.so ;;
  tsan) sanitize="thread"; runtime=libtsan.so ;;
  *) echo "usage: $0 asan|tsan [pytest arguments]" >&2; exit 2 ;;
esac

# The tests ThreadSanitizer runs by default: every one that starts threads in
# the C++ core (streams, readers, rings, chunk groups, send queues, the GPU
# pipeline on the emulator). The rest are single-threaded decoding and
# Python-level checks that ASan already covers; under TSan they only cost time.
TSAN_TESTS=(
  tests/test_stress.py tests/test_group_stress.py tests/test_overload.py tests/test_chunks.py
  tests/test_chunk_groups.py tests/test_lifecycle.py tests/test_stop_closes.py tests/test_interrupt.py
  tests/test_inproc.py tests/test_network.py tests/test_send_heaps.py tests/test_gpu_emulated.py
)

cxx="${CXX:-g++}"
lib=$("$cxx" -print-file-name="$runtime")
if [ ! -e "$lib" ]; then
  echo "sanitize.sh: $cxx has no $runtime (install the compiler's sanitizer runtime)" >&2
  exit 2
fi
# python itself does not link libstdc++: preloaded after the runtime, it is
# there when the runtime looks up the C++ functions it intercepts
# (__cxa_throw), instead of failing a CHECK at the first exception.
libstdcxx=$(readlink -f "$("$cxx" -print-file-name=libstdc++.so)")

build="$root/build/sanitize-$kind"
reports="$build/reports"
mkdir -p "$build" "$reports"
rm -f "$reports"/*
pybind11_dir=$(python -m pybind11 --cmakedir)
common=(-G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPEAD2GPU_SANITIZE="$sanitize" -DCMAKE_CXX_COMPILER="$cxx")

echo "== build: extension with -fsanitize=$sanitize"
cmake -S . -B "$build/ext" "${common[@]}" -DSPEAD2GPU_CUDA=OFF -Dpybind11_DIR="$pybind11_dir" >/dev/null
cmake --build "$build/ext" -j "${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
echo "== build: C++ unit tests with -fsanitize=$sanitize"
cmake -S tests/cpp -B "$build/cpp" "${common[@]}" >/dev/null
cmake --build "$build/cpp" -j "${CMAKE_BUILD_PARALLEL_LEVEL:-2}"

# A private copy of the package with the sanitized extension in it, so the
# development build in python/spead2gpu is left alone.
stage="$build/stage"
rm -rf "$stage"
mkdir -p "$stage"
cp -r python/spead2gpu "$stage/"
rm -f "$stage"/spead2gpu/_spead2*.so
cp "$build"/ext/_spead2*.so "$stage/spead2gpu/"

if [ "$kind" = asan ]; then
  # Leak checking is for the C++ tests only: CPython frees little at exit.
  cpp_env=(ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:log_path=$reports/asan-cpp"
           UBSAN_OPTIONS="print_stacktrace=1:log_path=$reports/ubsan-cpp")
  py_env=(ASAN_OPTIONS="abort_on_error=1:detect_leaks=0:log_path=$reports/asan:detect_stack_use_after_return=0"
          UBSAN_OPTIONS="print_stacktrace=1:log_path=$reports/ubsan"
          PYTHONMALLOC=malloc)
  default_tests=(tests)
else
  supp="$root/tools/tsan.supp"
  cpp_env=(TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:log_path=$reports/tsan-cpp:suppressions=$supp")
  py_env=(TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:log_path=$reports/tsan:suppressions=$supp")
  default_tests=("${TSAN_TESTS[@]}")
fi

# ThreadSanitizer maps its shadow memory at fixed addresses that the high
# mmap randomisation of recent kernels can collide with; running without
# address-space randomisation avoids "unexpected memory mapping".
norandom=()
if [ "$kind" = tsan ] && setarch "$(uname -m)" -R true 2>/dev/null; then
  norandom=(setarch "$(uname -m)" -R)
fi

status=0
echo "== C++ unit tests under $kind"
env "${cpp_env[@]}" "${norandom[@]}" "$build/cpp/spead2gpu_cpp_tests" --gtest_brief=1 || status=1

if [ $# -eq 0 ]; then
  set -- "${default_tests[@]}"
fi
echo "== Python tests under $kind: $*"
# The extension is loaded into an uninstrumented python, so the runtime must
# come first (LD_PRELOAD); test subprocesses inherit it and are checked too.
# Deselected: the tests that run compilers, which should not run with the
# runtime preloaded: test_cpp_units (it compiles tests/cpp, which ran above),
# test_fuzz_smoke (clang with its own sanitizers) and the nvcc build check.
env "${py_env[@]}" LD_PRELOAD="$lib $libstdcxx" PYTHONPATH="$stage" SPEAD2GPU_SANITIZED="$kind" "${norandom[@]}" \
  python -m pytest -q -p no:cacheprovider \
  --deselect tests/test_cpp_units.py \
  --deselect tests/test_fuzz_smoke.py \
  --deselect tests/test_gpu.py::test_compiled_with_cuda_when_nvcc_present \
  "$@" || status=1

if compgen -G "$reports/*" >/dev/null; then
  echo "== sanitizer reports:"
  for f in "$reports"/*; do
    echo "--- $f"
    head -60 "$f"
  done
  status=1
fi
if [ $status -eq 0 ]; then
  echo "== $kind: clean"
fi
exit $status
