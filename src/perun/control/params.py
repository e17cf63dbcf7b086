"""The checks of a control request's parameters: each raises BadRequest naming the parameter
and what it must be."""

from __future__ import annotations

import re
from typing import Any

from perun import errors
from perun.control.protocol import BadRequest
from perun.core.address import parse_address


def take(params: dict[str, Any], *required: str, optional: tuple[str, ...] = ()) -> list[Any]:
    missing = [name for name in required if name not in params]
    if missing:
        raise BadRequest(f"missing parameter {', '.join(missing)}")
    unknown = sorted(set(params) - set(required) - set(optional))
    if unknown:
        raise BadRequest(f"unknown parameter {', '.join(unknown)}")
    return [params[name] for name in required] + [params.get(name) for name in optional]


def open_args(params: dict[str, Any]) -> tuple[str, int, int, int, float | None]:
    """(peer, deposit, peer_deposit, delta, timeout) of an open request, checked; timeout (whole
    seconds to wait for the peer's confirmation) is optional."""
    peer, deposit, peer_deposit, delta, timeout = take(params, "peer", "deposit", "peer_deposit", "delta",
                                                       optional=("timeout",))
    return (address(peer, "peer"), amount(deposit, "deposit"), amount(peer_deposit, "peer_deposit"),
            integer(delta, "delta"), float(integer(timeout, "timeout")) if timeout else None)


def shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{name} must be a non-empty string")
    return value


def integer(value: Any, name: str) -> int:
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,78}", value):  # 78 digits hold any uint256
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise BadRequest(f"{name} must be a non-negative integer, got {shown(value)}")


def amount(value: Any, name: str) -> int:
    """A decimal string of wei (plain JSON integers are accepted too)."""
    return integer(value, name)


def seconds(value: Any, default: float = 30.0) -> float:
    """An optional number of whole seconds to wait (`default` when absent)."""
    return float(integer(value, "timeout")) if value is not None else default


def description(value: Any) -> str:
    """An invoice's description: at most MAX_DESCRIPTION bytes of UTF-8."""
    from perun.core.route import MAX_DESCRIPTION

    if not isinstance(value, str) or len(value.encode("utf-8")) > MAX_DESCRIPTION:
        raise BadRequest(f"description must be text of at most {MAX_DESCRIPTION} bytes of UTF-8, got {shown(value)}")
    return value


def port_number(value: Any) -> int:
    port = integer(value, "port")
    if not 0 < port < 65536:
        raise BadRequest(f"port must be in 1..65535, got {port}")
    return port


def address(value: Any, name: str) -> str:
    try:
        return parse_address(value)
    except errors.InvalidAddress as exc:
        raise BadRequest(f"{name}: {exc}") from None


def channel_id(value: Any) -> bytes:
    cid = _hex32(value)
    if cid is None:
        raise BadRequest(f"a channel id is 0x and 64 hex digits, got {shown(value)}")
    return cid


def bytes32(value: Any, name: str) -> bytes:
    data = _hex32(value)
    if data is None:
        raise BadRequest(f"{name} must be 0x and 64 hex digits, got {shown(value)}")
    return data


def _hex32(value: Any) -> bytes | None:
    """The 32 bytes `value` spells as 0x and 64 hex digits, else None."""
    if isinstance(value, str) and value[:2].lower() == "0x" and len(value) == 66:
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            pass
    return None


def hexbytes(value: Any, name: str) -> bytes:
    """0x-prefixed hex bytes, at most what a message carries (MAX_BYTES)."""
    from perun.wire.messages import MAX_BYTES

    if isinstance(value, str) and value[:2].lower() == "0x" and len(value) % 2 == 0:
        try:
            data = bytes.fromhex(value[2:])
        except ValueError:
            pass
        else:
            if len(data) <= MAX_BYTES:
                return data
            raise BadRequest(f"{name} must be at most {MAX_BYTES} bytes, got {len(data)}")
    raise BadRequest(f"{name} must be 0x and an even number of hex digits, got {shown(value)}")
