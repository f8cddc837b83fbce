/**
 * @file recv_harness.h
 * One fuzz input through the receive core: packet decode, heap reassembly
 * and chunk placement (ChunkLayout and a C placement callback). Shared by
 * the libFuzzer target (fuzz_recv.cpp) and the regression replay in the
 * normal C++ tests (tests/cpp/fuzz_replay_test.cpp), so a saved input runs
 * exactly the same checks with or without clang and libFuzzer.
 *
 * Input: 9 configuration bytes (see recv_harness.cpp, struct fuzz_config),
 * then the packets: as datagrams with a 2-byte big-endian length prefix
 * each, or (a configuration bit) one buffer replayed as add_buffer_reader
 * does, resynchronising on the next SPEAD magic after garbage.
 *
 * Every delivered heap and chunk is checked for self-consistency (payload
 * ranges, item bounds, payload bytes against the packets that were fed,
 * presence flags, chunk order) and the statistics are checked against the
 * harness's own count of what it fed. A failed check prints a message and
 * calls std::abort(), which libFuzzer reports as a crash.
 */
#pragma once

#include <cstddef>
#include <cstdint>

namespace spead2gpu::fuzz
{

/// Number of configuration bytes at the start of an input.
constexpr std::size_t config_bytes = 9;

/// Run one input; aborts (with a message on stderr) if a check fails.
void run_recv_input(const std::uint8_t *data, std::size_t size);

} // namespace spead2gpu::fuzz
