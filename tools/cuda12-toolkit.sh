#!/usr/bin/env bash
# Assemble a CUDA 12 toolkit root for building spead2gpu on a machine whose
# only nvcc is CUDA 13 (or that has none), from packages in public registries.
#
#   tools/cuda12-toolkit.sh [DEST]          # default DEST: build/cuda12-toolkit
#   pip install . -Ccmake.define.CUDAToolkit_ROOT=DEST     # or CMAKE_CUDA_COMPILER=DEST/bin/nvcc
#
# Why two registries: PyPI's CUDA 12 wheels cannot make a build toolkit on
# their own. nvidia-cuda-nvcc-cu12 (every 12.x release) holds only ptxas,
# libnvvm, libdevice and the crt/ headers: no nvcc, cicc, cudafe++, fatbinary
# or nvlink, so it cannot compile a .cu file. nvidia-cuda-runtime-cu12 has
# libcudart_static.a only from 12.9 on, and never a libcudadevrt.a that an
# older nvlink accepts ("newer than toolkit"), while nvcc's own link step
# always device-links libcudadevrt. So this script takes from PyPI what PyPI
# has (ptxas, nvvm, crt/, runtime and CCCL headers) and from Debian's
# non-free archive the rest, as NVIDIA's own binaries repackaged by Debian:
# the compiler driver (package nvidia-cuda-toolkit, 87 MB) and the three
# static runtime libraries (package nvidia-cuda-dev, a 934 MB download of
# which three files are kept). Debian's CUDA 12 release is 12.4.1, and every
# piece is pinned to that one release, so compiler, headers and runtime agree.
#
# The result is a toolkit root in NVIDIA's own layout (bin/, nvvm/,
# targets/x86_64-linux/{include,lib}, include -> ..., lib64 -> ...), with an
# nvcc.profile, usable by CMake as CUDAToolkit_ROOT=DEST (or
# CMAKE_CUDA_COMPILER=DEST/bin/nvcc). It is for building only: the runtime
# is linked statically, so nothing from it is needed at run time. Downloads
# are kept in DEST/.downloads for re-runs (about 1 GB; delete it when done).
#
# Needs: python3 with pip, apt-get, dpkg-deb, the Debian archive keyring
# (/usr/share/keyrings/debian-archive-keyring.gpg, package
# debian-archive-keyring) and network access to PyPI and the Debian archive.
# The system's apt configuration is not touched (a private sources list and
# state live under DEST/.downloads/apt).
# Environment: PYTHON (default python3), DEBIAN_MIRROR (default
# http://deb.debian.org/debian).
set -euo pipefail

# One release: NVIDIA CUDA 12.4.1.
NVCC_VERSION=12.4.131    # nvcc, cicc, ptxas, crt/ headers (PyPI and Debian)
RUNTIME_VERSION=12.4.127 # runtime headers (PyPI), static runtime (Debian)
CCCL_VERSION=12.4.127.post1
DEBIAN_SUITE=trixie

PYTHON="${PYTHON:-python3}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

case "${1:-}" in
-h | --help)
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 0
  ;;
esac

die() {
  echo "cuda12-toolkit.sh: $*" >&2
  exit 1
}
[ "$(uname -m)" = x86_64 ] || die "only x86_64 is supported (this is $(uname -m))"
for tool in apt-get apt-cache dpkg-deb tar; do
  command -v "$tool" >/dev/null || die "$tool is needed"
done
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$keyring" ] || die "$keyring is needed (package debian-archive-keyring)"

dest="${1:-build/cuda12-toolkit}"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"
dl="$dest/.downloads"
work="$dest/.work"
target="$dest/targets/x86_64-linux"
rm -rf "$work" "$dest/bin" "$dest/nvvm" "$dest/targets" "$dest/include" "$dest/lib64" "$dest/SOURCES.txt"
mkdir -p "$dl/wheels" "$dl/debs" "$work/wheels" "$work/deb" "$dest/bin/crt" "$dest/nvvm/bin" \
  "$target/include" "$target/lib"

# --- 1. PyPI ------------------------------------------------------------------
echo "== PyPI: nvidia-cuda-{nvcc,runtime,cccl}-cu12 of CUDA 12.4.1"
"$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: \
  --platform manylinux2014_x86_64 --dest "$dl/wheels" \
  "nvidia-cuda-nvcc-cu12==$NVCC_VERSION" \
  "nvidia-cuda-runtime-cu12==$RUNTIME_VERSION" \
  "nvidia-cuda-cccl-cu12==$CCCL_VERSION"
for spec in "nvcc:$NVCC_VERSION" "runtime:$RUNTIME_VERSION" "cccl:$CCCL_VERSION"; do
  "$PYTHON" -m zipfile -e "$dl/wheels/nvidia_cuda_${spec%%:*}_cu12-${spec#*:}-py3-none-manylinux2014_x86_64.whl" \
    "$work/wheels"
done
nv="$work/wheels/nvidia"

# --- 2. Debian non-free ---------------------------------------------------------
echo "== Debian $DEBIAN_SUITE non-free: nvidia-cuda-toolkit, nvidia-cuda-dev"
apt_dir="$dl/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
echo "deb [signed-by=$keyring] $DEBIAN_MIRROR $DEBIAN_SUITE non-free" >"$apt_dir/sources.list"
apt_opts=(-q -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o APT::Sandbox::User=root)
apt-get "${apt_opts[@]}" update >/dev/null
fetch_deb() { # package upstream-version -> path of the .deb
  local version
  version="$(apt-cache "${apt_opts[@]}" policy "$1" | awk '/Candidate:/ {print $2}')"
  case "$version" in
  "$2"~*) ;;
  *) die "Debian $DEBIAN_SUITE has $1 '$version', not $2" ;;
  esac
  local file="$dl/debs/${1}_${version//:/%3a}_amd64.deb"
  if [ ! -s "$file" ]; then
    (cd "$dl/debs" && apt-get "${apt_opts[@]}" download "$1=$version" >/dev/null)
  fi
  [ -s "$file" ] || die "download of $1=$version failed"
  echo "$1=$version" >>"$work/debian-versions"
  echo "$file"
}
toolkit_deb="$(fetch_deb nvidia-cuda-toolkit "$NVCC_VERSION")"
dev_deb="$(fetch_deb nvidia-cuda-dev "$RUNTIME_VERSION")"
dpkg-deb -x "$toolkit_deb" "$work/deb"
static_libs=(libcudart_static.a libcudadevrt.a libculibos.a)
dpkg-deb --fsys-tarfile "$dev_deb" |
  tar -x -C "$work/deb" "${static_libs[@]/#/./usr/lib/x86_64-linux-gnu/}"
deb="$work/deb/usr"

# --- 3. Assemble ----------------------------------------------------------------
echo "== assembling $dest"
for b in nvcc crt/link.stub crt/prelink.stub; do
  cp "$deb/lib/nvidia-cuda-toolkit/bin/$b" "$dest/bin/$b"
done
for b in cudafe++ fatbinary nvlink bin2c cuobjdump nvdisasm nvprune cu++filt; do
  cp "$deb/bin/$b" "$dest/bin/$b"
done
cp "$deb/lib/nvidia-cuda-toolkit/bin/cicc" "$dest/nvvm/bin/cicc"
cp "$nv/cuda_nvcc/bin/ptxas" "$dest/bin/ptxas"
cp -r "$nv/cuda_nvcc/nvvm/lib64" "$nv/cuda_nvcc/nvvm/libdevice" "$nv/cuda_nvcc/nvvm/include" "$dest/nvvm/"
# Headers: the runtime's, CCCL's (cuda/, cub/, thrust/, nv/) and nvcc's crt/.
for inc in "$nv/cuda_runtime/include" "$nv/cuda_cccl/include" "$nv/cuda_nvcc/include"; do
  cp -r "$inc/." "$target/include/"
done
find "$target/include" -name __init__.py -delete
find "$target/include" -name __pycache__ -type d -prune -exec rm -rf {} +
for lib in "${static_libs[@]}"; do
  cp "$deb/lib/x86_64-linux-gnu/$lib" "$target/lib/$lib"
done
cp "$nv/cuda_runtime/lib/libcudart.so.12" "$target/lib/"
ln -s libcudart.so.12 "$target/lib/libcudart.so"
ln -s targets/x86_64-linux/include "$dest/include"
ln -s targets/x86_64-linux/lib "$dest/lib64"
chmod +x "$dest"/bin/nvcc "$dest"/bin/ptxas "$dest/nvvm/bin/cicc"
# NVIDIA's standard nvcc.profile: paths relative to bin/; _TARGET_SIZE_ is
# empty on x86_64 Linux, so libraries are in targets/x86_64-linux/lib.
cat >"$dest/bin/nvcc.profile" <<'EOF'

TOP              = $(_HERE_)/..

NVVMIR_LIBRARY_DIR = $(TOP)/nvvm/libdevice

LD_LIBRARY_PATH += $(TOP)/lib:
PATH            += $(TOP)/nvvm/bin:$(_HERE_):

INCLUDES        +=  "-I$(TOP)/$(_TARGET_DIR_)/include" $(_SPACE_)

LIBRARIES        =+ $(_SPACE_) "-L$(TOP)/$(_TARGET_DIR_)/lib$(_TARGET_SIZE_)/stubs" "-L$(TOP)/$(_TARGET_DIR_)/lib$(_TARGET_SIZE_)"

CUDAFE_FLAGS    +=
PTXAS_FLAGS     +=
EOF
{
  echo "CUDA 12.4.1 toolkit root assembled by tools/cuda12-toolkit.sh"
  echo "PyPI:   nvidia-cuda-nvcc-cu12==$NVCC_VERSION (bin/ptxas, nvvm/, include/crt/)"
  echo "        nvidia-cuda-runtime-cu12==$RUNTIME_VERSION (include/, lib/libcudart.so.12)"
  echo "        nvidia-cuda-cccl-cu12==$CCCL_VERSION (include/{cuda,cub,thrust,nv}/)"
  echo "Debian $DEBIAN_SUITE non-free:"
  sed -n 1p "$work/debian-versions" | sed 's/^/        /; s/$/ (bin\/{nvcc,cudafe++,fatbinary,nvlink,bin2c,cuobjdump,nvdisasm,nvprune,cu++filt,crt\/*.stub}, nvvm\/bin\/cicc)/'
  sed -n 2p "$work/debian-versions" | sed 's/^/        /; s/$/ (lib\/{libcudart_static,libcudadevrt,libculibos}.a)/'
} >"$dest/SOURCES.txt"
rm -rf "$work"

# --- 4. Check -------------------------------------------------------------------
"$dest/bin/nvcc" --version | tail -n 2
check="$(mktemp -d)"
trap 'rm -rf "$check"' EXIT
cat >"$check/check.cu" <<'EOF'
#include <cuda_runtime.h>
static_assert(CUDART_VERSION / 1000 == 12, "not a CUDA 12 runtime header");
__global__ void k(float *x) { x[threadIdx.x] = 1.0f; }
int main() { k<<<1, 1>>>(nullptr); return cudaGetLastError() == cudaSuccess ? 0 : 1; }
EOF
"$dest/bin/nvcc" -gencode arch=compute_80,code=sm_80 -cudart static -o "$check/check" "$check/check.cu"
echo "CUDA 12 toolkit ready: $dest ($(du -sh --exclude=.downloads "$dest" | cut -f1); downloads kept in $dl)"
echo "build with: -DCUDAToolkit_ROOT=$dest   (pip: -Ccmake.define.CUDAToolkit_ROOT=$dest)"
