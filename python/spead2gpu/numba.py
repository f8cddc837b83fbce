"""Helpers for writing numba-compiled callbacks (requires :mod:`numba`).

numba is an optional dependency: importing this module fails with
:exc:`ImportError` if it is not installed, but :mod:`spead2gpu` itself does
not need it.
"""

import numba  # noqa: F401  (fail early if numba is missing)
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["intp_to_voidptr"]


@intrinsic
def intp_to_voidptr(typingctx, src):
    """Convert an integer holding an address into a ``void *``.

    For use inside numba-compiled code, for example to turn
    ``chunk_place_data.items`` (stored as an ``intp``) into a pointer for
    :func:`numba.carray`::

        items = numba.carray(intp_to_voidptr(data[0].items), 2, dtype=np.int64)
    """
    if not isinstance(src, types.Integer):
        return None
    sig = types.voidptr(src)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return sig, codegen
