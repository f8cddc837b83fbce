from numba.core.types import Record

chunk_place_data: Record
