"""HTTP helpers shared by the wallet API (node/api.py) and the peer API (p2p/routes.py)."""
import json

from starlette.requests import Request
from starlette.responses import Response

from core.errors import Malformed


def json_response(body, status: int = 200) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status_code=status,
                    media_type="application/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or 413 `too_large` as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdecimal() and int(declared) > limit:
        raise Malformed("too_large", f"body of {declared} bytes > limit {limit}", status=413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Malformed("too_large", f"body > limit {limit} bytes", status=413)
        chunks.append(chunk)
    return b"".join(chunks)
