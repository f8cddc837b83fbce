#include "gpu/pipeline.h"
#include <chrono>
#include <cstring>
#include "common/logging.h"

namespace spead2gpu::gpu
{

// ---------------------------------------------------------------------------
// event_recycler
// ---------------------------------------------------------------------------

event_recycler::event_recycler(std::shared_ptr<runtime> rt, int device, action done, failure failed,
                               std::atomic<std::uint64_t> &pending_waits)
    : done(std::move(done)), failed(std::move(failed)), pending_waits(pending_waits), rt(std::move(rt)), device(device)
{
    thread = std::thread([this] { run(); });
}

event_recycler::~event_recycler()
{
    stop();
}

void event_recycler::run()
{
    try
    {
        rt->bind_thread(device);
    }
    catch (std::exception &e)
    {
        log_warning(std::string("spead2gpu: recycler thread cannot select its device: ") + e.what());
    }
    while (true)
    {
        entry e;
        try
        {
            e = queue.pop();
        }
        catch (ringbuffer_stopped &)
        {
            break;
        }
        try
        {
            if (e.ev && !e.ev->query())
            {
                pending_waits++;
                e.ev->synchronize();
            }
        }
        catch (std::exception &ex)
        {
            // The chunk may still be in use by the GPU: never recycle it, and
            // keep its memory (leaked) rather than free memory in flight. The
            // pool is now a chunk short for good: fail loudly, not by hanging.
            e.chunk.release();
            failed(std::string("waiting for a chunk's event failed (the chunk is retired): ") + ex.what());
            continue;
        }
        done(std::move(e.chunk));
    }
}

void event_recycler::push(pipeline_chunk_ptr &&c, event *ev)
{
    entry e{std::move(c), ev};
    try
    {
        queue.push(std::move(e));
    }
    catch (ringbuffer_stopped &)
    {
        // Shutting down: wait here instead.
        try
        {
            if (ev)
                ev->synchronize();
        }
        catch (std::exception &ex)
        {
            log_warning(std::string("spead2gpu: waiting for a released chunk's event failed at shutdown, "
                                    "chunk retired: ") +
                        ex.what());
            e.chunk.release(); // leaked on purpose: the GPU may still use it
            return;
        }
        e.chunk.reset();
    }
}

void event_recycler::stop()
{
    queue.stop();
    if (thread.joinable())
        thread.join();
}

// ---------------------------------------------------------------------------
// chunk_pipeline
// ---------------------------------------------------------------------------

std::unique_ptr<pipeline_chunk> chunk_pipeline::make_chunk(std::size_t slot, memory_kind kind, bool staging)
{
    auto c = std::make_unique<pipeline_chunk>();
    c->slot = slot;
    c->staging = staging;
    c->memory = std::make_shared<buffer>(geom.total(), kind, device_, rt);
    // Device chunks are not zeroed: each is handed out only after a copy of a whole staging chunk into it.
    if (host_addressable(kind))
        c->memory->zero();
    std::uint8_t *base = c->memory->host_ptr();
    if (kind == memory_kind::device) // device addresses, dereferenced on the host only by the emulation
        base = reinterpret_cast<std::uint8_t *>(c->memory->device_ptr());
    c->data = base + geom.data_offset();
    c->data_size = geom.data_size;
    c->present = base + geom.present_offset();
    c->present_size = geom.present_size;
    if (geom.extra_size)
    {
        c->extra = base + geom.extra_offset();
        c->extra_size = geom.extra_size;
    }
    if (kind_ != memory_kind::host)
    {
        if (kind_ == memory_kind::device)
            c->ready = std::make_unique<event>(device_, true, rt);
        if (!staging)
            c->released = std::make_unique<event>(device_, true, rt);
    }
    return c;
}

chunk_pipeline::chunk_pipeline(memory_kind kind, int device, const chunk_geometry &geom_, std::size_t n_chunks,
                               std::size_t n_device_chunks, std::shared_ptr<runtime> rt_)
    : kind_(kind), device_(device), rt(std::move(rt_)), geom(geom_), n_network(n_chunks),
      n_device(kind == memory_kind::device ? n_device_chunks : 0)
{
    if (n_chunks == 0)
        throw std::invalid_argument("a chunk pipeline needs at least one chunk");
    if (kind == memory_kind::device && n_device_chunks == 0)
        throw std::invalid_argument("the 'device' kind needs at least one device chunk");
    if (geom.data_size == 0)
        throw std::invalid_argument("chunk data size must be positive");
    if (needs_gpu(kind))
    {
        if (!rt)
            throw std::invalid_argument("a GPU memory kind needs a runtime");
        rt->require((std::string("memory kind '") + kind_name(kind) + "'").c_str(), device);
    }

    net_data = std::make_shared<recv::chunk_ringbuffer>(n_chunks);
    net_free = std::make_shared<recv::chunk_ringbuffer>(n_chunks);
    const memory_kind network_kind = kind == memory_kind::device ? memory_kind::pinned : kind;
    for (std::size_t i = 0; i < n_chunks; i++)
    {
        auto c = make_chunk(i, network_kind, kind == memory_kind::device);
        if (kind != memory_kind::device)
            consumer_memory.push_back(c->memory);
        net_free->try_push(std::move(c));
    }
    if (kind == memory_kind::device)
    {
        dev_free = std::make_shared<recv::chunk_ringbuffer>(n_device);
        output = std::make_shared<recv::chunk_ringbuffer>(n_device);
        for (std::size_t i = 0; i < n_device; i++)
        {
            auto c = make_chunk(i, memory_kind::device, false);
            consumer_memory.push_back(c->memory);
            dev_free->try_push(std::move(c));
        }
        copy_stream = std::make_unique<stream>(device_, rt);
        staging_recycler = std::make_unique<event_recycler>(
            rt, device_, [this](pipeline_chunk_ptr &&c) { recycle_network(std::move(c)); },
            [this](const std::string &msg) { fail(msg); }, counters.staging_event_waits);
        release_recycler = std::make_unique<event_recycler>(
            rt, device_, [this](pipeline_chunk_ptr &&c) { recycle_device(std::move(c)); },
            [this](const std::string &msg) { fail(msg); }, counters.release_event_waits);
        output->add_producer();
        copy_thread = std::thread([this] { copy_loop(); });
    }
    else
    {
        output = net_data;
        if (kind != memory_kind::host)
            release_recycler = std::make_unique<event_recycler>(
                rt, device_, [this](pipeline_chunk_ptr &&c) { recycle_network(std::move(c)); },
                [this](const std::string &msg) { fail(msg); }, counters.release_event_waits);
    }
}

chunk_pipeline::~chunk_pipeline()
{
    stop();
}

void chunk_pipeline::set_error(const std::string &msg)
{
    {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (error_.empty())
            error_ = msg;
    }
    log_message(log_level::error, "spead2gpu: copy pipeline stopped: " + msg);
}

void chunk_pipeline::fail(const std::string &msg)
{
    set_error(msg);
    output->stop();
    net_data->stop();
    net_free->stop(); // the stream sees a stopped free ring rather than waiting for ever
    if (dev_free)
        dev_free->stop();
}

std::string chunk_pipeline::error()
{
    std::lock_guard<std::mutex> lock(error_mutex);
    return error_;
}

/**
 * The last resort before memory that queued GPU work may use is freed or
 * reused on an error path: log @a why and wait for the whole device. Never
 * throws (if even this fails, nothing better can be done).
 */
static void synchronize_device_after(runtime &rt, const char *why, const std::exception &e, int device) noexcept
{
    log_warning(std::string("spead2gpu: ") + why + " (" + e.what() + "); synchronising the device");
    try
    {
        rt.synchronize_device(device);
    }
    catch (std::exception &)
    {
    }
}

/**
 * Wait until everything queued on copy stream @a cs has finished (the whole
 * device if the stream cannot be waited on); used before memory that a
 * queued copy uses is freed on an error path. Never throws.
 */
static void wait_for_copies(runtime &rt, std::uintptr_t cs, int device) noexcept
{
    try
    {
        rt.synchronize_stream(cs);
    }
    catch (std::exception &e)
    {
        synchronize_device_after(rt, "waiting for the copy stream failed", e, device);
    }
}

void chunk_pipeline::copy_loop()
{
    try
    {
        rt->bind_thread(device_);
        const std::uintptr_t cs = copy_stream->handle();
        while (true)
        {
            pipeline_chunk_ptr s;
            try
            {
                s = net_data->pop();
            }
            catch (ringbuffer_stopped &)
            {
                break;
            }
            pipeline_chunk_ptr d;
            try
            {
                if (auto r = dev_free->try_pop_optional())
                    d = std::move(*r);
                else
                {
                    auto start = std::chrono::steady_clock::now();
                    d = dev_free->pop();
                    counters.copy_waits++;
                    counters.copy_wait_ns += std::uint64_t(
                        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start)
                            .count());
                }
            }
            catch (ringbuffer_stopped &)
            {
                break; // stopped: the staging chunk is dropped with its data
            }
            auto *sc = static_cast<pipeline_chunk *>(s.get());
            auto *dc = static_cast<pipeline_chunk *>(d.get());
            dc->chunk_id = sc->chunk_id;
            dc->stream_id = sc->stream_id;
            // One copy of the whole allocation: data, present and extra.
            rt->memcpy_async(dc->memory->device_ptr(), reinterpret_cast<std::uintptr_t>(sc->memory->host_ptr()),
                             geom.total(), cs);
            // From here the DMA may read s and write d: if recording the events fails,
            // wait for the copy before the exception frees them.
            try
            {
                dc->ready->record(cs);
                sc->ready->record(cs);
            }
            catch (...)
            {
                wait_for_copies(*rt, cs, device_);
                throw;
            }
            counters.chunks_copied++;
            counters.bytes_copied += geom.total();
            event *staging_event = sc->ready.get();
            staging_recycler->push(std::move(s), staging_event);
            try
            {
                output->push(std::move(d));
            }
            catch (ringbuffer_stopped &)
            {
                wait_for_copies(*rt, cs, device_); // never free memory with a copy in flight
                break;
            }
        }
    }
    catch (std::exception &e)
    {
        fail(std::string("the copy thread stopped: ") + e.what());
        return;
    }
    output->remove_producer();
}

void chunk_pipeline::recycle_network(pipeline_chunk_ptr &&c)
{
    if (c->present && c->present_size)
        std::memset(c->present, 0, c->present_size);
    try
    {
        net_free->try_push(std::move(c));
    }
    catch (std::exception &)
    {
        // Stopped (or, impossibly, full): the chunk is dropped; its memory
        // lives on while Python arrays refer to it.
        c.reset();
    }
}

void chunk_pipeline::recycle_device(pipeline_chunk_ptr &&c)
{
    try
    {
        dev_free->try_push(std::move(c));
    }
    catch (std::exception &)
    {
        c.reset();
    }
}

std::unique_ptr<pipeline_chunk> chunk_pipeline::pop()
{
    pipeline_chunk_ptr c;
    if (auto r = output->try_pop_optional())
        c = std::move(*r);
    else
        c = output->pop();
    counters.chunks_delivered++;
    return std::unique_ptr<pipeline_chunk>(static_cast<pipeline_chunk *>(c.release()));
}

std::unique_ptr<pipeline_chunk> chunk_pipeline::try_pop()
{
    pipeline_chunk_ptr c = output->try_pop();
    counters.chunks_delivered++;
    return std::unique_ptr<pipeline_chunk>(static_cast<pipeline_chunk *>(c.release()));
}

void chunk_pipeline::order_before(pipeline_chunk &c, std::uintptr_t stream)
{
    if (c.ready && !c.staging)
        c.ready->wait_on(stream);
}

void chunk_pipeline::release(std::unique_ptr<pipeline_chunk> &&c, bool use_stream, std::uintptr_t stream)
{
    if (!c)
        return;
    counters.chunks_released++;
    event *ev = nullptr;
    if (c->released && use_stream)
    {
        try
        {
            c->released->record(stream);
            ev = c->released.get();
        }
        catch (std::exception &e)
        {
            // Cannot order the recycle after the consumer: wait for the whole device instead.
            synchronize_device_after(*rt, "recording the release event failed", e, device_);
        }
    }
    pipeline_chunk_ptr p(c.release());
    if (ev)
        release_recycler->push(std::move(p), ev); // after stop(), push waits for the event itself
    else if (kind_ == memory_kind::device)
        recycle_device(std::move(p));
    else
        recycle_network(std::move(p));
}

void chunk_pipeline::pump(std::size_t n, std::int64_t first_id)
{
    net_data->add_producer();
    try
    {
        for (std::size_t i = 0; i < n; i++)
        {
            pipeline_chunk_ptr c = net_free->pop();
            c->chunk_id = first_id + std::int64_t(i);
            if (c->present && c->present_size)
                std::memset(c->present, 1, c->present_size);
            net_data->push(std::move(c));
        }
    }
    catch (ringbuffer_stopped &)
    {
    }
    net_data->remove_producer();
}

void chunk_pipeline::stop()
{
    if (stopped.exchange(true))
        return;
    net_data->stop();
    net_free->stop();
    if (dev_free)
        dev_free->stop();
    output->stop();
    if (copy_thread.joinable())
        copy_thread.join();
    if (staging_recycler)
        staging_recycler->stop();
    if (release_recycler)
        release_recycler->stop();
    if (copy_stream)
    {
        try
        {
            copy_stream->synchronize();
        }
        catch (std::exception &)
        {
        }
    }
}

} // namespace spead2gpu::gpu
