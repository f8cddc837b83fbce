#include "recv/stream/stats.h"
#include <stdexcept>

namespace spead2gpu::recv
{

std::vector<stat_config> default_stat_configs()
{
    return {
        {"heaps", stat_mode::COUNTER},
        {"incomplete_heaps_evicted", stat_mode::COUNTER},
        {"incomplete_heaps_flushed", stat_mode::COUNTER},
        {"packets", stat_mode::COUNTER},
        {"batches", stat_mode::COUNTER},
        {"max_batch", stat_mode::MAXIMUM},
        {"single_packet_heaps", stat_mode::COUNTER},
        {"search_dist", stat_mode::COUNTER},
        {"worker_blocked", stat_mode::COUNTER},
    };
}

stream_stats::stream_stats() : stream_stats(std::make_shared<const std::vector<stat_config>>(default_stat_configs())) {}

stream_stats::stream_stats(std::shared_ptr<const std::vector<stat_config>> config)
    : config_(std::move(config)), values_(config_->size(), 0)
{
}

stream_stats::stream_stats(std::shared_ptr<const std::vector<stat_config>> config, std::vector<std::uint64_t> values)
    : config_(std::move(config)), values_(std::move(values))
{
    values_.resize(config_->size());
}

std::size_t stream_stats::index(const std::string &name) const
{
    for (std::size_t i = 0; i < config_->size(); i++)
        if ((*config_)[i].name == name)
            return i;
    throw std::out_of_range(name);
}

stream_stats &stream_stats::operator+=(const stream_stats &other)
{
    if (config_ != other.config_ && *config_ != *other.config_)
        throw std::invalid_argument("config must match to add stats together");
    for (std::size_t i = 0; i < values_.size(); i++)
        values_[i] = (*config_)[i].combine(values_[i], other.values_[i]);
    return *this;
}

} // namespace spead2gpu::recv
