// Unit tests of the default memory_allocator's large-heap mappings and their reuse.
#include <gtest/gtest.h>
#include <cstring>
#include <memory>
#include <set>
#include <vector>
#include "common/allocator.h"

using namespace spead2gpu;

TEST(MemoryAllocator, LargeHeapsReuseFreedMappingsOfTheirLengthOnly)
{
    auto alloc = std::make_shared<memory_allocator>();
    // Mapped lengths are whole 2 MiB huge pages: 16 MiB + 1000 maps 18 MiB.
    const std::size_t a_size = large_heap_mapping + 1000, d_size = large_heap_mapping + 2 * 1024 * 1024;
    ASSERT_EQ(large_mapping_length(a_size), large_mapping_length(d_size));
    auto a = alloc->allocate(a_size, nullptr);
    std::uint8_t *const a_ptr = a.get();
    std::memset(a_ptr, 0x5a, a_size);
    auto b = alloc->allocate(large_heap_mapping, nullptr);
    EXPECT_NE(b.get(), a_ptr); // a is live: never handed out twice
    a.reset();
    // A request of another mapped length does not take a's mapping...
    auto c = alloc->allocate(large_heap_mapping, nullptr);
    EXPECT_NE(c.get(), a_ptr);
    // ...one of the same mapped length does, and the memory is usable.
    auto d = alloc->allocate(d_size, nullptr);
    EXPECT_EQ(d.get(), a_ptr);
    std::memset(d.get(), 0xa5, d_size);
    // Small requests come from malloc, not from the cache.
    b.reset();
    auto small = alloc->allocate(4096, nullptr);
    EXPECT_NE(small.get(), b.get());
}

TEST(MemoryAllocator, CacheKeepsAtMostItsCapOfFreedMappings)
{
    auto alloc = std::make_shared<memory_allocator>();
    const std::size_t n = large_heap_cache_bytes / large_heap_mapping + 3;
    std::vector<memory_allocator::pointer> live;
    std::set<std::uint8_t *> first;
    for (std::size_t i = 0; i < n; i++)
    {
        live.push_back(alloc->allocate(large_heap_mapping, nullptr));
        first.insert(live.back().get());
    }
    live.clear(); // the first cap's worth are kept, the rest unmapped
    std::size_t reused = 0;
    for (std::size_t i = 0; i < n; i++)
    {
        live.push_back(alloc->allocate(large_heap_mapping, nullptr));
        live.back()[large_heap_mapping - 1] = 1; // mapped and writable
        reused += first.count(live.back().get());
    }
    // Unmapped ones may come back at the same address from the kernel, so
    // only the lower bound is exact.
    EXPECT_GE(reused, large_heap_cache_bytes / large_heap_mapping);
    EXPECT_LE(reused, n);
}

TEST(MemoryAllocator, FreedMappingsOutliveNothing)
{
    // Buffers keep their allocator alive; the cache is released with it.
    memory_allocator::pointer p;
    {
        auto alloc = std::make_shared<memory_allocator>();
        p = alloc->allocate(large_heap_mapping, nullptr);
        alloc->allocate(large_heap_mapping, nullptr).reset(); // cached
    }
    p[0] = 7; // still valid: the deleter holds the allocator
    p.reset(); // last reference: cached mappings unmapped by the destructor
    SUCCEED();
}
