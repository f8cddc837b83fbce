#include "bindings/py_common.h"
namespace spead2gpu
{
void register_ibv(py::module_ &recv, py::module_ &send);
}
namespace spead2gpu::gpu
{
void register_gpu(py::module_ &parent);
}

PYBIND11_MODULE(_spead2, m)
{
    m.doc() = "spead2gpu compiled core (spead2-compatible API)";
    spead2gpu::register_common(m);
    auto recv = m.def_submodule("recv", "Receive streams");
    spead2gpu::register_recv(recv);
    auto send = m.def_submodule("send", "Send streams");
    spead2gpu::register_send(send);
    spead2gpu::register_ibv(recv, send);
    spead2gpu::gpu::register_gpu(m);
}
