"""The client side of a node's control socket: one request, one reply, the node's error raised
again as the exception class it names."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from perun import errors
from perun.control.explain import Category, Explained
from perun.control.protocol import CLIENT_TIMEOUT, LOCAL_ERRORS, ControlError, NodeNotRunning, socket_path


def call(data_dir: Path | str, method: str, params: dict[str, Any] | None = None, *,
         timeout: float = CLIENT_TIMEOUT) -> Any:
    """Sends one request to the node at `data_dir` and returns its result, or raises the
    error the node replied with (the PerunError subclass it names, else PerunError)."""
    path = socket_path(data_dir)
    request = json.dumps({"method": method, "params": params or {}}).encode() + b"\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise NodeNotRunning(f"no node is running at {data_dir} (nothing listens on {path})") from None
        except OSError as exc:
            raise ControlError(f"cannot reach the node at {path}: {exc.strerror or exc}") from None
        try:
            sock.sendall(request)
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = sock.recv(1 << 16)
                if not chunk:
                    raise ControlError("the node closed the connection without answering (did it stop?)")
                reply += chunk
        except TimeoutError:
            raise ControlError(f"the node did not answer {method} within {timeout:g} s") from None
        except OSError as exc:
            raise ControlError(f"lost the connection to the node: {exc.strerror or exc}") from None
    try:
        reply_obj = json.loads(reply)
        ok = reply_obj["ok"]
    except (ValueError, KeyError, TypeError):
        raise ControlError("the node's reply is not a control reply") from None
    if ok:
        return reply_obj.get("result")
    error = reply_obj.get("error") or {}
    raise remote_error(str(error.get("type", "PerunError")), str(error.get("message", "unknown error")),
                       error.get("code"), error.get("category"), error.get("fields"))


def remote_error(type_name: str, message: str, code: Any = None, category: Any = None,
                 fields: Any = None) -> errors.PerunError:
    """An exception of the PerunError subclass called `type_name`, saying `message`; with the
    node's `code` and `category`, its `explained` is what the node said (perun.control.explain)."""
    cls = getattr(errors, type_name, None) or LOCAL_ERRORS.get(type_name)
    if not (isinstance(cls, type) and issubclass(cls, errors.PerunError)):
        cls = errors.PerunError
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)  # not cls.__init__: some take structured arguments
    if isinstance(exc, errors.ContractRejected):
        exc.name, exc.fields = type_name, {}
    if isinstance(exc, errors.PeerRejected):
        exc.code, exc.reason = None, message
    exc.remote_type = type_name
    if isinstance(code, str) and category in {c.value for c in Category}:
        exc.explained = Explained(code, Category(category), message, dict(fields) if isinstance(fields, dict) else {})
    return exc
