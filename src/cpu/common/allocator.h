/**
 * @file allocator.h
 * Memory allocators for heap payloads (and, later, chunks): the default
 * allocator, an mmap allocator and a pool of fixed-size buffers.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace spead2gpu
{

class thread_pool;

/**
 * Map @a len bytes of fresh zeroed memory for a large buffer, rounding
 * @a len up to what was mapped. From @ref large_mapping_huge bytes the
 * mapping is 2 MiB-aligned and advised for transparent huge pages, so that
 * the first touch costs one page fault per 2 MiB instead of one per 4 KiB
 * (page faults, not the copy, bounded a fresh 64 MiB buffer's fill rate).
 * @throws std::bad_alloc if the kernel refuses
 */
std::uint8_t *map_large(std::size_t &len);
/// The length map_large maps for a request of @a len bytes.
std::size_t large_mapping_length(std::size_t len);
/// Release what map_large returned (@a len as map_large left it).
void unmap_large(std::uint8_t *ptr, std::size_t len);
/// Size from which map_large advises transparent huge pages.
constexpr std::size_t large_mapping_huge = 4 * 1024 * 1024;
/// Size from which the default memory_allocator maps each buffer with map_large (and recycles it).
constexpr std::size_t large_heap_mapping = 16 * 1024 * 1024;
/// Most bytes of freed large mappings one default memory_allocator keeps for reuse.
constexpr std::size_t large_heap_cache_bytes = 128 * 1024 * 1024;

/**
 * Base allocator; also the default (malloc-backed).
 * Allocations are returned as @ref pointer, whose deleter keeps the
 * allocator alive and returns the memory to it.
 */
class memory_allocator : public std::enable_shared_from_this<memory_allocator>
{
public:
    /// Deleter that hands the memory back to the allocator that produced it.
    struct deleter
    {
        std::shared_ptr<memory_allocator> allocator;
        void *user = nullptr;
        void operator()(std::uint8_t *ptr) const
        {
            if (allocator)
                allocator->free(ptr, user);
        }
    };
    using pointer = std::unique_ptr<std::uint8_t[], deleter>;

    memory_allocator() = default;
    memory_allocator(const memory_allocator &) = delete;
    memory_allocator &operator=(const memory_allocator &) = delete;
    virtual ~memory_allocator();

    /**
     * Allocate @a size bytes. @a hint is opaque context (e.g. the first
     * packet of the heap); the default allocator ignores it.
     */
    virtual pointer allocate(std::size_t size, void *hint);

protected:
    /// Release memory obtained from allocate; @a user is what make_pointer stored.
    virtual void free(std::uint8_t *ptr, void *user);
    pointer make_pointer(std::uint8_t *ptr, void *user = nullptr)
    {
        return pointer(ptr, deleter{shared_from_this(), user});
    }

private:
    /// A freed map_large mapping and its length.
    struct mapping
    {
        std::uint8_t *ptr;
        std::size_t len;
    };
    /**
     * Guards @ref large_free and @ref large_free_bytes (taken once per
     * large heap, never per packet). The default allocator's only state.
     */
    std::mutex large_mutex;
    /**
     * Freed mappings of heaps of large_heap_mapping bytes or more, reused by
     * the next heap of the same mapped length. Without it every such heap
     * is fresh memory, faulted in (and zeroed by the kernel) at first touch:
     * 16 MiB heaps from a memory buffer ran at 4.2 GB/s, and 6.2 with it
     * (spead2 4.1 to 4.9; issue 11).
     */
    std::vector<mapping> large_free;
    std::size_t large_free_bytes = 0; ///< sum of large_free's lengths, at most large_heap_cache_bytes
};

/// Allocates with mmap (optionally huge pages, falling back to normal pages).
class mmap_allocator : public memory_allocator
{
    int flags;
    bool prefer_huge;

public:
    explicit mmap_allocator(int flags = 0, bool prefer_huge = false);
    pointer allocate(std::size_t size, void *hint) override;

protected:
    void free(std::uint8_t *ptr, void *user) override;
};

/**
 * Pool of buffers of size @a upper. Requests in [lower, upper] are served
 * from the pool; others go straight to the base allocator. Up to @a max_free
 * buffers are kept on return. With a thread pool, the pool refills itself in
 * the background whenever fewer than @a low_water buffers are free.
 */
class memory_pool : public memory_allocator
{
    std::shared_ptr<thread_pool> refill_pool;
    std::size_t lower, upper, max_free, initial, low_water;
    std::shared_ptr<memory_allocator> base;
    mutable std::mutex mutex;
    std::vector<pointer> pool;
    bool refilling = false;
    bool warn_on_empty_ = true;

    void refill_task();

public:
    memory_pool(std::size_t lower, std::size_t upper, std::size_t max_free, std::size_t initial,
                std::shared_ptr<memory_allocator> allocator = nullptr);
    memory_pool(std::shared_ptr<thread_pool> tp, std::size_t lower, std::size_t upper, std::size_t max_free,
                std::size_t initial, std::size_t low_water, std::shared_ptr<memory_allocator> allocator = nullptr);
    ~memory_pool() override;

    pointer allocate(std::size_t size, void *hint) override;
    /// Whether to log a warning when a pooled request finds the pool empty.
    bool get_warn_on_empty() const;
    void set_warn_on_empty(bool warn);
    /// Number of buffers currently free in the pool.
    std::size_t free_count() const;

protected:
    void free(std::uint8_t *ptr, void *user) override;
};

} // namespace spead2gpu
