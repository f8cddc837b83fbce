"""Bit-level codec for SPEAD item values (private).

SPEAD formats are lists of ``(code, bits)`` fields packed MSB-first with no
padding between fields or elements.  When every field has an exact numpy
equivalent the item model (:mod:`spead2gpu._items`) lets numpy describe the
memory layout; this module holds everything else: the mapping from a field to
a numpy dtype, the conversion of single field values to and from raw bits,
and packing/unpacking of whole arrays of elements (with vectorised paths for
the common case of a single narrow integer or boolean field).

Nothing here is public API.
"""

import struct

import numpy as _np

#: Values of :attr:`Descriptor._fastpath`: how values are converted.
_FASTPATH_NONE = 0  #: bit-level conversion in Python (slow)
_FASTPATH_IMMEDIATE = 1  #: a single integer field that may travel as an immediate
_FASTPATH_NUMPY = 2  #: a numpy dtype describes the memory layout exactly


def _shape_elements(shape) -> int:
    """Number of elements in an array of the given (fully known) shape."""
    total = 1
    for size in shape:
        total *= size
    return total


#: Widths of integer fields that have an exact numpy dtype.
_INT_FIELD_SIZES = (8, 16, 32, 64)


def _field_dtype(code, length):
    """numpy dtype for one field of a SPEAD format, or ``object`` if none fits.

    Integers of 8, 16, 32 or 64 bits and floats of 32 or 64 bits map to
    big-endian numpy types, 8-bit booleans to ``bool`` and 8-bit characters to
    ``S1``.  Other integer and boolean widths are held as Python objects and
    converted by the bit-level functions below.

    Raises
    ------
    ValueError
        if the field cannot be represented at all (e.g. ``('f', 16)`` or an
        unknown code)
    """
    if code in ("u", "i"):
        if length in _INT_FIELD_SIZES:
            return _np.dtype(">" + code + str(length // 8))
        return _np.dtype(object)
    if code == "f":
        if length in (32, 64):
            return _np.dtype(">f" + str(length // 8))
    elif code == "b":
        return _np.dtype(_np.bool_) if length == 8 else _np.dtype(object)
    elif code == "c":
        if length == 8:
            return _np.dtype("S1")
    raise ValueError(f"illegal format ({code}, {length})")


def _encode_field(code, length, value):
    """Turn one field value into an unsigned integer of *length* bits.

    Signed integers are stored in two's complement, floats as their IEEE bit
    pattern and booleans as 0/1.  A character value has already been through
    an ``S1`` numpy field, so it is a one-byte :class:`bytes`.

    Raises
    ------
    ValueError
        if an integer does not fit in the field
    """
    if code == "u":
        v = int(value)
        if v < 0 or v >= (1 << length):
            raise ValueError(f"{v} is out of range for u{length}")
        return v
    if code == "i":
        v = int(value)
        half = 1 << (length - 1)
        if v < -half or v >= half:
            raise ValueError(f"{v} is out of range for i{length}")
        return v & ((1 << length) - 1)
    if code == "b":
        return 1 if value else 0
    if code == "f":
        if length == 32:
            return struct.unpack(">I", struct.pack(">f", float(value)))[0]
        return struct.unpack(">Q", struct.pack(">d", float(value)))[0]
    # code == "c": value has been through an S1 numpy field, so it is bytes
    return ord(value)


def _decode_field(code, length, bits):
    """Inverse of :func:`_encode_field`: the Python value held in *bits*.

    Characters decode to one-byte :class:`bytes`.
    """
    if code == "u":
        return bits
    if code == "i":
        if bits >> (length - 1):
            return bits - (1 << length)
        return bits
    if code == "b":
        return bool(bits)
    if code == "f":
        if length == 32:
            return struct.unpack(">f", bits.to_bytes(4, "big"))[0]
        return struct.unpack(">d", bits.to_bytes(8, "big"))[0]
    return bytes((bits,))  # "c"


def _pack_single_vectorised(code, length, values):
    """Fast packing of one u/i/b field of at most 63 bits; None if not applicable.

    The values are converted to an int64 array, range-checked as a whole and
    expanded to bits in blocks (about 64 Kib at a time, always a whole number
    of bytes) that :func:`numpy.packbits` turns into bytes.  Returns ``None``
    when a value does not fit in int64, so that :func:`_pack_bits` can report
    it with the usual message.

    Raises
    ------
    ValueError
        if a value is out of range for the field
    """
    if code == "b":
        ints = [1 if value else 0 for value in values]
    else:
        ints = [int(value) for value in values]
    try:
        array = _np.array(ints, dtype=_np.int64)
    except OverflowError:
        return None  # let the generic path report the out-of-range value
    if code == "u":
        bad = (array < 0) | (array >= (1 << length))
    elif code == "i":
        bad = (array < -(1 << (length - 1))) | (array >= (1 << (length - 1)))
    else:
        bad = None
    if bad is not None and bad.any():
        raise ValueError(
            f"{ints[int(_np.argmax(bad))]} is out of range for {code}{length}"
        )
    shifts = _np.arange(length - 1, -1, -1, dtype=_np.uint64)
    out = bytearray()
    block = max(8, (1 << 16) // length) // 8 * 8  # whole bytes per block
    unsigned = array.astype(_np.uint64)
    for start in range(0, len(unsigned), block):
        chunk = unsigned[start : start + block]
        bits = ((chunk[:, _np.newaxis] >> shifts) & _np.uint64(1)).astype(_np.uint8)
        out += _np.packbits(bits.reshape(-1)).tobytes()
    return out


def _pack_bits(fields, elements) -> bytearray:
    """Pack *elements* (each a tuple with one entry per field) MSB-first.

    This is the generic path: any number of fields of any width.  The last
    byte is padded with zero bits.

    Raises
    ------
    ValueError
        if a value is out of range for its field
    """
    out = bytearray()
    acc = 0
    nbits = 0
    for element in elements:
        for (code, length), value in zip(fields, element):
            acc = (acc << length) | _encode_field(code, length, value)
            nbits += length
            if nbits >= 8:
                spare = nbits & 7
                out += (acc >> spare).to_bytes(nbits >> 3, "big")
                acc &= (1 << spare) - 1
                nbits = spare
    if nbits:
        out.append((acc << (8 - nbits)) & 0xFF)
    return out


def _unpack_single_vectorised(code, length, data, count):
    """Fast unpacking of *count* values of one u/i/b field of at most 63 bits.

    Bits are expanded with :func:`numpy.unpackbits` in blocks and combined
    with a dot product against powers of two; signed values are then
    sign-extended.  Returns an object array of Python ints (or bools).
    """
    out = _np.empty(count, dtype=object)
    weights = _np.left_shift(_np.uint64(1), _np.arange(length - 1, -1, -1, dtype=_np.uint64))
    block = max(1, (1 << 16) // length)
    raw = _np.frombuffer(data, dtype=_np.uint8)
    for start in range(0, count, block):
        n = min(block, count - start)
        first_bit = start * length
        first_byte = first_bit >> 3
        last_byte = (first_bit + n * length + 7) >> 3
        bits = _np.unpackbits(raw[first_byte:last_byte])
        skip = first_bit - (first_byte << 3)
        bits = bits[skip : skip + n * length].reshape(n, length).astype(_np.uint64)
        values = bits @ weights
        if code == "i":
            # Sign-extend: move the sign bit to bit 63, then shift back arithmetically
            spare = _np.uint64(64 - length)
            values = _np.left_shift(values, spare).astype(_np.int64) >> _np.int64(64 - length)
        elif code == "b":
            values = values != 0
        out[start : start + n] = values.tolist()
    return out


def _unpack_bits(fields, data, count):
    """Decode *count* elements of *fields* from *data* (MSB-first bit packing).

    Returns a list of tuples (one entry per field) unless there is a single
    field, in which case it returns a list (or object array) of values.
    """
    if len(fields) == 1:
        code, length = fields[0]
        if code in ("u", "i", "b") and length < 64 and count > 16:
            return _unpack_single_vectorised(code, length, data, count)
    data = bytes(data)
    pos = 0
    out = []
    for _ in range(count):
        element = []
        for code, length in fields:
            start = pos >> 3
            end = (pos + length + 7) >> 3
            chunk = int.from_bytes(data[start:end], "big")
            bits = (chunk >> ((end << 3) - pos - length)) & ((1 << length) - 1)
            element.append(_decode_field(code, length, bits))
            pos += length
        out.append(tuple(element) if len(fields) > 1 else element[0])
    return out


def _split_string(value):
    """Split bytes/str into a list of one-character bytes/str.

    Used to send a string value of a 1-D item as an array of characters.
    """
    if isinstance(value, bytes):
        return [value[i : i + 1] for i in range(len(value))]
    return list(value)
