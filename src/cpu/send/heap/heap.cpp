/**
 * @file send_heap.cpp
 */
#include "send/heap/heap.h"
#include <stdexcept>

namespace spead2gpu
{
namespace send
{

void heap::add_item(item_pointer_t id, const void *data, std::size_t length, bool allow_immediate)
{
    item it;
    it.id = id;
    it.data = static_cast<const std::uint8_t *>(data);
    it.length = length;
    it.allow_immediate = allow_immediate;
    items_.push_back(it);
}

void heap::add_item(item_pointer_t id, std::string value, bool allow_immediate)
{
    storage_.push_back(std::move(value));
    const std::string &s = storage_.back();
    add_item(id, s.data(), s.size(), allow_immediate);
}

void heap::add_immediate(item_pointer_t id, item_pointer_t value)
{
    item it;
    it.id = id;
    it.is_inline = true;
    it.inline_value = value;
    items_.push_back(it);
}

void heap::add_descriptor(const descriptor &d)
{
    const int hab = flavour_.get_heap_address_bits();
    if (d.id <= 0 || item_pointer_t(d.id) >= (item_pointer_t(1) << (63 - hab)))
        throw std::invalid_argument("Item ID out of range");
    add_item(DESCRIPTOR_ID, encode_descriptor(d, flavour_), false);
}

} // namespace send
} // namespace spead2gpu
