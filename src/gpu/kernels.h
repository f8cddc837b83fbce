/**
 * @file kernels.h
 * First-step GPU kernels on chunk data: zero the payload of missing heaps and
 * unpack digitiser sample formats to float32 / complex64. All are
 * stream-ordered launches (no synchronisation); pointers are device (or
 * mapped) addresses and @a stream a cudaStream_t as an integer.
 * Without CUDA every function throws gpu_unavailable.
 *
 * Formats (n = number of output samples):
 * - int8:  one signed byte per sample;
 * - int4:  two's complement nibbles, two samples per byte, high nibble first (n even);
 * - int10: 10-bit two's complement, big-endian bit order: 4 samples in 5 bytes,
 *          MSB first (n multiple of 4);
 * - cint8: interleaved (re, im) signed bytes -> complex64 (n complex samples).
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace spead2gpu::gpu
{

/**
 * Whether the kernels have an image CUDA device @a device can run (SASS for
 * its architecture, or PTX its driver can compile); if not, @a why says so.
 * Called by the probe, so that an unsupported GPU is named at once rather
 * than at the first launch. Always true without CUDA.
 */
bool kernels_loadable(int device, std::string &why);

/// data: n_heaps × heap_bytes; heap i is zeroed when present[i * present_stride] == 0.
void launch_zero_missing(std::uintptr_t data, std::uintptr_t present, std::size_t n_heaps, std::size_t heap_bytes,
                         std::size_t present_stride, std::uintptr_t stream);
void launch_unpack_int8(std::uintptr_t src, std::uintptr_t dst, std::size_t n, std::uintptr_t stream);
void launch_unpack_int4(std::uintptr_t src, std::uintptr_t dst, std::size_t n, std::uintptr_t stream);
void launch_unpack_int10(std::uintptr_t src, std::uintptr_t dst, std::size_t n, std::uintptr_t stream);
void launch_unpack_cint8(std::uintptr_t src, std::uintptr_t dst, std::size_t n, std::uintptr_t stream);

} // namespace spead2gpu::gpu
