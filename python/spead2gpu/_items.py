"""The pure-Python item model: :class:`Descriptor`, :class:`Item` and :class:`ItemGroup` (private).

These classes are public as ``spead2gpu.Descriptor``, ``spead2gpu.Item`` and
``spead2gpu.ItemGroup`` (whose ``__module__`` is ``spead2gpu``); import them
from there.  The bit-level conversion for formats without an exact numpy
equivalent is in :mod:`spead2gpu._codec`.
"""

import ast
import logging
import numbers as _numbers

import numpy as _np
from numpy.lib import format as _np_format

from ._codec import (
    _FASTPATH_IMMEDIATE,
    _FASTPATH_NONE,
    _FASTPATH_NUMPY,
    _field_dtype,
    _pack_bits,
    _pack_single_vectorised,
    _shape_elements,
    _split_string,
    _unpack_bits,
)
from ._spead2 import BUG_COMPAT_SWAP_ENDIAN, STREAM_CTRL_ID, RawDescriptor

#: Kinds of Item._raw_plan (see Item._make_raw_plan).
_PLAN_GENERAL = 0
_PLAN_IMMEDIATE = 1
_PLAN_NUMPY = 2

_logger = logging.getLogger("spead2gpu")

#: First item ID handed out by :meth:`ItemGroup.add_item` when no ID is given.
_UNRESERVED_ID = 0x1000


class Descriptor:
    """Metadata for a SPEAD item: how its bytes map to a Python value.

    Parameters
    ----------
    id : int
        SPEAD item ID
    name : str
        Short name of the item (ASCII)
    description : str
        Longer human-readable description (ASCII)
    shape : sequence of int or None
        Dimensions of the value. At most one entry may be ``None``, which
        marks a dimension whose size is inferred from the amount of data
        received. The numpy-descriptor form (`dtype`) does not allow ``None``.
    dtype : numpy.dtype-like, optional
        numpy data type of one element. Exactly one of `dtype` and `format`
        must be given.
    order : {'C', 'F'}
        Memory order of the array (``'F'`` is only allowed with `dtype`).
    format : list of (str, int), optional
        SPEAD format: a list of ``(code, bits)`` fields, with codes ``u``
        (unsigned), ``i`` (signed), ``f`` (IEEE float, 32 or 64 bits), ``b``
        (boolean) and ``c`` (ASCII character, 8 bits). Fields that are not a
        whole number of bytes, or integers wider than 64 bits, are supported
        through a slower bit-level conversion.

    Raises
    ------
    ValueError
        if the combination of parameters is invalid
    """

    __module__ = "spead2gpu"  # public as spead2gpu.Descriptor

    def __init__(self, id, name, description, shape, dtype=None, order="C", format=None):
        shape = tuple(shape)
        unknowns = sum(1 for size in shape if size is None)
        if unknowns > 1:
            raise ValueError("Cannot have multiple unknown dimensions")
        if dtype is not None:
            dtype = _np.dtype(dtype)
            if dtype.hasobject:
                raise ValueError("Cannot use dtype that has reference-counted objects")
            if format is not None:
                raise ValueError("Only one of dtype and format can be specified")
            if dtype.itemsize == 0:
                raise ValueError("Cannot use zero-sized dtype")
            if unknowns > 0:
                raise ValueError("Cannot have unknown dimensions when using numpy descriptor")
            if order not in ("C", "F"):
                raise ValueError("Order must be 'C' or 'F'")
            internal_dtype = dtype
        elif format is not None:
            if order != "C":
                raise ValueError("When specifying format, order must be 'C'")
            internal_dtype = self._parse_format(format)
        else:
            raise ValueError("One of dtype and format must be specified")

        self._internal_dtype = internal_dtype
        self.id = id
        self.name = name
        self.description = description
        self.shape = shape
        self.dtype = dtype
        self.order = order
        self.format = format
        if not internal_dtype.hasobject:
            self._fastpath = _FASTPATH_NUMPY
        elif (
            len(format) == 1
            and format[0][0] in ("u", "i")
            and format[0][1] < 64
            and shape == ()
        ):
            self._fastpath = _FASTPATH_IMMEDIATE
        else:
            self._fastpath = _FASTPATH_NONE

    @classmethod
    def _parse_format(cls, fmt):
        """Convert a SPEAD format into the numpy dtype used to hold values.

        Fields with an exact numpy equivalent get it (big-endian); the others
        become ``object`` fields, handled by the bit-level conversion. A
        single field gives a plain dtype, several give a structured dtype
        with fields ``f0``, ``f1``, ….

        Raises
        ------
        ValueError
            if the format is empty or contains an illegal field
        """
        fields = []
        for code, length in fmt:
            if length <= 0:
                if length == 0:
                    raise ValueError("zero-length field (bug_compat mismatch?)")
                raise ValueError("negative-length field")
            fields.append(_field_dtype(code, length))
        if not fields:
            raise ValueError("empty format")
        if len(fields) == 1:
            return fields[0]
        return _np.dtype([("f" + str(i), field) for i, field in enumerate(fields)])

    @classmethod
    def _make_numpy_header(cls, shape, dtype, order):
        """Build the numpy header string that describes an array on the wire.

        It is the ``repr`` of a dict with the keys ``descr``, ``fortran_order``
        and ``shape`` in that order, as in the ``.npy`` file format.
        """
        return "{{'descr': {!r}, 'fortran_order': {!r}, 'shape': {!r}}}".format(
            _np_format.dtype_to_descr(dtype), order == "F", tuple(shape)
        )

    @classmethod
    def _parse_numpy_header(cls, header):
        """Parse a numpy header string into ``(shape, order, dtype)``.

        Raises
        ------
        ValueError
            if the header is malformed
        """
        try:
            d = ast.literal_eval(header)
        except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as e:
            # literal_eval raises ValueError for a non-literal, SyntaxError for
            # bad syntax, MemoryError/RecursionError for deep nesting.
            raise ValueError(f"Cannot parse descriptor: {header!r}\nException: {e!r}") from e
        if not isinstance(d, dict):
            raise ValueError(f"Descriptor is not a dictionary: {d!r}")
        keys = sorted(d.keys())
        if keys != ["descr", "fortran_order", "shape"]:
            raise ValueError(f"Descriptor does not contain the correct keys: {keys!r}")
        shape = d["shape"]
        if not isinstance(shape, tuple) or not all(
            isinstance(x, _numbers.Integral) and x >= 0 for x in shape
        ):
            raise ValueError(f"shape is not valid: {shape!r}")
        fortran_order = d["fortran_order"]
        if not isinstance(fortran_order, bool):
            raise ValueError(f"fortran_order is not a valid bool: {fortran_order!r}")
        try:
            dtype = _np.dtype(d["descr"])
        except (TypeError, ValueError, SyntaxError, OverflowError, MemoryError, RecursionError) as e:
            # numpy parses a comma-separated descr such as "u4,(" with Python's
            # own parser, which raises SyntaxError; a bad shape raises ValueError.
            raise ValueError("descr is not a valid dtype descriptor: {!r}".format(d["descr"])) from e
        order = "F" if fortran_order else "C"
        return shape, order, dtype

    @property
    def itemsize_bits(self) -> int:
        """Number of bits per element."""
        if self.dtype is not None:
            return self.dtype.itemsize * 8
        return sum(length for _, length in self.format)

    def is_variable_size(self) -> bool:
        """Whether the shape has an unknown (``None``) dimension."""
        return any(size is None for size in self.shape)

    def allow_immediate(self) -> bool:
        """Whether the value may be sent as an immediate item.

        This requires a fixed shape and elements that are a whole number of
        bytes. The sender also needs the value to fit in the flavour's
        immediate size (``heap_address_bits / 8`` bytes).
        """
        return self.itemsize_bits % 8 == 0 and not self.is_variable_size()

    def dynamic_shape(self, max_elements):
        """Shape to use given that at most *max_elements* elements are available.

        For a fixed shape this is :attr:`shape` itself. Otherwise the unknown
        dimension is made as large as possible and a list is returned.
        """
        known = 1
        unknown_pos = -1
        for i, size in enumerate(self.shape):
            if size is None:
                unknown_pos = i
            else:
                known *= size
        if unknown_pos == -1:
            return self.shape
        shape = list(self.shape)
        shape[unknown_pos] = max_elements // known if known > 0 else 0
        return shape

    def compatible_shape(self, shape) -> bool:
        """Whether *shape* matches :attr:`shape`, where ``None`` matches any size."""
        if len(self.shape) != len(shape):
            return False
        for expected, actual in zip(self.shape, shape):
            if expected is not None and expected != actual:
                return False
        return True

    @classmethod
    def from_raw(cls, raw_descriptor, flavour):
        """Create a descriptor from a received :class:`RawDescriptor`.

        With ``BUG_COMPAT_SWAP_ENDIAN`` in the flavour, the byte order of a
        numpy dtype is swapped.
        """
        dtype = None
        fmt = None
        if raw_descriptor.numpy_header:
            header = raw_descriptor.numpy_header.decode("ascii")
            shape, order, dtype = cls._parse_numpy_header(header)
            if flavour.bug_compat & BUG_COMPAT_SWAP_ENDIAN:
                dtype = dtype.newbyteorder()
        else:
            shape = [None if (size is None or size < 0) else size for size in raw_descriptor.shape]
            order = "C"
            fmt = raw_descriptor.format
        return cls(
            raw_descriptor.id,
            raw_descriptor.name.decode("ascii"),
            raw_descriptor.description.decode("ascii"),
            shape,
            dtype,
            order,
            fmt,
        )

    def to_raw(self, flavour):
        """Convert to a :class:`RawDescriptor` for encoding with *flavour*.

        A numpy dtype is sent as a numpy header (byte order swapped with
        ``BUG_COMPAT_SWAP_ENDIAN``); otherwise the SPEAD format is sent.
        """
        raw = RawDescriptor()
        raw.id = self.id
        raw.name = self.name.encode("ascii")
        raw.description = self.description.encode("ascii")
        raw.shape = self.shape
        if self.dtype is not None:
            dtype = self.dtype
            if flavour.bug_compat & BUG_COMPAT_SWAP_ENDIAN:
                dtype = dtype.newbyteorder()
            raw.numpy_header = self._make_numpy_header(self.shape, dtype, self.order).encode("ascii")
        else:
            raw.format = self.format
        return raw


class Item(Descriptor):
    """A :class:`Descriptor` together with a current value.

    It takes the same arguments as :class:`Descriptor`, plus a keyword-only
    `value`. The :attr:`version` starts at 1 and is incremented every time
    the value is assigned; senders use it to decide which items have changed.
    """

    __module__ = "spead2gpu"  # public as spead2gpu.Item

    def __init__(self, *args, value=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._value = value
        #: Incremented each time :attr:`value` is assigned.
        self.version = 1
        #: How set_from_raw decodes this item's common cases, worked out once
        #: per (byte order, descriptor) by _make_raw_plan: the per-heap path of
        #: ItemGroup.update then does no descriptor arithmetic.
        self._raw_plan = None

    @property
    def value(self):
        """Current value (``None`` until set). Assigning it bumps :attr:`version`.

        Raises
        ------
        ValueError
            on an attempt to set the value to ``None``
        """
        return self._value

    @value.setter
    def value(self, new_value):
        if new_value is None:
            raise ValueError("Item value cannot be set to None")
        self._value = new_value
        self.version += 1

    def _make_raw_plan(self, new_order):
        """The cached decode plan of set_from_raw for ``new_order``.

        A tuple whose first four entries say what it was made from (checked
        by identity, so assigning a new shape, dtype or format remakes it),
        then the kind: ``_PLAN_IMMEDIATE`` (bits, mask, signed) for a
        single-integer item, ``_PLAN_NUMPY`` (elements, shape, order, dtype,
        target dtype or None) for a fixed-shape numpy item, or
        ``_PLAN_GENERAL`` for everything else (the general path below)."""
        key = (new_order, self.shape, self._internal_dtype, self.format)
        internal = self._internal_dtype
        bits = self.itemsize_bits
        if internal is not None and internal.subdtype is not None:
            plan = key + (_PLAN_GENERAL,)
        elif self._fastpath == _FASTPATH_IMMEDIATE and bits % 8 == 0:
            plan = key + (_PLAN_IMMEDIATE, bits, (1 << bits) - 1, self.format[0][0] == "i")
        elif (
            self._fastpath == _FASTPATH_NUMPY
            and None not in self.shape
            and not (len(self.shape) == 1 and self.format == [("c", 8)])
        ):
            target = internal.newbyteorder(new_order)
            plan = key + (_PLAN_NUMPY, _shape_elements(self.shape), self.shape, self.order, internal,
                          target if target != internal else None)
        else:
            plan = key + (_PLAN_GENERAL,)
        self._raw_plan = plan
        return plan

    def set_from_raw(self, raw_item, new_order="="):
        """Set the value from a received :class:`spead2gpu.recv.RawItem`.

        Parameters
        ----------
        raw_item : spead2gpu.recv.RawItem
            Received item. For an immediate item the value is taken from its
            trailing bytes; otherwise from its leading bytes.
        new_order : str
            Byte order to convert numpy values to (``'='``: native, ``'|'``:
            leave unchanged, or anything :meth:`numpy.dtype.newbyteorder`
            accepts).

        Raises
        ------
        ValueError
            if there are too few bytes for the shape, or the descriptor's
            dtype is a subarray type (``'1u4'``), which cannot hold a value
            of the descriptor's shape
        """
        plan = self._raw_plan
        if (
            plan is None
            or plan[0] != new_order
            or plan[1] is not self.shape
            or plan[2] is not self._internal_dtype
            or plan[3] is not self.format
        ):
            plan = self._make_raw_plan(new_order)
        kind = plan[4]
        if kind == _PLAN_NUMPY and not raw_item.is_immediate:
            try:
                value = _np.frombuffer(raw_item, dtype=plan[8], count=plan[5])
            except (ValueError, OverflowError):
                # too few bytes (or a shape too big for a count): the general
                # path below raises spead2's ValueError
                pass
            else:
                if len(plan[6]) != 1:  # frombuffer already gave the 1-D shape
                    value = value.reshape(plan[6], order=plan[7])
                if plan[9] is not None:
                    value = value.astype(plan[9])
                # what the value setter does, without the property call
                self._value = value[()] if not plan[6] else value
                self.version += 1
                return
        elif kind == _PLAN_IMMEDIATE and raw_item.is_immediate and plan[5] <= 8 * memoryview(raw_item).nbytes:
            value = raw_item.immediate_value & plan[6]
            if plan[7] and value >> (plan[5] - 1):
                value -= 1 << plan[5]
            self._value = value
            self.version += 1
            return
        internal = self._internal_dtype
        if internal is not None and internal.subdtype is not None:
            # numpy would add the subarray's axes to the shape (a (2,) item
            # would get a (2, 1) value); spead2 raises ValueError here too.
            raise ValueError(
                f"Item {self.name} has a subarray dtype ({internal}), which SPEAD values cannot have"
            )
        # (single-integer immediates were all taken by the plan above)
        bits = self.itemsize_bits
        raw_value = _np.frombuffer(raw_item, dtype=_np.uint8)
        max_elements = len(raw_value) * 8 // bits
        shape = self.dynamic_shape(max_elements)
        elements = _shape_elements(shape)
        if elements > max_elements:
            raise ValueError(
                f"Item {self.name} has too few elements for shape ({max_elements} < {elements})"
            )
        size_bytes = (elements * bits + 7) // 8
        if raw_item.is_immediate:
            # Immediates are right-aligned within the pointer. For a
            # zero-sized value the whole pointer is kept, as in spead2 (for
            # numpy values this then fails to reshape).
            if size_bytes:
                raw_value = raw_value[len(raw_value) - size_bytes :]
        else:
            raw_value = raw_value[:size_bytes]
        if self._fastpath == _FASTPATH_NONE or self._fastpath == _FASTPATH_IMMEDIATE:
            fields = self.format
            decoded = _unpack_bits(fields, raw_value, elements)
            if isinstance(decoded, _np.ndarray):
                value = decoded
            else:
                value = _np.empty(elements, dtype=self._internal_dtype)
                if len(fields) == 1:
                    value[:] = decoded
                else:
                    for i, element in enumerate(decoded):
                        value[i] = element
            value = value.reshape(shape)
        else:
            target = self._internal_dtype.newbyteorder(new_order)
            value = _np.frombuffer(raw_value, dtype=self._internal_dtype)
            value = value.reshape(shape, order=self.order)
            if target != value.dtype:
                value = value.astype(target)
            if len(shape) == 1 and self.format == [("c", 8)]:
                # Like numpy's conversion of S1 elements, this drops NUL bytes
                value = b"".join(value.tolist()).decode("ascii")
        if not isinstance(value, str) and len(shape) == 0:
            value = value[()]
        self.value = value

    def _numpy_buffer(self, value):
        array = _np.asarray(value, dtype=self._internal_dtype, order=self.order)
        if not self.compatible_shape(array.shape):
            raise ValueError(f"Value has shape {array.shape}, expected {self.shape}")
        if self.order == "F":
            # Sending the transpose of a Fortran-order array needs no copy
            array = array.T
        return array

    def _immediate_buffer(self, value):
        array = _np.asarray(value, dtype=">u8")
        if array.shape != ():
            raise ValueError(f"Value has shape {array.shape}, expected {self.shape}")
        # Reference the low-order bytes, so that in-place updates of a
        # ``>u8`` array value are visible without rebuilding the heap
        return array.reshape(1).view(_np.uint8)[8 - self.itemsize_bits // 8 :]

    def _bits_buffer(self, value):
        array = _np.array(value, dtype=self._internal_dtype)
        if not self.compatible_shape(array.shape):
            raise ValueError(f"Value has shape {array.shape}, expected {self.shape}")
        elements = array.reshape(-1).tolist()
        fields = self.format
        if len(fields) == 1:
            code, length = fields[0]
            if code in ("u", "i", "b") and length < 64 and len(elements) > 16:
                packed = _pack_single_vectorised(code, length, elements)
                if packed is not None:
                    return packed
            elements = [(element,) for element in elements]
        return _pack_bits(fields, elements)

    def to_buffer(self):
        """Encode the value as an object supporting the buffer protocol.

        Used by :meth:`spead2gpu.send.Heap.add_item`, which references the
        memory rather than copying it. When possible the result shares memory
        with the value:

        - with a numpy representation, a C-contiguous array of the right
          dtype (a Fortran-order value is sent as its transpose);
        - for a single integer field of a whole number of bytes, the low
          bytes of a ``>u8`` array;
        - otherwise a :class:`bytearray` built by bit-level packing.

        Raises
        ------
        ValueError
            if the value is ``None``, has the wrong shape or is out of range
        """
        value = self.value
        if value is None:
            raise ValueError("Cannot send a value of None")
        if isinstance(value, (bytes, str)) and len(self.shape) == 1:
            value = _split_string(value)
        if self._fastpath == _FASTPATH_NUMPY:
            return self._numpy_buffer(value)
        if self._fastpath == _FASTPATH_IMMEDIATE and self.itemsize_bits % 8 == 0:
            return self._immediate_buffer(value)
        return self._bits_buffer(value)


def _same_descriptor(a, b):
    """Whether two items describe the same thing (value and version aside)."""
    return (
        a.id == b.id
        and a.name == b.name
        and a.description == b.description
        and a.shape == b.shape
        and a.dtype == b.dtype
        and a.order == b.order
        and a.format == b.format
    )


class ItemGroup:
    """A collection of :class:`Item` objects, addressable by ID or by name.

    On the receive side, :meth:`update` applies received heaps. On the send
    side, see :class:`spead2gpu.send.ItemGroup`.
    """

    __module__ = "spead2gpu"  # public as spead2gpu.ItemGroup

    def __init__(self):
        self._by_id = {}
        self._by_name = {}

    def _remove_item(self, item):
        del self._by_id[item.id]
        del self._by_name[item.name]

    def _add_item(self, item):
        """Insert *item*, applying the descriptor replacement rules.

        If an item with the same ID and name and an identical descriptor
        exists, it is kept (and receives the new item's value, if any).
        Otherwise any item with the same ID or name is removed, and the new
        item's version is made larger than the versions of the items it
        replaces.
        """
        old = self._by_id.get(item.id)
        old_by_name = self._by_name.get(item.name)
        if old is not None and old is old_by_name and _same_descriptor(old, item):
            if item.value is not None:
                old.value = item.value
            return
        new_version = item.version
        for replaced in (old, old_by_name):
            if replaced is not None and self._by_id.get(replaced.id) is replaced:
                self._remove_item(replaced)
                new_version = max(new_version, replaced.version + 1)
        item.version = new_version
        self._by_id[item.id] = item
        self._by_name[item.name] = item

    def add_item(self, *args, **kwargs):
        """Add a new item to the group and return it.

        Takes the arguments of :class:`Item`. If the ID is ``None``, the
        lowest unused ID from 0x1000 up is allocated. An item with the same
        ID or name is replaced, unless its descriptor is identical, in which
        case the existing item is kept and only takes the new value (if one
        was given).
        """
        item = Item(*args, **kwargs)
        if item.id is None:
            item.id = _UNRESERVED_ID
            while item.id in self._by_id:
                item.id += 1
        self._add_item(item)
        return item

    def __getitem__(self, key):
        """Look up an item by ID (an integer) or by name.

        Raises
        ------
        KeyError
            if there is no such item
        """
        if isinstance(key, _numbers.Integral):
            return self._by_id[key]
        return self._by_name[key]

    def __contains__(self, key):
        """Whether an item with this ID (an integer) or name is present."""
        if isinstance(key, _numbers.Integral):
            return key in self._by_id
        return key in self._by_name

    def keys(self):
        """Item names."""
        return self._by_name.keys()

    def ids(self):
        """Item IDs."""
        return self._by_id.keys()

    def values(self):
        """Item objects."""
        return self._by_name.values()

    def items(self):
        """(name, item) pairs."""
        return self._by_name.items()

    def __len__(self):
        """Number of items."""
        return len(self._by_name)

    def update(self, heap, new_order="="):
        """Apply a received heap.

        The heap's descriptors are added first (see :meth:`add_item` for the
        replacement rules), then the values of its items with IDs above the
        special ones are set (an item without a descriptor is logged and
        skipped).

        Parameters
        ----------
        heap : spead2gpu.recv.Heap
            Received heap
        new_order : str
            Byte order for numpy values (see :meth:`Item.set_from_raw`)

        Returns
        -------
        dict
            The items whose values were updated, keyed by name.
        """
        for raw_descriptor in heap.get_descriptors():
            self._add_item(Item.from_raw(raw_descriptor, flavour=heap.flavour))
        updated_items = {}
        by_id = self._by_id
        for raw_item in heap.get_items():
            item_id = raw_item.id
            if item_id <= STREAM_CTRL_ID:
                continue  # special items are not values
            item = by_id.get(item_id)
            if item is None:
                _logger.warning("Item with ID %#x received but there is no descriptor", item_id)
                continue
            item.set_from_raw(raw_item, new_order)  # positional: this runs per item per heap
            item.version += 1
            updated_items[item.name] = item
        return updated_items
