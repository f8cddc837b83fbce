/**
 * @file send_stream.h
 * Send streams: a bounded queue of heap groups, packetised by a worker on
 * the stream's thread pool, rate limited, and handed to a transport writer.
 */
#pragma once

#include <chrono>

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <system_error>
#include <vector>
#include "common/constants.h"
#include "send/heap/heap.h"
#include "send/heap/packet_generator.h"
#include "send/writer/writer.h"
#include "common/thread_pool.h"

namespace spead2gpu
{
namespace send
{

/// How the stream limits its rate (only software limiting is implemented; HW/AUTO are accepted).
enum class rate_method : int
{
    SW = 0,
    HW = 1,
    AUTO = 2
};

/// How the packets of the heaps of one group are interleaved.
enum class group_mode : int
{
    ROUND_ROBIN = 0, ///< one packet from each unfinished heap in turn
    SERIAL = 1 ///< all packets of a heap before the next heap
};

/**
 * Send stream configuration. Setters validate like spead2 and throw
 * std::invalid_argument with spead2's messages.
 */
class stream_config
{
public:
    static constexpr std::size_t default_max_packet_size = 1472;
    static constexpr double default_rate = 0.0;
    static constexpr std::size_t default_burst_size = 65536;
    static constexpr std::size_t default_max_heaps = 4;
    static constexpr double default_burst_rate_ratio = 1.05;
    static constexpr rate_method default_rate_method = rate_method::AUTO;

private:
    std::size_t max_packet_size = default_max_packet_size;
    double rate = default_rate;
    std::size_t burst_size = default_burst_size;
    std::size_t max_heaps = default_max_heaps;
    double burst_rate_ratio = default_burst_rate_ratio;
    rate_method method = default_rate_method;

public:
    /// Maximum packet size in bytes (rounded down to a multiple of 8 when packetising).
    std::size_t get_max_packet_size() const { return max_packet_size; }
    stream_config &set_max_packet_size(std::size_t size)
    {
        max_packet_size = size;
        return *this;
    }

    /// Rate in bytes per second; 0 means unlimited.
    double get_rate() const { return rate; }
    /// @throws std::invalid_argument("rate must be non-negative") if negative or NaN
    stream_config &set_rate(double rate);

    /// Bytes sent at the burst rate before the rate limiter waits.
    std::size_t get_burst_size() const { return burst_size; }
    stream_config &set_burst_size(std::size_t size)
    {
        burst_size = size;
        return *this;
    }

    /// Maximum number of heaps queued or in flight.
    std::size_t get_max_heaps() const { return max_heaps; }
    /// @throws std::invalid_argument("max_heaps must be positive") if 0
    stream_config &set_max_heaps(std::size_t max_heaps);

    /// Ratio of the burst rate (catch-up rate) to the nominal rate.
    double get_burst_rate_ratio() const { return burst_rate_ratio; }
    /// @throws std::invalid_argument("burst rate ratio must be at least 1.0 and finite")
    stream_config &set_burst_rate_ratio(double ratio);

    rate_method get_rate_method() const { return method; }
    stream_config &set_rate_method(rate_method m)
    {
        method = m;
        return *this;
    }

    /// rate * burst_rate_ratio
    double get_burst_rate() const { return rate * burst_rate_ratio; }
};

/**
 * A heap queued for sending. The heap is referenced by raw pointer: the
 * caller keeps it alive (and unmodified) until the completion handler runs.
 */
struct heap_reference
{
    const heap *h = nullptr;
    /// Heap counter; negative means "next value of the stream's sequence".
    s_item_pointer_t cnt = -1;
    /// Substream (destination) index.
    std::size_t substream_index = 0;
    /// Rate in bytes/s for this heap; negative means the stream's rate, 0 unlimited.
    double rate = -1.0;
};

/**
 * Completion handler: error (clear on success) and bytes transferred.
 * Runs on a worker thread (or, for immediate failures, on the calling
 * thread before async_send_heaps returns). It must not block for long and
 * must not take the Python GIL; it must not throw.
 */
using completion_handler = std::function<void(const std::error_code &, item_pointer_t)>;

/**
 * A send stream. Heaps are queued in groups with async_send_heaps (at most
 * max_heaps heaps queued or in flight); a worker task on the thread pool
 * packetises them (reading item data at that moment), applies the rate
 * limit and passes batches of packets to the writer. The handler of a group
 * runs once all its packets have been written, after its queue slots have
 * been released.
 *
 * Rate limiting (spead2 semantics): the stream keeps a nominal schedule
 * (bytes / rate) and a burst schedule (bytes / (rate * burst_rate_ratio));
 * after every burst_size bytes it waits until the later of the two, so a
 * sender that fell behind catches up at no more than the burst rate. After
 * the stream has been idle, the schedules restart from the current time.
 * Waits use a timerfd watched by the thread pool, so no worker is blocked.
 */
class stream
{
    class timer_watch;
    struct heap_slot
    {
        std::optional<packet_generator> gen;
        std::size_t substream = 0;
        double rate = 0.0; ///< bytes/s; 0 = unlimited
        double burst_rate = 0.0;
        std::size_t group = 0; ///< absolute index of the owning group
    };
    struct group_slot
    {
        std::size_t first = 0; ///< absolute index of the first heap
        std::size_t n = 0;
        group_mode mode = group_mode::ROUND_ROBIN;
        completion_handler handler;
        std::error_code ec;
        item_pointer_t bytes = 0;
        std::size_t heaps_done = 0; ///< heaps whose last packet was written
        std::size_t remaining = 0; ///< heaps with packets still to generate
        std::size_t cursor = 0; ///< next heap (relative) to take a packet from
    };

    std::shared_ptr<thread_pool> pool;
    const stream_config config;
    std::unique_ptr<writer> w;
    const std::size_t capacity;
    const std::size_t num_substreams;

    std::vector<heap_slot> heaps;
    std::vector<group_slot> groups;

    // Protected by mutex
    std::mutex mutex;
    std::condition_variable idle_cond;
    std::size_t heap_head = 0, heap_tail = 0; ///< absolute indices
    std::size_t group_head = 0, group_tail = 0; ///< absolute indices
    bool worker_active = false;
    item_pointer_t next_cnt = 1;
    item_pointer_t step_cnt = 1;

    // Worker-only state
    std::size_t group_cur = 0; ///< group being packetised
    std::size_t group_snapshot = 0; ///< group_tail as last seen by the worker
    std::vector<transmit_packet> batch;
    std::size_t batch_n = 0;
    double t_nominal = 0.0; ///< seconds (steady clock)
    double t_burst = 0.0;
    std::size_t rate_bytes = 0; ///< rate-limited bytes since the last wait
    bool wait_pending = false;
    double wait_target = 0.0; ///< time the current rate wait ends

    int timer_fd = -1;
    std::unique_ptr<timer_watch> timer;

    void start_worker();
    void run();
    void on_write_done();
    void on_timer();
    std::size_t fill_batch();
    void process_batch();
    void complete_group(group_slot &g);
    static double now_seconds();

public:
    /**
     * @param pool    thread pool running the worker (kept alive by the stream)
     * @param config  stream configuration
     * @param w       the transport
     */
    stream(std::shared_ptr<thread_pool> pool, const stream_config &config, std::unique_ptr<writer> w);
    /// Waits for queued heaps (flush), then tears down.
    virtual ~stream();
    stream(const stream &) = delete;
    stream &operator=(const stream &) = delete;

    /// The configuration.
    const stream_config &get_config() const { return config; }
    /// Number of substreams (from the writer).
    std::size_t get_num_substreams() const { return num_substreams; }
    /// The transport.
    writer &get_writer() const { return *w; }
    /// The thread pool.
    const std::shared_ptr<thread_pool> &get_thread_pool() const { return pool; }

    /**
     * Set the heap counter sequence used for heaps queued with cnt < 0: the
     * next such heap gets @a next (masked to heap_address_bits), then
     * next + step, and so on.
     * @throws std::invalid_argument("step cannot be 0")
     */
    void set_cnt_sequence(item_pointer_t next, item_pointer_t step);

    /**
     * Queue a group of heaps. Checks, heap by heap: substream index (EINVAL),
     * queue space (EAGAIN), explicit cnt < 2^heap_address_bits (EINVAL); then
     * builds the packet generators, which may throw std::invalid_argument
     * (packet size too small): in that case nothing is queued and the handler
     * is not called. On any other failure the handler is called with the
     * error before returning false. An empty group fails with EINVAL.
     *
     * @return true if the group was queued.
     */
    bool async_send_heaps(const heap_reference *refs, std::size_t n, completion_handler handler, group_mode mode);

    /// Queue a single heap (see async_send_heaps).
    bool async_send_heap(const heap &h, completion_handler handler, s_item_pointer_t cnt = -1,
                         std::size_t substream_index = 0, double rate = -1.0);

    /// Block until every queued heap has been sent and its handler has run.
    void flush();
    /// Wait at most @a timeout for the queue to drain; returns whether it did.
    bool flush_for(std::chrono::nanoseconds timeout);
};

/// A stream that collects the packets in memory (spead2 BytesStream).
class bytes_stream : public stream
{
public:
    bytes_stream(std::shared_ptr<thread_pool> pool, const stream_config &config = stream_config());
    /// Everything sent so far.
    std::string getvalue() const;
    /// Number of bytes sent so far.
    std::size_t size() const;
    /// Copy the first @a n bytes sent (n ≤ size()) to @a dest: one copy where getvalue() makes a string.
    void copy_to(std::uint8_t *dest, std::size_t n) const;
};

/// A stream that sends into in-process queues, one per substream (spead2 InprocStream).
class inproc_stream : public stream
{
public:
    /// @throws std::invalid_argument("queues is empty")
    inproc_stream(std::shared_ptr<thread_pool> pool, std::vector<std::shared_ptr<inproc_queue>> queues,
                  const stream_config &config = stream_config());
    /// The queues, one per substream.
    const std::vector<std::shared_ptr<inproc_queue>> &get_queues() const;
};

} // namespace send
} // namespace spead2gpu
