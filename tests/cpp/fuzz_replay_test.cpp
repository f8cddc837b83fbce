// Replays the inputs of the C++ fuzz target (fuzz/recv_harness.cpp) with the
// same checks, built with the normal compiler and without libFuzzer: the
// saved findings (fuzz/regressions/cpp) and the seed corpus (fuzz/corpus/recv).
#include <gtest/gtest.h>
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>
#include "recv_harness.h"

namespace
{

std::vector<std::filesystem::path> inputs(const std::string &folder)
{
    std::vector<std::filesystem::path> out;
    const std::filesystem::path dir = std::filesystem::path(SPEAD2GPU_FUZZ_DIR) / folder;
    if (std::filesystem::is_directory(dir))
        for (const auto &entry : std::filesystem::directory_iterator(dir))
            if (entry.is_regular_file() && entry.path().filename().string().rfind('.', 0) != 0)
                out.push_back(entry.path());
    std::sort(out.begin(), out.end());
    return out;
}

void replay(const std::filesystem::path &path)
{
    std::ifstream in(path, std::ios::binary);
    ASSERT_TRUE(in) << path;
    std::vector<std::uint8_t> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    SCOPED_TRACE(path.string());
    // A failed check aborts the process, naming the check (and this file in the trace).
    std::fprintf(stderr, "replaying %s\n", path.string().c_str());
    spead2gpu::fuzz::run_recv_input(data.data(), data.size());
}

} // namespace

TEST(FuzzReplay, Regressions)
{
    for (const auto &path : inputs("regressions/cpp"))
        replay(path);
}

TEST(FuzzReplay, SeedCorpus)
{
    const auto paths = inputs("corpus/recv");
    EXPECT_FALSE(paths.empty());
    for (const auto &path : paths)
        replay(path);
}
