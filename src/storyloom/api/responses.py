"""JSON responses that always encode: a lone surrogate that reached storage shows as U+FFFD, never a 500."""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse

from storyloom.domain.readable import showable


class ReadableJSONResponse(JSONResponse):
    """Starlette's JSON rendering; only when the text cannot be UTF-8 are its lone surrogates replaced."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            return showable(text).encode("utf-8")
