/**
 * @file posted_task.h
 * A reader's one task on the thread pool (memory buffer or capture replay)
 * and the wait for it in stop().
 */
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include "common/thread_pool.h"

namespace spead2gpu::recv
{

/**
 * Posts one task to a thread pool and lets stop() wait until that task has
 * finished, or has been discarded without running (a stopped pool destroys
 * its queued tasks): either way the task's closure is destroyed, which is
 * what opens the wait.
 */
class posted_task
{
    struct latch
    {
        std::mutex mutex; ///< protects done
        std::condition_variable cond; ///< notified when done becomes true
        bool done = false; ///< the posted closure has been destroyed
    };
    /// Opens the latch when the posted closure (its only owner) is destroyed.
    struct opener
    {
        std::shared_ptr<latch> l;
        ~opener();
    };
    std::shared_ptr<latch> state; ///< null until post()

public:
    /// Post @a fn to @a pool (once).
    void post(thread_pool &pool, std::function<void()> fn);
    /// Whether post() was called.
    bool posted() const { return bool(state); }
    /// Wait until the posted task has finished or been discarded (no-op if never posted).
    void wait();
};

} // namespace spead2gpu::recv
