/**
 * @file descriptor.h
 * Raw item descriptors and their encoding as a single-packet SPEAD heap.
 */
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>
#include "common/constants.h"
#include "common/flavour.h"

namespace spead2gpu
{

/// A descriptor as carried on the wire (Python: RawDescriptor).
struct descriptor
{
    s_item_pointer_t id = 0;
    std::string name;
    std::string description;
    /// (type code, bits) pairs; empty when numpy_header is used.
    std::vector<std::pair<char, s_item_pointer_t>> format;
    /// Dimensions; -1 marks the (single) variable dimension.
    std::vector<s_item_pointer_t> shape;
    /// numpy header (repr of the dtype dict); empty if absent.
    std::string numpy_header;
};

/**
 * Encode @a d as the value of a DESCRIPTOR item: a complete one-packet heap
 * in flavour @a f (docs/wire-format.md §5).
 */
std::string encode_descriptor(const descriptor &d, const flavour &f);

/**
 * Decode the value of a DESCRIPTOR item. Returns false (and leaves @a out
 * with id 0) if the bytes are not a valid single-packet descriptor heap.
 */
bool decode_descriptor(const std::uint8_t *data, std::size_t size, std::uint32_t bug_compat, descriptor &out);

/**
 * Decode every descriptor in the value of a DESCRIPTOR item. spead2 feeds
 * the bytes through a temporary stream, so a value holding several
 * concatenated single-packet descriptor heaps yields several descriptors
 * (those with a non-zero id, in order). Valid packets that are not
 * complete single-packet heaps are skipped; an invalid packet or a stream
 * stop item ends the scan. (Heaps split over several packets are not
 * reassembled.)
 */
std::vector<descriptor> decode_descriptors(const std::uint8_t *data, std::size_t size, std::uint32_t bug_compat);

} // namespace spead2gpu
