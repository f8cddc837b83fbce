/**
 * @file recv_stats.h
 * Receive statistics: the nine core statistics in spead2's index order,
 * plus named custom statistics (counters or maxima).
 */
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace spead2gpu::recv
{

/// How two values of a statistic combine.
enum class stat_mode : int
{
    COUNTER = 0, ///< values add
    MAXIMUM = 1 ///< the larger value wins
};

/// Name and combination rule of one statistic.
struct stat_config
{
    std::string name;
    stat_mode mode = stat_mode::COUNTER;

    std::uint64_t combine(std::uint64_t a, std::uint64_t b) const
    {
        return mode == stat_mode::COUNTER ? a + b : std::max(a, b);
    }
    bool operator==(const stat_config &o) const { return name == o.name && mode == o.mode; }
    bool operator!=(const stat_config &o) const { return !(*this == o); }
};

/// Indices of the core statistics (spead2's stream_stat_indices).
namespace stat_index
{
constexpr std::size_t HEAPS = 0;
constexpr std::size_t INCOMPLETE_HEAPS_EVICTED = 1;
constexpr std::size_t INCOMPLETE_HEAPS_FLUSHED = 2;
constexpr std::size_t PACKETS = 3;
constexpr std::size_t BATCHES = 4;
constexpr std::size_t MAX_BATCH = 5;
constexpr std::size_t SINGLE_PACKET_HEAPS = 6;
constexpr std::size_t SEARCH_DIST = 7;
constexpr std::size_t WORKER_BLOCKED = 8;
constexpr std::size_t CUSTOM = 9; ///< first custom statistic
} // namespace stat_index

/// Names of the statistics spead2gpu adds to every stream (after all others).
constexpr const char *malformed_packets_stat = "spead2gpu.malformed_packets";
constexpr const char *rejected_packets_stat = "spead2gpu.rejected_packets";
constexpr const char *kernel_drops_stat = "spead2gpu.kernel_drops";

/// The core statistics' configurations, in index order.
std::vector<stat_config> default_stat_configs();

/**
 * A snapshot of a stream's statistics, tied to the stat configuration list
 * (shared, immutable once the stream exists).
 */
class stream_stats
{
    std::shared_ptr<const std::vector<stat_config>> config_;
    std::vector<std::uint64_t> values_;

public:
    stream_stats();
    explicit stream_stats(std::shared_ptr<const std::vector<stat_config>> config);
    stream_stats(std::shared_ptr<const std::vector<stat_config>> config, std::vector<std::uint64_t> values);

    const std::shared_ptr<const std::vector<stat_config>> &config() const { return config_; }
    std::vector<std::uint64_t> &values() { return values_; }
    const std::vector<std::uint64_t> &values() const { return values_; }
    std::size_t size() const { return values_.size(); }

    /// Index of @a name; throws std::out_of_range (Python KeyError at the binding).
    std::size_t index(const std::string &name) const;
    /// Combine with @a other; throws std::invalid_argument if configs differ.
    stream_stats &operator+=(const stream_stats &other);
    stream_stats operator+(const stream_stats &other) const
    {
        stream_stats out = *this;
        out += other;
        return out;
    }
};

} // namespace spead2gpu::recv
