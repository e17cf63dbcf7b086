"""What the control socket's server and client share: where the socket is, the limits, the
errors of the control interface itself, and how a reply is encoded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perun import errors

if TYPE_CHECKING:
    from perun.control.explain import Explained

SOCKET_NAME = "control.sock"
MAX_LINE = 1 << 16  # bytes in one request line
CLIENT_TIMEOUT = 300.0  # the node bounds its own waits (peer answers, confirmations); this is a backstop


class ControlError(errors.PerunError):
    """A control request could not be made or was malformed."""


class BadRequest(ControlError, errors.ValidationError):
    """A request names an unknown method, lacks a parameter, or has one of the wrong form."""


class NodeNotRunning(ControlError):
    """No node answers on the data directory's control socket."""


class InternalError(errors.PerunError):
    """The node failed unexpectedly while serving a request (its log has the traceback)."""


LOCAL_ERRORS = {cls.__name__: cls for cls in (ControlError, BadRequest, NodeNotRunning, InternalError)}


def socket_path(data_dir: Path | str) -> Path:
    return Path(data_dir) / SOCKET_NAME


def encode(reply: dict[str, Any]) -> bytes:
    return json.dumps(reply, separators=(",", ":")).encode() + b"\n"


def failure(exc: errors.PerunError, explained: Explained) -> dict[str, Any]:
    """The reply to a failed request: the exception's class (the client raises it again), and its
    code, category, sentence and fields (perun.control.explain)."""
    return {"ok": False, "error": {"type": type(exc).__name__, "code": explained.code,
                                   "category": explained.category.value, "message": explained.message,
                                   "fields": explained.fields}}
