#include "common/allocator.h"
#include "common/logging.h"
#include "common/thread_pool.h"
#include <algorithm>
#include <cstdlib>
#include <new>
#include <sys/mman.h>

namespace spead2gpu
{

static constexpr std::size_t small_page = 4096;
static constexpr std::size_t huge_page = 2 * 1024 * 1024;

std::size_t large_mapping_length(std::size_t len)
{
    if (len < large_mapping_huge)
        return (std::max<std::size_t>(len, 1) + small_page - 1) & ~(small_page - 1);
    return (len + huge_page - 1) & ~(huge_page - 1);
}

std::uint8_t *map_large(std::size_t &len)
{
    constexpr std::size_t huge = huge_page;
    const int prot = PROT_READ | PROT_WRITE;
    const int flags = MAP_PRIVATE | MAP_ANONYMOUS;
    len = large_mapping_length(len);
    if (len < large_mapping_huge)
    {
        void *ptr = mmap(nullptr, len, prot, flags, -1, 0);
        if (ptr == MAP_FAILED)
            throw std::bad_alloc();
        return static_cast<std::uint8_t *>(ptr);
    }
    // Over-map by one huge page and trim both ends to a 2 MiB boundary.
    void *raw = mmap(nullptr, len + huge, prot, flags, -1, 0);
    if (raw == MAP_FAILED)
        throw std::bad_alloc();
    auto start = reinterpret_cast<std::uintptr_t>(raw);
    std::uintptr_t aligned = (start + huge - 1) & ~std::uintptr_t(huge - 1);
    if (aligned > start)
        munmap(raw, aligned - start);
    if (std::size_t tail = start + len + huge - (aligned + len))
        munmap(reinterpret_cast<void *>(aligned + len), tail);
#ifdef MADV_HUGEPAGE
    madvise(reinterpret_cast<void *>(aligned), len, MADV_HUGEPAGE); // advice only: failure is harmless
#endif
    return reinterpret_cast<std::uint8_t *>(aligned);
}

void unmap_large(std::uint8_t *ptr, std::size_t len)
{
    munmap(ptr, len);
}

memory_allocator::pointer memory_allocator::allocate(std::size_t size, void *hint)
{
    // Plain malloc (16-byte aligned): glibc serves repeated large requests
    // from its heap once the dynamic mmap threshold has risen, whereas
    // aligned_alloc's padding keeps them above it, costing an mmap and a page
    // fault per 4 KiB for every heap.
    //
    // From large_heap_mapping up, glibc maps and unmaps every buffer anyway
    // (or trims its heap after each free), so every heap is fresh memory:
    // map it ourselves with transparent huge pages, one page fault per 2 MiB
    // instead of per 4 KiB. The deleter's user word holds the mapped length
    // (nullptr: malloc).
    if (size >= large_heap_mapping)
    {
        std::size_t len = large_mapping_length(size);
        {
            std::lock_guard<std::mutex> lock(large_mutex);
            for (std::size_t i = 0; i < large_free.size(); i++)
                if (large_free[i].len == len)
                {
                    std::uint8_t *ptr = large_free[i].ptr;
                    large_free_bytes -= len;
                    large_free[i] = large_free.back();
                    large_free.pop_back();
                    return make_pointer(ptr, reinterpret_cast<void *>(len));
                }
        }
        std::uint8_t *ptr = map_large(len);
        return make_pointer(ptr, reinterpret_cast<void *>(len));
    }
    void *ptr = std::malloc(size ? size : 1);
    if (!ptr)
        throw std::bad_alloc();
    return make_pointer(static_cast<std::uint8_t *>(ptr));
}

void memory_allocator::free(std::uint8_t *ptr, void *user)
{
    if (!user)
    {
        std::free(ptr);
        return;
    }
    const auto len = reinterpret_cast<std::size_t>(user);
    {
        std::lock_guard<std::mutex> lock(large_mutex);
        if (large_free_bytes + len <= large_heap_cache_bytes)
        {
            large_free.push_back(mapping{ptr, len});
            large_free_bytes += len;
            return;
        }
    }
    unmap_large(ptr, len);
}

memory_allocator::~memory_allocator()
{
    for (const mapping &m : large_free)
        unmap_large(m.ptr, m.len);
}

mmap_allocator::mmap_allocator(int flags, bool prefer_huge) : flags(flags), prefer_huge(prefer_huge) {}

memory_allocator::pointer mmap_allocator::allocate(std::size_t size, void *hint)
{
    std::size_t len = size ? size : 1;
    void *ptr = MAP_FAILED;
#ifdef MAP_HUGETLB
    if (prefer_huge)
    {
        constexpr std::size_t huge = 2 * 1024 * 1024;
        std::size_t hlen = (len + huge - 1) & ~(huge - 1);
        ptr = mmap(nullptr, hlen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | flags, -1, 0);
        if (ptr != MAP_FAILED)
            len = hlen;
    }
#endif
    if (ptr == MAP_FAILED)
        ptr = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);
    if (ptr == MAP_FAILED)
        throw std::bad_alloc();
    return make_pointer(static_cast<std::uint8_t *>(ptr), reinterpret_cast<void *>(len));
}

void mmap_allocator::free(std::uint8_t *ptr, void *user)
{
    munmap(ptr, reinterpret_cast<std::size_t>(user));
}

memory_pool::memory_pool(std::size_t lower, std::size_t upper, std::size_t max_free, std::size_t initial,
                         std::shared_ptr<memory_allocator> allocator)
    : memory_pool(nullptr, lower, upper, max_free, initial, 0, std::move(allocator))
{
}

memory_pool::memory_pool(std::shared_ptr<thread_pool> tp, std::size_t lower, std::size_t upper, std::size_t max_free,
                         std::size_t initial, std::size_t low_water, std::shared_ptr<memory_allocator> allocator)
    : refill_pool(std::move(tp)), lower(lower), upper(upper), max_free(max_free), initial(initial),
      low_water(low_water), base(allocator ? std::move(allocator) : std::make_shared<memory_allocator>())
{
    pool.reserve(std::max(max_free, initial));
    for (std::size_t i = 0; i < initial; i++)
        pool.push_back(base->allocate(upper, nullptr));
}

memory_pool::~memory_pool() = default;

bool memory_pool::get_warn_on_empty() const
{
    std::lock_guard<std::mutex> lock(mutex);
    return warn_on_empty_;
}

void memory_pool::set_warn_on_empty(bool warn)
{
    std::lock_guard<std::mutex> lock(mutex);
    warn_on_empty_ = warn;
}

std::size_t memory_pool::free_count() const
{
    std::lock_guard<std::mutex> lock(mutex);
    return pool.size();
}

memory_allocator::pointer memory_pool::allocate(std::size_t size, void *hint)
{
    if (size < lower || size > upper)
        return base->allocate(size, hint);
    pointer buffer;
    bool warn = false;
    bool start_refill = false;
    {
        std::lock_guard<std::mutex> lock(mutex);
        if (!pool.empty())
        {
            buffer = std::move(pool.back());
            pool.pop_back();
        }
        else
            warn = warn_on_empty_;
        if (refill_pool && pool.size() < low_water && !refilling)
        {
            refilling = true;
            start_refill = true;
        }
    }
    if (start_refill)
    {
        std::weak_ptr<memory_allocator> weak = shared_from_this();
        refill_pool->post(
            [weak]
            {
                if (auto self = weak.lock())
                    static_cast<memory_pool *>(self.get())->refill_task();
            });
    }
    if (!buffer)
    {
        static rate_limited_log limiter;
        if (warn)
            limiter(log_level::warning, "memory pool is empty when allocating; allocating a new buffer");
        buffer = base->allocate(upper, hint);
    }
    // Wrap so that the buffer comes back to this pool when freed.
    // (every buffer of size `upper` comes from `base`, so only the base's
    // user word needs keeping to rebuild its deleter in free()).
    void *inner_user = buffer.get_deleter().user;
    return make_pointer(buffer.release(), inner_user);
}

void memory_pool::refill_task()
{
    while (true)
    {
        {
            std::lock_guard<std::mutex> lock(mutex);
            if (pool.size() >= low_water || pool.size() >= max_free)
            {
                refilling = false;
                return;
            }
        }
        pointer buffer = base->allocate(upper, nullptr);
        std::lock_guard<std::mutex> lock(mutex);
        pool.push_back(std::move(buffer));
    }
}

void memory_pool::free(std::uint8_t *ptr, void *user)
{
    pointer buffer(ptr, deleter{base, user});
    std::lock_guard<std::mutex> lock(mutex);
    if (pool.size() < max_free)
        pool.push_back(std::move(buffer));
    // otherwise `buffer` goes back to the base allocator when it leaves scope
}

} // namespace spead2gpu
