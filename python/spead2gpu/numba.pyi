from typing import Any

intp_to_voidptr: Any
