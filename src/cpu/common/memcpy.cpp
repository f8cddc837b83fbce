#include "common/memcpy.h"
#include <cstdint>
#include <cstring>
#if defined(__x86_64__) || defined(__i386__)
#include <emmintrin.h>
#define SPEAD2GPU_HAVE_SSE2 1
#endif

namespace spead2gpu
{

static void *memcpy_std(void *dest, const void *src, std::size_t n) noexcept
{
    return std::memcpy(dest, src, n);
}

void *memcpy_nontemporal(void *dest, const void *src, std::size_t n) noexcept
{
#ifdef SPEAD2GPU_HAVE_SSE2
    auto *d = static_cast<std::uint8_t *>(dest);
    auto *s = static_cast<const std::uint8_t *>(src);
    if (n < 256)
        return std::memcpy(dest, src, n);
    // Align the destination to 16 bytes with an ordinary copy.
    std::size_t head = (16 - (reinterpret_cast<std::uintptr_t>(d) & 15)) & 15;
    std::memcpy(d, s, head);
    d += head;
    s += head;
    n -= head;
    std::size_t blocks = n / 64;
    for (std::size_t i = 0; i < blocks; i++)
    {
        __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i *>(s));
        __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i *>(s + 16));
        __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i *>(s + 32));
        __m128i e = _mm_loadu_si128(reinterpret_cast<const __m128i *>(s + 48));
        _mm_stream_si128(reinterpret_cast<__m128i *>(d), a);
        _mm_stream_si128(reinterpret_cast<__m128i *>(d + 16), b);
        _mm_stream_si128(reinterpret_cast<__m128i *>(d + 32), c);
        _mm_stream_si128(reinterpret_cast<__m128i *>(d + 48), e);
        s += 64;
        d += 64;
    }
    n -= blocks * 64;
    std::memcpy(d, s, n);
    _mm_sfence();
    return dest;
#else
    return std::memcpy(dest, src, n);
#endif
}

memcpy_function get_memcpy_function(memcpy_function_id id)
{
    return id == memcpy_function_id::NONTEMPORAL ? &memcpy_nontemporal : &memcpy_std;
}

} // namespace spead2gpu
