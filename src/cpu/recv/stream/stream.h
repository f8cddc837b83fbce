/**
 * @file recv_stream.h
 * Receive stream base: configuration, live-heap storage per substream,
 * batched packet admission, statistics, readers and stopping.
 */
#pragma once

#include <condition_variable>
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>
#include "common/allocator.h"
#include "common/logging.h"
#include "common/memcpy.h"
#include "recv/heap/live_heap.h"
#include "recv/heap/slot_table.h"
#include "recv/packet/packet.h"
#include "recv/stream/stats.h"
#include "common/thread_pool.h"

namespace spead2gpu::recv
{

/// Stream options (Python: recv.StreamConfig). Setters validate like spead2.
class stream_config
{
public:
    static constexpr std::size_t default_max_heaps = 4;
    /// Default bound on one heap's length (HEAP_LENGTH, or an unsized heap's payload end): 2 GiB.
    static constexpr std::size_t default_max_heap_length = std::size_t(1) << 31;
    /// Default bound on one heap's distinct item pointers (and out-of-order payload fragments).
    static constexpr std::size_t default_max_heap_items = std::size_t(1) << 20;

private:
    std::size_t max_heaps = default_max_heaps;
    std::size_t substreams = 1;
    std::uint32_t bug_compat = 0;
    memcpy_function_id memcpy = memcpy_function_id::STD;
    std::shared_ptr<memory_allocator> allocator = std::make_shared<memory_allocator>();
    bool stop_on_stop_item = true;
    bool allow_unsized_heaps = true;
    bool allow_out_of_order = false;
    std::uint64_t stream_id = 0;
    bool explicit_start = false;
    bool extended_stats = false;
    std::size_t max_heap_length = default_max_heap_length;
    std::size_t max_heap_items = default_max_heap_items;
    std::vector<stat_config> stats = default_stat_configs();

public:
    stream_config &set_max_heaps(std::size_t v);
    std::size_t get_max_heaps() const { return max_heaps; }
    stream_config &set_substreams(std::size_t v);
    std::size_t get_substreams() const { return substreams; }
    stream_config &set_bug_compat(std::uint32_t v);
    std::uint32_t get_bug_compat() const { return bug_compat; }
    stream_config &set_memcpy(memcpy_function_id v);
    memcpy_function_id get_memcpy() const { return memcpy; }
    stream_config &set_memory_allocator(std::shared_ptr<memory_allocator> v);
    const std::shared_ptr<memory_allocator> &get_memory_allocator() const { return allocator; }
    stream_config &set_stop_on_stop_item(bool v)
    {
        stop_on_stop_item = v;
        return *this;
    }
    bool get_stop_on_stop_item() const { return stop_on_stop_item; }
    stream_config &set_allow_unsized_heaps(bool v)
    {
        allow_unsized_heaps = v;
        return *this;
    }
    bool get_allow_unsized_heaps() const { return allow_unsized_heaps; }
    stream_config &set_allow_out_of_order(bool v)
    {
        allow_out_of_order = v;
        return *this;
    }
    bool get_allow_out_of_order() const { return allow_out_of_order; }
    stream_config &set_stream_id(std::uint64_t v)
    {
        stream_id = v;
        return *this;
    }
    std::uint64_t get_stream_id() const { return stream_id; }
    stream_config &set_explicit_start(bool v)
    {
        explicit_start = v;
        return *this;
    }
    bool get_explicit_start() const { return explicit_start; }
    /**
     * Also report spead2gpu's own statistics (names starting "spead2gpu.":
     * malformed and rejected packets, kernel drops, and a chunk stream's bad
     * placements and free-chunk waits). Off by default, so that a stream's
     * statistics are exactly spead2's and code that indexes them or counts
     * them keeps working. The counters run either way.
     */
    stream_config &set_extended_stats(bool v)
    {
        extended_stats = v;
        return *this;
    }
    bool get_extended_stats() const { return extended_stats; }
    /**
     * Refuse packets of heaps longer than this (their HEAP_LENGTH, or for an
     * unsized heap the end of its payload): a hostile packet must not make
     * the stream allocate the 2^40 bytes its header claims. spead2 has no
     * such bound; heaps this long (2 GiB by default) are not SPEAD practice.
     */
    stream_config &set_max_heap_length(std::size_t v);
    std::size_t get_max_heap_length() const { return max_heap_length; }
    /**
     * Refuse packets that would give one heap more than this many distinct
     * item pointers (or, out of order, payload fragments), so that a flood of
     * packets for one heap cannot grow its bookkeeping without bound.
     */
    stream_config &set_max_heap_items(std::size_t v);
    std::size_t get_max_heap_items() const { return max_heap_items; }

    /// Register a custom statistic; returns its index. Duplicate names throw invalid_argument.
    std::size_t add_stat(const std::string &name, stat_mode mode = stat_mode::COUNTER);
    const std::vector<stat_config> &get_stats() const { return stats; }
    /// Index of @a name; throws std::out_of_range if unknown.
    std::size_t get_stat_index(const std::string &name) const;
    std::size_t next_stat_index() const { return stats.size(); }
};

class stream;
class add_packet_state;

/**
 * A packet source attached to a stream. Readers feed packets with
 * stream::add_packet_state and report end of input with stream::stop_received.
 * A reader owns its sockets and files; stop() releases them.
 */
class reader
{
protected:
    stream &owner;

public:
    explicit reader(stream &owner) : owner(owner) {}
    virtual ~reader() = default;
    /// Begin delivering packets (called once, at add time or at start()).
    virtual void start() = 0;
    /**
     * Stop delivering, wait until no callback of this reader runs, then
     * close its sockets and files (as spead2 does when a stream stops).
     * Idempotent. Called without the stream lock held, never from one of
     * this reader's own callbacks; start() after stop() does nothing.
     */
    virtual void stop() = 0;
};

/**
 * Base of every receive stream. Subclasses implement heap_ready and may
 * hook into stopping (stop_requested, stopped_locked); stop() and
 * stop_received() themselves are not virtual. Packets are admitted in batches: an
 * add_packet_state holds the stream lock for the whole batch and merges
 * the batch's statistics when it ends.
 */
class stream
{
    friend class add_packet_state;

protected:
    std::shared_ptr<thread_pool> pool;
    /**
     * The configuration the stream runs with: the user's statistics, then a
     * subclass's spead2 statistics, then every spead2gpu extension
     * statistic. Stat indices are indices into this list.
     */
    stream_config config;
    /**
     * What get_config() shows: config with the extension statistics left
     * out unless extended_stats is set, i.e. exactly what spead2 shows.
     */
    stream_config user_config;
    /// All statistics (config's list): how each combines when batches merge.
    std::shared_ptr<const std::vector<stat_config>> all_stat_configs;
    /// The statistics get_stats() reports: a prefix of all_stat_configs (user_config's list).
    std::shared_ptr<const std::vector<stat_config>> stat_configs;
    const std::size_t malformed_index, rejected_index;
    live_heap_options heap_opts;

    /// Held for a batch of packets and while stopping.
    std::mutex mutex;
    /**
     * Guards the reads of @ref stopped made outside a batch (attach,
     * is_stopped), so that they never wait for the batch lock: a worker
     * blocked on a full ring holds that lock until someone consumes, and
     * adding a reader before starting the consumer must not deadlock.
     * Taken after @ref mutex (stop_received runs inside a batch); nothing
     * else is ever taken while it is held, except the thread pool's queue
     * (a reader's start() may post a task).
     */
    std::mutex stop_mutex;
    /// The stream has stopped (by either route): written with both mutex and stop_mutex held, read under either.
    bool stopped = false;
    /// Readers start as they are added (set at construction, or by an explicit start()); under readers_mutex.
    bool started = false;
    /// The heaps under reassembly (used under mutex).
    slot_table slots;
    /// The current batch's statistics (used under mutex), merged into stats when it ends.
    std::vector<std::uint64_t> batch_stats;
    /// Scratch heap for single-packet heaps (under mutex), reused so that its vectors' capacity is kept.
    live_heap single_packet_heap;
    /// The batch in progress, if any (under mutex): stop_received publishes its statistics.
    add_packet_state *current_batch = nullptr;

    mutable std::mutex stats_mutex;
    /// Totals of every statistic (all_stat_configs), extension ones included.
    std::vector<std::uint64_t> stats;

    /// Builds a reader for this stream (bindings capture the arguments by value).
    using reader_factory = std::function<std::unique_ptr<reader>(stream &)>;

    /**
     * Held while readers are added, started or stopped; taken before
     * stop_mutex (and before mutex, which only finish_stop takes and never
     * with this held). Lock order: readers_mutex, mutex, stop_mutex,
     * stats_mutex.
     */
    std::mutex readers_mutex;
    std::vector<std::unique_ptr<reader>> readers;
    /// UDP readers that bind a port, added before an explicit start(): built by start() (as spead2 does).
    std::vector<reader_factory> deferred_readers;
    bool readers_stopped = false;

    /**
     * Shared with the task that stop_received posts to stop (and close) the
     * readers; the destructor clears @c owner so that a task still queued
     * then does nothing.
     */
    struct reader_closer
    {
        std::mutex mutex;
        stream *owner;
    };
    std::shared_ptr<reader_closer> closer;

    /// One limiter per way a packet fails to decode, so that one kind of garbage cannot hide another.
    std::array<rate_limited_log, decode_status_count> decode_logs;
    /// One limiter per way a heap refuses a packet.
    std::array<rate_limited_log, packet_result_count> refusal_logs;
    rate_limited_log bad_packet_log;

    /**
     * A heap is done (complete, evicted or flushed). Called with the lock
     * held. It may take what it needs of @a h (a ring stream takes it all);
     * the stream clears and reuses whatever is left, so a chunk stream,
     * which takes nothing, costs no allocation per heap.
     */
    virtual void heap_ready(live_heap &&h) = 0;
    /// Flush all live heaps to heap_ready (as incomplete where they are). Lock held.
    void flush();
    /// Stop readers (waits for them, closes their sockets and files); no lock held.
    void stop_readers();
    /// Keep @a r and start it if @a start_now; drops it if the stream has stopped. readers_mutex held.
    void attach(std::unique_ptr<reader> r, bool start_now);
    /// Increment a stat immediately (visible while a batch is in progress).
    void add_stat_now(std::size_t index, std::uint64_t value);
    /**
     * Publish what the batch in progress (if any) has counted so far, lock
     * held: before a worker blocks on a full ring, and when the stream
     * stops, so that stats are current while it waits and final at the end.
     */
    void publish_batch_stats();
    /**
     * Hook: the first step of every stop() call, before the stream lock is
     * taken. Ring streams stop their rings here, so that a worker blocked on
     * a full ring (holding the lock) lets go; a group member stops its group.
     */
    virtual void stop_requested() {}
    /**
     * Hook: called exactly once, with the lock held, when the stream stops
     * by either route, after the live heaps have been flushed.
     * @param by_user  true for stop(), false for stop_received()
     */
    virtual void stopped_locked(bool by_user) {}
    /// stop() without stop_requested(): what a group does to each member. Idempotent.
    void finish_stop();

public:
    /**
     * @param extra_stats      a subclass's statistics that spead2 also has
     *                         (a chunk stream's too_old_heaps, rejected_heaps), or
     *                         that belong to a spead2gpu-only feature the user chose
     *                         (a chunk layout's); always reported
     * @param extension_stats  spead2gpu's additions to spead2's statistics;
     *                         reported only with extended_stats
     */
    stream(std::shared_ptr<thread_pool> pool, const stream_config &config, std::vector<stat_config> extra_stats = {},
           std::vector<stat_config> extension_stats = {});
    virtual ~stream();
    stream(const stream &) = delete;
    stream &operator=(const stream &) = delete;

    /// The configuration as the user sees it (spead2's statistics unless extended_stats).
    const stream_config &get_config() const { return user_config; }
    /// Index of any statistic of this stream, extension ones included; throws std::out_of_range.
    std::size_t stat_index(const std::string &name) const { return config.get_stat_index(name); }
    thread_pool &get_thread_pool() { return *pool; }
    const std::shared_ptr<thread_pool> &get_thread_pool_ptr() const { return pool; }
    /// Snapshot of the statistics.
    stream_stats get_stats() const;

    /**
     * Construct and attach a reader. The factory is called with the stream;
     * the reader starts now unless explicit_start is set and start() has not
     * been called yet. A reader that @a binds a port is, in
     * that case, not even built until start() (as in spead2: the port stays
     * free until then, and a bind error is raised by start()). Throws
     * std::runtime_error after an explicit start(); on a stopped stream the
     * reader is built (validating arguments) and dropped, closing its sockets.
     */
    void add_reader(reader_factory factory, bool binds = false);
    /// Start readers added so far (explicit_start mode), building deferred ones; later readers start at once.
    void start();
    /**
     * Stop the stream (user stop): stop_requested(), then the stop itself
     * (flush live heaps, stopped_locked(true), stop all readers and close
     * their sockets and files) before returning. Idempotent, callable from
     * any thread except a reader callback.
     */
    void stop();
    /**
     * End of input from the network side (stop item, EOF). Called with the
     * lock held (inside a batch). Flushes heaps, marks the stream stopped and
     * calls stopped_locked(false); readers notice and stop feeding, and a
     * task posted to the thread pool stops them and closes their sockets and
     * files shortly afterwards. Once only: a stopped stream ignores it.
     */
    void stop_received();
    /// True once the stream has stopped (by either route).
    bool is_stopped();
};

/**
 * RAII batch of packets: takes the stream lock, admits packets, and merges
 * per-batch statistics (packets, batches, max_batch, …) at destruction.
 */
/// spead2's log text for a datagram longer than the reader's max_size.
constexpr const char *truncated_datagram_text = "dropped packet due to truncation";

class add_packet_state
{
    friend class stream;
    stream &owner;
    std::unique_lock<std::mutex> lock;
    std::uint64_t packets = 0; ///< packets admitted since the last publish_stats
    std::uint64_t published_packets = 0; ///< packets of this batch already published
    std::size_t last_have = 0; ///< bytes there were, for the last failed decode's message
    std::size_t last_need = 0; ///< bytes the packet claimed, for the last failed decode's message

    /// Count and log a packet refused by the stream or a heap; returns false.
    bool refuse(packet_result why);
    /// Move @a slot's heap (if any) to heap_ready as an evicted heap.
    void evict(live_heap &slot);
    /// Hand a complete heap to heap_ready.
    void deliver(live_heap &&h);
    /**
     * Merge what this batch has counted so far into the stream's statistics
     * and start counting afresh. Called at the end of the batch, and by
     * stop_received before the rings end: a consumer that sees the end of
     * the stream then reads final statistics.
     */
    void publish_stats();

public:
    /// Outcome of the last add_packet(data, max_size) decode.
    decode_status last_status = decode_status::ok;

    explicit add_packet_state(stream &owner);
    ~add_packet_state();
    /// The stream has stopped: the reader should stop feeding packets.
    bool is_stopped() const { return owner.stopped; }
    /**
     * Decode and admit the packet at @a data (at most @a max_size bytes).
     * Returns the decoded packet size, or 0 if the bytes were not a valid
     * packet (not counted: the reader decides what one malformed packet is,
     * and calls add_malformed()).
     */
    std::size_t add_packet(const std::uint8_t *data, std::size_t max_size);
    /**
     * Admit one datagram of exactly @a len bytes (UDP semantics): longer than
     * @a max_size, undecodable, or a SPEAD size other than @a len is counted
     * as malformed.
     */
    void add_datagram(const std::uint8_t *data, std::size_t len, std::size_t max_size);
    /// Count the packet whose decode just failed (last_status) as malformed, with spead2's log text.
    void add_malformed();
    /// Count one malformed packet that failed for @a why (see decode_status_message for @a have, @a need).
    void add_malformed(decode_status why, std::size_t have = 0, std::size_t need = 0);
    /**
     * Count @a n malformed packets that a reader found without decoding them
     * (a TCP framing error, a truncated datagram or capture record), logging
     * @a text unless it is null (the reader logged already).
     */
    void add_malformed(const char *text, std::uint64_t n = 1);
    /// Admit an already-decoded packet. Returns true if accepted.
    bool add_packet(const packet_header &packet);
    /// Per-batch stats array (custom stats may be incremented here).
    std::uint64_t *batch_stats() { return owner.batch_stats.data(); }
};

} // namespace spead2gpu::recv
