// libFuzzer entry point of the receive-path harness (recv_harness.h).
#include <cstddef>
#include <cstdint>
#include "recv_harness.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
    spead2gpu::fuzz::run_recv_input(data, size);
    return 0;
}
