"""A serializer from outside metasched: JSON text (plain data only, readable by any language). Declared
under ``metasched.serializers``; it must be installed wherever the tasks that use it run."""

from __future__ import annotations

import json
from typing import Any


class Json:
    """Lists, dicts, strings, numbers, booleans and None; a tuple comes back as a list."""

    name = "json"

    def dumps(self, value: Any) -> bytes:
        return json.dumps(value).encode()

    def loads(self, blob: bytes) -> Any:
        return json.loads(blob)
