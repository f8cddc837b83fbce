/**
 * @file kernels_nocuda.cpp
 * Kernel entry points for builds without CUDA: each raises gpu_unavailable
 * (the Python layer uses the numpy reference implementations instead).
 */
#include "gpu/kernels.h"
#include "gpu/kind.h"
#include "gpu/runtime.h"

#ifndef SPEAD2GPU_HAVE_CUDA
namespace spead2gpu::gpu
{

[[noreturn]] static void no_kernels(const char *name)
{
    throw gpu_unavailable(std::string(name) + " needs a usable GPU: " + probe().reason);
}

bool kernels_loadable(int, std::string &)
{
    return true;
}

void launch_zero_missing(std::uintptr_t, std::uintptr_t, std::size_t, std::size_t, std::size_t, std::uintptr_t)
{
    no_kernels("zero_missing");
}
void launch_unpack_int8(std::uintptr_t, std::uintptr_t, std::size_t, std::uintptr_t)
{
    no_kernels("unpack_int8");
}
void launch_unpack_int4(std::uintptr_t, std::uintptr_t, std::size_t, std::uintptr_t)
{
    no_kernels("unpack_int4");
}
void launch_unpack_int10(std::uintptr_t, std::uintptr_t, std::size_t, std::uintptr_t)
{
    no_kernels("unpack_int10");
}
void launch_unpack_cint8(std::uintptr_t, std::uintptr_t, std::size_t, std::uintptr_t)
{
    no_kernels("unpack_cint8");
}

} // namespace spead2gpu::gpu
#endif
