#include "recv/stream/stream.h"
#include <stdexcept>

namespace spead2gpu::recv
{

stream_config &stream_config::set_max_heaps(std::size_t v)
{
    if (v == 0)
        throw std::invalid_argument("max_heaps cannot be 0");
    max_heaps = v;
    return *this;
}

stream_config &stream_config::set_substreams(std::size_t v)
{
    if (v == 0)
        throw std::invalid_argument("substreams cannot be 0");
    substreams = v;
    return *this;
}

stream_config &stream_config::set_max_heap_length(std::size_t v)
{
    if (v == 0)
        throw std::invalid_argument("max_heap_length cannot be 0");
    max_heap_length = v;
    return *this;
}

stream_config &stream_config::set_max_heap_items(std::size_t v)
{
    if (v == 0)
        throw std::invalid_argument("max_heap_items cannot be 0");
    max_heap_items = v;
    return *this;
}

stream_config &stream_config::set_bug_compat(std::uint32_t v)
{
    if (v & ~bug_compat_all)
        throw std::invalid_argument("unknown compatibility bits in bug_compat");
    bug_compat = v;
    return *this;
}

stream_config &stream_config::set_memcpy(memcpy_function_id v)
{
    if (v != memcpy_function_id::STD && v != memcpy_function_id::NONTEMPORAL)
        throw std::invalid_argument("Unknown memcpy function");
    memcpy = v;
    return *this;
}

stream_config &stream_config::set_memory_allocator(std::shared_ptr<memory_allocator> v)
{
    allocator = v ? std::move(v) : std::make_shared<memory_allocator>();
    return *this;
}

std::size_t stream_config::add_stat(const std::string &name, stat_mode mode)
{
    for (const auto &s : stats)
        if (s.name == name)
            throw std::invalid_argument("A statistic called " + name + " already exists");
    stats.push_back(stat_config{name, mode});
    return stats.size() - 1;
}

std::size_t stream_config::get_stat_index(const std::string &name) const
{
    for (std::size_t i = 0; i < stats.size(); i++)
        if (stats[i].name == name)
            return i;
    throw std::out_of_range(name + " is not a known statistic name");
}

/// The user's configuration plus the statistics a subclass reports.
static stream_config with_stats(stream_config config, const std::vector<stat_config> &stats)
{
    for (const auto &s : stats)
        config.add_stat(s.name, s.mode);
    return config;
}

/// Every statistic spead2gpu adds to spead2's, a subclass's first.
static std::vector<stat_config> all_extension_stats(std::vector<stat_config> extension)
{
    for (const char *name : {malformed_packets_stat, rejected_packets_stat, kernel_drops_stat})
        extension.push_back(stat_config{name, stat_mode::COUNTER});
    return extension;
}

stream::stream(std::shared_ptr<thread_pool> pool_, const stream_config &config_, std::vector<stat_config> extra_stats,
               std::vector<stat_config> extension_stats)
    : pool(std::move(pool_)),
      config(with_stats(with_stats(config_, extra_stats), all_extension_stats(std::move(extension_stats)))),
      user_config(config_.get_extended_stats() ? config : with_stats(config_, extra_stats)),
      all_stat_configs(std::make_shared<const std::vector<stat_config>>(config.get_stats())),
      stat_configs(std::make_shared<const std::vector<stat_config>>(user_config.get_stats())),
      malformed_index(config.get_stat_index(malformed_packets_stat)),
      rejected_index(config.get_stat_index(rejected_packets_stat)),
      slots(config.get_max_heaps(), config.get_substreams()), batch_stats(all_stat_configs->size(), 0),
      stats(all_stat_configs->size(), 0), closer(std::make_shared<reader_closer>())
{
    closer->owner = this;
    heap_opts.allow_out_of_order = config.get_allow_out_of_order();
    heap_opts.allow_unsized_heaps = config.get_allow_unsized_heaps();
    heap_opts.memcpy = get_memcpy_function(config.get_memcpy());
    heap_opts.allocator = config.get_memory_allocator().get();
    heap_opts.max_heap_length = config.get_max_heap_length();
    heap_opts.max_heap_items = config.get_max_heap_items();
    started = !config.get_explicit_start();
}

stream::~stream()
{
    {
        // Waits for a close task that is running; cancels any still queued.
        std::lock_guard<std::mutex> lock(closer->mutex);
        closer->owner = nullptr;
    }
    stop_readers();
}

stream_stats stream::get_stats() const
{
    std::lock_guard<std::mutex> lock(stats_mutex);
    return stream_stats(stat_configs, std::vector<std::uint64_t>(stats.begin(), stats.begin() + stat_configs->size()));
}

void stream::add_stat_now(std::size_t index, std::uint64_t value)
{
    std::lock_guard<std::mutex> lock(stats_mutex);
    stats[index] = (*all_stat_configs)[index].combine(stats[index], value);
}

void stream::publish_batch_stats()
{
    if (current_batch)
        current_batch->publish_stats();
}

bool stream::is_stopped()
{
    std::lock_guard<std::mutex> lock(stop_mutex);
    return stopped;
}

void stream::attach(std::unique_ptr<reader> r, bool start_now)
{
    std::unique_lock<std::mutex> lock(stop_mutex);
    if (readers_stopped || stopped)
    {
        // As in spead2, adding to a stopped stream is a no-op: the reader
        // is destroyed (closing its socket) outside the lock.
        lock.unlock();
        return;
    }
    reader *raw = r.get();
    readers.push_back(std::move(r));
    // Started under stop_mutex (start() only arms or posts, never calls
    // back), so that a later stop_received posts its close task after any
    // task this start posts: a close task never waits on a task queued
    // behind it. Not under the batch lock: a worker blocked on a full ring
    // holds that until the ring is drained.
    if (start_now)
        raw->start();
}

void stream::add_reader(reader_factory factory, bool binds)
{
    std::lock_guard<std::mutex> rlock(readers_mutex);
    if (config.get_explicit_start() && started)
        throw std::runtime_error("Cannot add readers after explicit start");
    const bool start_now = started;
    if (binds && !start_now && !readers_stopped)
    {
        // As in spead2, an explicit-start stream binds its ports at start():
        // until then a sender gets "connection refused" rather than filling
        // a socket buffer nobody reads. (TCP acceptors and files: at add time.)
        deferred_readers.push_back(std::move(factory));
        return;
    }
    attach(factory(*this), start_now); // constructed even when stopped, so bad arguments still raise
}

void stream::start()
{
    std::lock_guard<std::mutex> rlock(readers_mutex);
    if (started)
        return;
    started = true;
    std::vector<reader_factory> deferred = std::move(deferred_readers);
    deferred_readers.clear();
    if (readers_stopped)
        return; // stopped before the explicit start: nothing to start
    for (auto &r : readers)
        r->start();
    // A reader that cannot bind raises here, as in spead2; those after it are dropped.
    for (auto &factory : deferred)
        attach(factory(*this), true);
}

void stream::flush()
{
    std::uint64_t flushed = 0, delivered = 0;
    slots.drain(
        [&](live_heap h)
        {
            if (!h.is_complete())
                flushed++;
            delivered++;
            heap_ready(std::move(h));
        });
    if (delivered)
    {
        std::lock_guard<std::mutex> lock(stats_mutex);
        stats[stat_index::HEAPS] += delivered;
        stats[stat_index::INCOMPLETE_HEAPS_FLUSHED] += flushed;
    }
}

void stream::stop_readers()
{
    std::lock_guard<std::mutex> rlock(readers_mutex);
    readers_stopped = true;
    for (auto &r : readers)
        r->stop();
}

void stream::stop()
{
    stop_requested();
    finish_stop();
}

void stream::finish_stop()
{
    {
        std::lock_guard<std::mutex> lock(mutex);
        if (!stopped)
        {
            {
                std::lock_guard<std::mutex> slock(stop_mutex);
                stopped = true;
            }
            flush();
            stopped_locked(true);
        }
    }
    stop_readers();
}

void stream::stop_received()
{
    if (stopped)
        return;
    {
        // Waits for an attach that is starting a reader, so that the close
        // task below is posted after whatever that start() posted.
        std::lock_guard<std::mutex> slock(stop_mutex);
        stopped = true;
    }
    publish_batch_stats();
    flush();
    stopped_locked(false);
    // The readers cannot be stopped here (this runs inside a reader callback,
    // with the stream lock held); a pool task stops them and closes their
    // sockets and files, as spead2 does at the end of a stream.
    pool->post(
        [c = closer]
        {
            std::lock_guard<std::mutex> lock(c->mutex);
            if (c->owner)
                c->owner->stop_readers();
        });
}

add_packet_state::add_packet_state(stream &owner) : owner(owner), lock(owner.mutex)
{
    std::fill(owner.batch_stats.begin(), owner.batch_stats.end(), 0);
    owner.current_batch = this;
}

add_packet_state::~add_packet_state()
{
    publish_stats();
    owner.current_batch = nullptr;
}

void add_packet_state::publish_stats()
{
    auto &bs = owner.batch_stats;
    bs[stat_index::PACKETS] = packets;
    // One batch however many times it publishes; its size so far for the maximum.
    bs[stat_index::BATCHES] = (packets && !published_packets) ? 1 : 0;
    bs[stat_index::MAX_BATCH] = packets + published_packets;
    {
        std::lock_guard<std::mutex> slock(owner.stats_mutex);
        const auto &cfg = *owner.all_stat_configs;
        for (std::size_t i = 0; i < bs.size(); i++)
            if (bs[i] != 0 && i != stat_index::WORKER_BLOCKED)
                owner.stats[i] = cfg[i].combine(owner.stats[i], bs[i]);
    }
    std::fill(bs.begin(), bs.end(), 0);
    published_packets += packets;
    packets = 0;
}

std::size_t add_packet_state::add_packet(const std::uint8_t *data, std::size_t max_size)
{
    packet_header packet;
    last_status = decode_packet(packet, data, max_size);
    if (last_status != decode_status::ok)
    {
        last_have = max_size;
        last_need = packet.size;
        return 0;
    }
    add_packet(packet);
    return packet.size;
}

void add_packet_state::add_datagram(const std::uint8_t *data, std::size_t len, std::size_t max_size)
{
    if (len > max_size)
    {
        add_malformed(truncated_datagram_text);
        return;
    }
    packet_header packet;
    decode_status status = decode_packet(packet, data, len);
    if (status == decode_status::ok && packet.size != len)
        status = decode_status::size_mismatch;
    if (status != decode_status::ok)
    {
        add_malformed(status, len, packet.size);
        return;
    }
    add_packet(packet);
}

void add_packet_state::add_malformed()
{
    add_malformed(last_status, last_have, last_need);
}

void add_packet_state::add_malformed(decode_status why, std::size_t have, std::size_t need)
{
    owner.batch_stats[owner.malformed_index]++;
    owner.decode_logs[std::size_t(why)](log_level::info, [&] { return decode_status_message(why, have, need); });
}

void add_packet_state::add_malformed(const char *text, std::uint64_t n)
{
    owner.batch_stats[owner.malformed_index] += n;
    if (text)
        owner.bad_packet_log(log_level::info, text);
}

bool add_packet_state::refuse(packet_result why)
{
    owner.batch_stats[owner.rejected_index]++;
    const packet_result_log entry = packet_result_message(why);
    owner.refusal_logs[std::size_t(why)](entry.level, entry.text);
    return false;
}

void add_packet_state::evict(live_heap &slot)
{
    if (slot.empty())
        return;
    owner.batch_stats[stat_index::INCOMPLETE_HEAPS_EVICTED]++;
    owner.batch_stats[stat_index::HEAPS]++;
    owner.heap_ready(std::move(slot));
    slot.clear(); // what heap_ready left (a chunk stream leaves it all) is reused, capacity included
}

void add_packet_state::deliver(live_heap &&h)
{
    owner.batch_stats[stat_index::HEAPS]++;
    owner.heap_ready(std::move(h));
    h.clear(); // a slot (or the single-packet scratch) is free again, its capacity kept
}

bool add_packet_state::add_packet(const packet_header &packet)
{
    stream &s = owner;
    if (s.stopped)
        return false;
    packets++;
    // As in spead2, checked per packet before any heap is looked up or
    // started, so a refused packet never evicts a heap.
    if (packet.heap_length < 0 && !s.heap_opts.allow_unsized_heaps)
        return refuse(packet_result::unsized);
    const std::uint32_t bug_compat = s.config.get_bug_compat();
    const bool stop_on_stop_item = s.config.get_stop_on_stop_item();

    if (packet.heap_length >= 0 && packet.payload_offset == 0 && packet.payload_length == packet.heap_length)
    {
        // Single-packet heap: no lookup and no storage, but (as in spead2) it
        // still advances its substream's slot ring, evicting the occupant.
        live_heap &slot = s.slots.claim(packet.heap_cnt);
        evict(slot);
        // Reused for every single-packet heap: a chunk stream's heap_ready
        // leaves its vectors, so their capacity is kept and nothing is
        // allocated per heap.
        live_heap &h = s.single_packet_heap;
        h.reset(packet, bug_compat);
        const packet_result result = h.add_packet(packet, s.heap_opts);
        if (result != packet_result::accepted)
            return refuse(result);
        s.batch_stats[stat_index::SINGLE_PACKET_HEAPS]++;
        if (!h.is_complete())
        {
            // All its payload is here, but an item points beyond it: the heap
            // can never complete. Keep it (as spead2 does) until evicted or flushed.
            slot = std::move(h);
            if (slot.is_end_of_stream() && stop_on_stop_item)
                s.stop_received();
            return true;
        }
        if (h.is_end_of_stream() && stop_on_stop_item)
        {
            s.stop_received();
            return true;
        }
        deliver(std::move(h));
        return true;
    }

    live_heap *target = s.slots.find(packet.heap_cnt, s.batch_stats[stat_index::SEARCH_DIST]);
    if (!target)
    {
        if (!s.config.get_allow_out_of_order() && packet.payload_offset != 0)
            return refuse(packet_result::missed_start);
        live_heap &slot = s.slots.claim(packet.heap_cnt);
        evict(slot);
        slot.reset(packet, bug_compat);
        const packet_result result = slot.add_packet(packet, s.heap_opts);
        if (result != packet_result::accepted)
        {
            slot.clear();
            return refuse(result);
        }
        target = &slot;
    }
    else
    {
        const packet_result result = target->add_packet(packet, s.heap_opts);
        if (result != packet_result::accepted)
            return refuse(result);
    }

    if (target->is_end_of_stream() && stop_on_stop_item)
    {
        // A complete stop heap is dropped; an incomplete one is flushed with
        // the others (spead2 behaviour).
        if (target->is_complete())
            target->clear();
        s.stop_received();
        return true;
    }
    if (target->is_complete())
        deliver(std::move(*target));
    return true;
}

} // namespace spead2gpu::recv
