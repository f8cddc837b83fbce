/**
 * @file endpoints.h
 * The `endpoints` argument of the send streams: a sequence of (host, port)
 * pairs, converted with a message that names the bad element.
 */
#pragma once

#include <pybind11/pybind11.h>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace spead2gpu
{

/**
 * (host, port) pairs as Python gives them. A distinct type (not a plain
 * vector) so that its caster can say what is wrong: pybind11's own vector
 * caster turns a port of 99999 into "incompatible constructor arguments",
 * which does not say which argument or why.
 */
struct endpoint_list : std::vector<std::pair<std::string, std::uint16_t>>
{
};

} // namespace spead2gpu

namespace pybind11::detail
{

/**
 * Accepts any sequence (not str or bytes) of 2-element sequences (host: str,
 * port: int). Anything of another shape does not match, so pybind11 goes on
 * to the next overload and finally raises its usual TypeError, as spead2
 * does; a port outside 0–65535 raises TypeError (spead2's type for it)
 * saying "endpoints[i]: port N is out of range (0-65535)".
 */
template <> struct type_caster<spead2gpu::endpoint_list>
{
    PYBIND11_TYPE_CASTER(spead2gpu::endpoint_list,
                         const_name("collections.abc.Sequence[tuple[str, typing.SupportsInt | typing.SupportsIndex]]"));

    bool load(handle src, bool)
    {
        if (!src || !PySequence_Check(src.ptr()) || PyUnicode_Check(src.ptr()) || PyBytes_Check(src.ptr()))
            return false;
        auto seq = reinterpret_borrow<sequence>(src);
        spead2gpu::endpoint_list out;
        out.reserve(seq.size());
        for (std::size_t i = 0; i < seq.size(); i++)
        {
            object item = seq[i];
            if (!PySequence_Check(item.ptr()) || PyUnicode_Check(item.ptr()) || len(item) != 2)
                return false;
            auto pair = reinterpret_borrow<sequence>(item);
            object host = pair[0], port = pair[1];
            if (!PyUnicode_Check(host.ptr()) || !PyLong_Check(port.ptr()))
                return false;
            int overflow = 0;
            long long number = PyLong_AsLongLongAndOverflow(port.ptr(), &overflow);
            if (overflow || number < 0 || number > 65535)
                throw type_error("endpoints[" + std::to_string(i) + "]: port " + str(port).cast<std::string>() +
                                 " is out of range (0-65535)");
            out.emplace_back(host.cast<std::string>(), std::uint16_t(number));
        }
        value = std::move(out);
        return true;
    }
};

} // namespace pybind11::detail
