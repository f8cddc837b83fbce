/**
 * @file ibv.cpp
 * spead2's ibverbs API surface: recv.UdpIbvConfig, send.UdpIbvConfig and
 * Stream.add_udp_ibv_reader.
 *
 * Why it exists although spead2gpu has no ibverbs transport: spead2's own
 * tools (spead2_bench.py, spead2_recv.py, …) look for add_udp_ibv_reader to
 * decide whether the library "has ibverbs", and a spead2 master built with
 * ibverbs sends its ibv options to the agent, which exits if the method is
 * missing. With it, the tools work against spead2gpu exactly as against a
 * spead2 on a host without an RDMA device: the configs validate as spead2's
 * do, and adding an ibverbs reader raises RuntimeError.
 */
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>
#include "bindings/py_common.h"
#include "recv/stream/stream.h"

using namespace pybind11::literals;

namespace spead2gpu
{
namespace
{

using endpoint_list = std::vector<std::pair<std::string, std::uint16_t>>;

/// The options spead2's ibverbs reader and sender share, with spead2's validation.
struct ibv_config_base
{
    endpoint_list endpoints;
    std::string interface_address;
    int comp_vector = 0;
    int max_poll = 10;

    static constexpr int default_max_poll = 10;

    void set_max_poll(int v)
    {
        if (v < 1)
            throw std::invalid_argument("max_poll must be at least 1");
        max_poll = v;
    }
};

struct recv_ibv_config : ibv_config_base
{
    static constexpr std::size_t default_buffer_size = 16 * 1024 * 1024;
    static constexpr std::size_t default_max_size = 9200;
    std::size_t buffer_size = default_buffer_size;
    std::size_t max_size = default_max_size;
};

struct send_ibv_config : ibv_config_base
{
    static constexpr std::size_t default_buffer_size = 512 * 1024;
    std::size_t buffer_size = default_buffer_size;
    std::uint8_t ttl = 1;
    py::list memory_regions;
};

/// endpoints, interface_address, comp_vector and max_poll on either config class.
template <typename Config> void def_common(py::class_<Config> &cls)
{
    cls.def(py::init(&from_kwargs<Config>))
        .def_readwrite("endpoints", &Config::endpoints)
        .def_readwrite("interface_address", &Config::interface_address)
        .def_readwrite("comp_vector", &Config::comp_vector)
        .def_property(
            "max_poll", [](const Config &c) { return c.max_poll; }, [](Config &c, int v) { c.set_max_poll(v); })
        .def_readonly_static("DEFAULT_MAX_POLL", &ibv_config_base::default_max_poll)
        .def_readonly_static("DEFAULT_BUFFER_SIZE", &Config::default_buffer_size)
        .def_property(
            "buffer_size", [](const Config &c) { return c.buffer_size; },
            [](Config &c, std::size_t v) { c.buffer_size = v ? v : Config::default_buffer_size; });
}

} // namespace

void register_ibv(py::module_ &recv, py::module_ &send)
{
    py::class_<recv_ibv_config> rc(recv, "UdpIbvConfig",
                                   "Options of an ibverbs UDP reader (spead2 API; spead2gpu has no ibverbs transport)");
    def_common(rc);
    rc.def_readonly_static("DEFAULT_MAX_SIZE", &recv_ibv_config::default_max_size)
        .def_property(
            "max_size", [](const recv_ibv_config &c) { return c.max_size; },
            [](recv_ibv_config &c, std::size_t v)
            {
                if (v == 0)
                    throw std::invalid_argument("max_size must be positive");
                c.max_size = v;
            });

    py::class_<send_ibv_config> sc(send, "UdpIbvConfig",
                                   "Options of an ibverbs UDP sender (spead2 API; spead2gpu has no ibverbs transport)");
    def_common(sc);
    sc.def_readwrite("ttl", &send_ibv_config::ttl).def_readwrite("memory_regions", &send_ibv_config::memory_regions);

    auto stream_cls = py::reinterpret_borrow<py::class_<recv::stream>>(py::type::of<recv::stream>());
    stream_cls.def(
        "add_udp_ibv_reader",
        [](recv::stream &, const recv_ibv_config &config)
        {
            // The same checks, in the same order, as spead2's reader makes
            // before it looks for an RDMA device.
            if (config.endpoints.empty())
                throw std::invalid_argument("endpoints is empty");
            if (config.interface_address.empty())
                throw std::invalid_argument("interface address has not been specified");
            throw std::runtime_error("ibverbs is not available: spead2gpu has no ibverbs transport (receive "
                                     "with add_udp_reader, which uses recvmmsg and UDP GRO)");
        },
        "config"_a);
}

} // namespace spead2gpu
