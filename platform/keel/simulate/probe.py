"""One probe request through the gateway and what counts as a whole answer (load benchmarks and tests).

A streamed answer is whole when it ends in the ``[DONE]`` line with no error event on the way; a plain one
when its choice finished (``stop`` or ``length``). Anything else, a 200 included, is a failed request.
"""

from __future__ import annotations

from typing import Any

import httpx


def chat_body(text: str, max_tokens: int, stream: bool) -> dict[str, Any]:
    """A greedy one-message request to the served model."""
    return {
        "model": "keel",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    }


def whole_answer(r: httpx.Response, stream: bool) -> bool:
    if r.status_code != 200:
        return False
    if stream:
        return r.text.rstrip().endswith("data: [DONE]") and '"error"' not in r.text
    choices = r.json().get("choices") or [{}]
    return choices[0].get("finish_reason") in ("stop", "length")
