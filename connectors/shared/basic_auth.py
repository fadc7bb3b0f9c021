"""The ``Authorization`` value of HTTP Basic credentials. Pure.

Not :class:`aiohttp.BasicAuth`: it refuses a user name with a colon (a Sinch webhook user may
have one) and encodes Latin-1 by default; providers expect UTF-8.
"""

from __future__ import annotations

import base64


def basic_authorization(user: str, password: str) -> str:
    """``Basic base64(user:password)``, UTF-8."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
