"""The CLI's side of the agent's HTTP endpoints (fqdn_policy.ops.opsapi): one GET, JSON back."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from fqdn_policy.ops.config import DEFAULT_METRICS

DEFAULT_URL = f"http://{DEFAULT_METRICS[0]}:{DEFAULT_METRICS[1]}"
TIMEOUT = 3.0


class AgentUnreachable(RuntimeError):
    """No agent answered at the URL (not running, metrics off, another address)."""


class AgentRefused(RuntimeError):
    """The agent answered with an error; the message is its own."""


def get_json(base_url: str, path: str, params: Mapping[str, str] | None = None) -> Any:
    url = base_url.rstrip("/") + path + (f"?{urlencode(params)}" if params else "")
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        try:
            message = json.loads(error.read()).get("error", str(error))
        except ValueError:
            message = str(error)
        raise AgentRefused(message) from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise AgentUnreachable(f"no agent answered at {base_url}: {reason}") from None
