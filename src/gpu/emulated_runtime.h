/**
 * @file emulated_runtime.h
 * An emulated GPU (@ref runtime in host memory) so that the chunk pipeline's
 * ordering — copies, events, recycling after the consumer's work — runs
 * unchanged, and observably late, on machines without a GPU.
 *
 * Model:
 * - Memory of every kind is page-aligned host memory; "device" and "mapped"
 *   device addresses equal their host addresses.
 * - Each stream is a FIFO of operations served by one worker thread. An
 *   operation becomes runnable @ref emulation_options::latency after it was
 *   queued (the timer) and then takes its own duration (copies: size /
 *   @ref emulation_options::bytes_per_second; enqueue_busy: as given), so an
 *   event recorded behind work completes only once that work has run.
 * - Streams 0, 1 and 2 are one default stream. Unlike CUDA's legacy stream,
 *   it does not synchronise with the other streams: every stream behaves
 *   like a non-blocking one, which is what the pipeline's code must assume.
 * - An event captures the operations queued so far on a stream (a
 *   generation number); stream_wait_event queues a wait for that generation.
 *   Re-recording an event moves it to the new generation, as in CUDA.
 * - fail_next(op) makes the next call(s) of an operation throw cuda_error,
 *   to test error paths (recycler failures, copy failures).
 *
 * Locking: one mutex, @ref emulated_runtime::mutex, guards every stream's
 * queue and counters, every event's generations, the handle tables and the
 * fault counts; one condition variable, @ref emulated_runtime::changed,
 * announces any change of them. Operations' work (memcpy, memset) runs with
 * the mutex released. Nothing else is locked, so there is no lock order.
 */
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include "gpu/runtime.h"

namespace spead2gpu::gpu
{

/// How an emulated GPU behaves.
struct emulation_options
{
    /// Delay from queuing an operation to its earliest start (so events complete late).
    std::chrono::nanoseconds latency{std::chrono::microseconds(200)};
    /// Copy and memset speed; 0 means they take no time beyond @ref latency.
    double bytes_per_second = 0;
    /// Devices 0 .. device_count - 1 exist.
    int device_count = 1;
};

class emulated_runtime final : public runtime
{
    struct event_state
    {
        std::uint64_t recorded = 0; ///< generation of the last record
        std::uint64_t completed = 0; ///< highest generation whose work has run
    };

    /// One queued operation of a stream.
    struct operation
    {
        std::chrono::steady_clock::time_point not_before; ///< the timer: queued + latency
        std::chrono::nanoseconds duration{0}; ///< how long it runs once started
        std::function<void()> work; ///< run unlocked (memcpy, memset); may be empty
        std::shared_ptr<event_state> signal; ///< completed by this operation (record_event)
        std::uint64_t signal_generation = 0;
        std::shared_ptr<event_state> wait; ///< waited for before starting (stream_wait_event)
        std::uint64_t wait_generation = 0;
    };

    struct stream_state
    {
        std::deque<operation> queue; ///< front is running or next to run
        std::uint64_t queued = 0; ///< operations ever queued
        std::uint64_t done = 0; ///< operations finished
        bool closing = false; ///< destroyed: finish the queue, then end the worker
        std::thread worker;
    };

    const emulation_options options;
    std::mutex mutex; ///< guards everything below (see the file comment)
    std::condition_variable changed; ///< any queue, counter or event changed
    std::map<std::uintptr_t, std::unique_ptr<stream_state>> streams; ///< by handle (the default stream too)
    std::map<std::uintptr_t, std::shared_ptr<event_state>> events; ///< by handle
    std::map<std::string, unsigned> faults; ///< operation name -> calls still to fail
    std::uintptr_t default_handle = 0; ///< handle of the default stream (what 0, 1 and 2 mean)
    std::uint64_t operations_run_ = 0;

    void serve(stream_state &s);
    std::uintptr_t start_stream(std::unique_lock<std::mutex> &lock);
    stream_state &stream_of(std::uintptr_t handle); // mutex held
    std::shared_ptr<event_state> event_of(std::uintptr_t handle); // mutex held
    void take_fault(const char *op); // mutex held; throws cuda_error
    void enqueue(std::uintptr_t stream, operation &&op); // mutex held
    void wait_drained(std::unique_lock<std::mutex> &lock, stream_state &s);

public:
    explicit emulated_runtime(const emulation_options &options = {});
    ~emulated_runtime() override;
    const emulation_options &get_options() const { return options; }

    bool emulated() const override { return true; }
    void require(const char *what, int device) const override;
    void bind_thread(int) override {}
    allocation allocate(memory_kind kind, std::size_t size, int device) override;
    void deallocate(memory_kind kind, void *raw, int device) noexcept override;
    void memcpy_async(std::uintptr_t dst, std::uintptr_t src, std::size_t size, std::uintptr_t stream) override;
    void memset_async(std::uintptr_t dst, int value, std::size_t size, std::uintptr_t stream) override;
    std::uintptr_t create_stream(int device) override;
    void destroy_stream(std::uintptr_t stream, int device) noexcept override;
    void synchronize_stream(std::uintptr_t stream) override;
    void synchronize_device(int device) override;
    std::uintptr_t create_event(int device, bool blocking_sync) override;
    void destroy_event(std::uintptr_t event, int device) noexcept override;
    void record_event(std::uintptr_t event, std::uintptr_t stream, int device) override;
    bool query_event(std::uintptr_t event) override;
    void synchronize_event(std::uintptr_t event) override;
    void stream_wait_event(std::uintptr_t stream, std::uintptr_t event, int device) override;

    /// Queue work that keeps @a stream busy for @a duration (an emulated kernel).
    void enqueue_busy(std::uintptr_t stream, std::chrono::nanoseconds duration);
    /// Make the next @a count calls of @a op (a method name above, e.g. "query_event") throw cuda_error.
    void fail_next(const std::string &op, unsigned count = 1);
    /// Operations run so far, on every stream.
    std::uint64_t operations_run();
    /// Operations queued but not finished on @a stream.
    std::uint64_t pending(std::uintptr_t stream);
};

} // namespace spead2gpu::gpu
