#include "recv/reader/posted_task.h"

namespace spead2gpu::recv
{

posted_task::opener::~opener()
{
    std::lock_guard<std::mutex> lock(l->mutex);
    l->done = true;
    l->cond.notify_all();
}

void posted_task::post(thread_pool &pool, std::function<void()> fn)
{
    state = std::make_shared<latch>();
    // Constructed in place: a temporary opener's destructor would open the
    // latch before the task even ran.
    std::shared_ptr<opener> open(new opener{state});
    pool.post([open, fn = std::move(fn)] { fn(); });
}

void posted_task::wait()
{
    if (!state)
        return;
    std::unique_lock<std::mutex> lock(state->mutex);
    state->cond.wait(lock, [this] { return state->done; });
}

} // namespace spead2gpu::recv
