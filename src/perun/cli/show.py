"""How `perun` shows what a node answered: amounts, channels, tables, and what happens next."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from perun.control.explain import relative, when
from perun.core.amounts import ether
from perun.core.channel import ETH as ETH_TOKEN


def show_amount(amount: int | str, token: str = ETH_TOKEN) -> str:
    amount = int(amount)
    if token != ETH_TOKEN:
        return f"{amount} units of token {token}"
    return f"{ether(amount)} ETH ({amount} wei)"


def short_amount(amount: int | str, token: str = ETH_TOKEN) -> str:
    return f"{ether(int(amount))} ETH" if token == ETH_TOKEN else f"{int(amount)} units"


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def emit(args: argparse.Namespace, result: Any, text: str) -> None:
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(text)


def closed_virtual(ch: dict[str, Any]) -> str:
    return (f"closed virtual channel {ch['channel']} through {ch['ingrid']} at version {ch['version']}: "
            f"you {show_amount(ch['my_balance'], ch['token'])}, peer {show_amount(ch['peer_balance'], ch['token'])}, "
            "back in your multistate channel with Ingrid")


def payouts(ch: dict[str, Any]) -> str:
    if ch["my_payout"] is None:
        return f"not paid out yet ({ch['stage']})"
    return (f"paid out you {show_amount(ch['my_payout'], ch['token'])}, "
            f"peer {show_amount(ch['peer_payout'], ch['token'])}")


def tx(ch: dict[str, Any]) -> str:
    tx = ch.get("transaction")
    return f" (transaction {tx['hash']}, gas {tx['gas_used']:,})" if tx else ""


def describe_payment(ch: dict[str, Any], now: int) -> str:
    token = ch["token"]
    lines = [
        f"channel   {ch['channel']}",
        f"peer      {ch['peer']} (you are {ch['role']})",
        f"stage     {ch['stage']}, version {ch['version']}{' (final)' if ch['final'] else ''}"
        + (f", {ch['pending']} pending" if ch["pending"] else ""),
        f"you       {show_amount(ch['my_balance'], token)}",
        f"peer      {show_amount(ch['peer_balance'], token)}",
        f"deposits  you {short_amount(ch['my_deposit'], token)}, peer {short_amount(ch['peer_deposit'], token)}",
        f"Δ         {ch['delta']} s",
    ]
    if ch["stage"] == "closing":
        lines.append(f"closing   version {ch['registered_version']} registered")
    lines += _tower_lines(ch.get("towers"), "tower     ")
    lines += _next_lines(ch, now)
    if ch["my_payout"] is not None:
        lines.append(f"paid out  you {show_amount(ch['my_payout'], token)}, "
                     f"peer {show_amount(ch['peer_payout'], token)}")
    return "\n".join(lines)


def _tower_lines(towers: dict[str, int | None] | None, prefix: str, held: str = "version {}",
                 none: str = "no version") -> list[str]:
    """What each watchtower the node hands its states to acknowledged of one item (None: nothing
    since this node started; a restarted node learns it again at the next hand-over)."""
    return [f"{prefix}{tower} holds " + (held.format(version) if version is not None else
                                         f"{none} yet (since this node started)")
            for tower, version in (towers or {}).items()]


def _next_lines(ch: dict[str, Any], now: int) -> list[str]:
    """What happens next to a payment or multistate channel, when, and what the node does then."""
    peer, stage, mine = _short_address(ch["peer"]), ch["stage"], ch["role"] == "alice"
    deposit = short_amount(ch.get("my_deposit", 0), ch["token"]) if "my_deposit" in ch else "your deposit"
    given_up = ch.get("given_up")
    if stage == "failed":
        return [f"not opened: {given_up}"]
    if stage in ("proposed", "accepted"):
        what = ("your node creates it on chain" if mine and stage == "accepted" else
                f"waiting for {peer} to " + ("accept it" if stage == "proposed" else "create it on chain"))
        if not ch["open_until"]:
            return [f"next      {what}"]
        return [f"next      {what}; the opening is given up at {when(ch['open_until'], now)} if it is not on "
                "chain by then"]
    if stage == "initialising":
        if mine:
            return [f"next      {peer} may confirm until {when(ch['deadline'], now)}; if it does not, your node "
                    f"takes {deposit} back then" + (f" (you gave it up: {given_up})" if given_up else "")]
        if given_up:
            return [f"next      you gave it up ({given_up}): your node does not confirm, and {peer} takes its "
                    f"deposit back after {when(ch['deadline'], now)}"]
        return [f"next      your node confirms it (deposit {deposit}) by {when(ch['deadline'], now)}"]
    if stage == "closing":
        if ch["registered_version"] is not None and ch["registered_version"] < ch["version"]:
            return [f"next      an older version is registered: your node disputes with version {ch['version']} "
                    f"before {when(ch['deadline'], now)}"]
        return [f"next      the dispute window ends at {when(ch['deadline'], now)}; then your node finalizes "
                "and pays out"]
    return []


def describe_ledger(ch: dict[str, Any], now: int) -> str:
    token = ch["token"]
    lines = [
        f"channel   {ch['channel']} (multistate)",
        f"peer      {ch['peer']} (you are {ch['role']})",
        f"stage     {ch['stage']}, version {ch['version']}" + (f", {ch['pending']} pending" if ch["pending"] else ""),
        f"you       {show_amount(ch['my_cash'], token)} free",
        f"peer      {show_amount(ch['peer_cash'], token)} free",
        f"Δ         {ch['delta']} s",
    ]
    lines += _tower_lines(ch.get("towers"), "tower     ")
    for nc in ch["nanocontracts"]:
        lines.append(f"nanocontract {nc['nid']}: {nc['app']}, version {nc['version']}, blocked you "
                     f"{short_amount(nc['blocked'][0], token)}, peer {short_amount(nc['blocked'][1], token)}")
        lines += _tower_lines(nc.get("towers"), "  tower   ")
        lines += _tower_lines(nc.get("tower_calls"), "  tower   ", "the SETTLE with γ version {}", "no SETTLE")
    lines += _next_lines(ch, now)
    if ch["my_payout"] is not None:
        lines.append(f"paid out  you {show_amount(ch['my_payout'], token)}, "
                     f"peer {show_amount(ch['peer_payout'], token)}")
    return "\n".join(lines)


def describe_virtual(ch: dict[str, Any], now: int) -> str:
    token = ch["token"]
    lines = [
        f"channel   {ch['channel']} (virtual, you are {ch['position']})",
        f"alice     {ch['alice']}",
        f"bob       {ch['bob']}",
        f"through   {ch['ingrid']} (Ingrid)",
        f"version   {ch['version']}{' (final)' if ch['final'] else ''}{', settled' if ch['settled'] else ''}",
    ]
    if ch["my_balance"] is not None:
        lines += [f"you       {show_amount(ch['my_balance'], token)}",
                  f"peer      {show_amount(ch['peer_balance'], token)}"]
    lines.append(f"validity  {when(ch['validity'], now)}, then {ch['window']} s for each end's latest state")
    lines += _tower_lines(ch.get("towers"), "tower     ", "the SETTLE with γ version {}", "no SETTLE")
    return "\n".join(lines)


def describe_watched(ch: dict[str, Any], now: int) -> str:
    """A channel a watchtower watches (`perun status CHANNEL` on a tower)."""
    lines = [
        f"channel   {ch['channel']} (watched)",
        f"client    {ch['client']}",
        f"stage     {ch['stage']}, version {ch['version']} held",
        f"alice     {show_amount(ch['balance_alice'])}",
        f"bob       {show_amount(ch['balance_bob'])}",
        f"reward    {show_amount(ch['reward'])}",
    ]
    if ch["registered_version"] is not None:
        by = " (this tower's refutation)" if ch["refuted"] == ch["registered_version"] else ""
        lines.append(f"closing   version {ch['registered_version']} registered{by}; the window ends at "
                     f"{when(ch['deadline'], now)}")
        if ch["stage"] == "closing" and ch["registered_version"] < ch["version"]:
            lines.append(f"next      the tower refutes with version {ch['version']} before {when(ch['deadline'], now)}")
        elif ch["stage"] == "closing" and ch["refuted"] == ch["registered_version"]:
            lines.append("next      the tower finalizes when the window ends, and is paid its reward")
    if ch["reward_paid"] is not None:
        lines.append(f"paid      {show_amount(ch['reward_paid'])} to this tower")
    return "\n".join(lines)


def describe_ms_watched(ch: dict[str, Any], now: int) -> str:
    """A multistate channel a watchtower watches: its channel state, and per nanocontract the
    version of the state and of the SETTLE call it holds (`perun status CHANNEL` on a tower)."""
    lines = [
        f"channel   {ch['channel']} (watched, multistate)",
        f"client    {ch['client']}",
        f"stage     {ch['stage']}, version {ch['version']} held",
        f"cash      alice {show_amount(ch['cash_alice'])}, bob {show_amount(ch['cash_bob'])}",
        f"reward    {show_amount(ch['reward'])} for the channel state",
    ]
    lines += [f"nano      {nid}: version {version} held" + (f", SETTLE with γ version {ch['calls'][nid]}"
                                                           if nid in ch["calls"] else "")
              for nid, version in ch["nanocontracts"].items()]
    if ch["registered_version"] is not None:
        by = " (this tower's refutation)" if ch["refuted"] == ch["registered_version"] else ""
        lines.append(f"closing   version {ch['registered_version']} registered{by}; the window ends at "
                     f"{when(ch['deadline'], now)}")
    if int(ch["reward_paid"]):
        lines.append(f"paid      {show_amount(ch['reward_paid'])} to this tower")
    return "\n".join(lines)


def watched_table(channels: list[dict[str, Any]], now: int) -> str:
    rows = [("WATCHED CHANNEL", "KIND", "CLIENT", "STAGE", "VERSION", "REGISTERED", "REWARD", "PAID",
             "NEXT DEADLINE")]
    for ch in channels:
        registered = "" if ch["registered_version"] is None else str(ch["registered_version"])
        paid = "" if ch["reward_paid"] is None or not int(ch["reward_paid"]) else short_amount(ch["reward_paid"])
        due = relative(ch["deadline"] - now) if ch["stage"] == "closing" else ""
        kind = "payment" if ch["kind"] == "tower" else "multistate"
        rows.append((ch["channel"], kind, _short_address(ch["client"]), ch["stage"], str(ch["version"]), registered,
                     short_amount(ch["reward"]), paid, due))
    return _grid(rows, right={4, 5, 6, 7})


def paid_over_route(paid: dict[str, Any]) -> str:
    """A multi-hop payment once claimed (control's pay_invoice and pay_to)."""
    hops = paid["hops"]
    through = f" through {', '.join(hop['node'] for hop in hops[:-1])}" if len(hops) > 1 else ""
    fees = sum(int(fee) for fee in paid["fees"])
    return (f"paid {show_amount(paid['amount'])} to {paid['payee']} over {len(hops)} channel"
            f"{'s' if len(hops) > 1 else ''}{through}: fees {show_amount(fees)}, total {show_amount(paid['total'])}; "
            f"payment hash {paid['payment_hash']}")


def _leg(leg: dict[str, Any] | None, now: int) -> str:
    if leg is None:
        return "-"
    return f"{show_amount(leg['amount'])} locked in {leg['channel']} until {when(leg['timeout'], now)}"


def describe_hop(ch: dict[str, Any], now: int) -> str:
    """This node's part in a multi-hop payment (`perun status PAYMENT_HASH`)."""
    lines = [
        f"payment   {ch['payment_hash']} (multi-hop, you are its {ch['part']})",
        f"stage     {ch['outcome']}, preimage {'known' if ch['preimage_known'] else 'not known yet'}",
    ]
    failure = ch.get("failure")
    if failure is not None:
        where = f" at hop {failure['index']} ({failure['hop']})" if failure["hop"] is not None else ""
        lines.append(f"failed{where}: {failure['reason']}; {failure['advice']}")
    if ch["incoming"] is not None:
        lines.append(f"incoming  {_leg(ch['incoming'], now)}")
    if ch["outgoing"] is not None:
        lines.append(f"outgoing  {_leg(ch['outgoing'], now)}" + (f", to {ch['next_hop']}" if ch["next_hop"] else ""))
    return "\n".join(lines)


def hop_table(payments: list[dict[str, Any]], now: int) -> str:
    rows = [("PAYMENT", "PART", "IN", "OUT", "STAGE")]
    for ch in payments:
        rows.append((ch["payment_hash"], ch["part"],
                     *(short_amount(leg["amount"]) if leg else "" for leg in (ch["incoming"], ch["outgoing"])),
                     ch["outcome"]))
    return _grid(rows, right={2, 3})


def _short_address(address: str) -> str:
    return f"{address[:6]}…{address[-4:]}"


def payment_table(channels: list[dict[str, Any]], now: int) -> str:
    rows = [("CHANNEL", "PEER", "ROLE", "STAGE", "VERSION", "MINE", "PEER'S", "NEXT DEADLINE")]
    for ch in channels:
        rows.append((ch["channel"], _short_address(ch["peer"]), ch["role"], ch["stage"], str(ch["version"]),
                     short_amount(ch["my_balance"], ch["token"]), short_amount(ch["peer_balance"], ch["token"]),
                     _due(ch, now)))
    return _grid(rows, right={4, 5, 6})


def ledger_table(ledgers: list[dict[str, Any]], now: int) -> str:
    rows = [("MULTISTATE CHANNEL", "PEER", "ROLE", "STAGE", "VERSION", "MY CASH", "PEER'S", "NANOCONTRACTS",
             "NEXT DEADLINE")]
    for ch in ledgers:
        rows.append((ch["channel"], _short_address(ch["peer"]), ch["role"], ch["stage"], str(ch["version"]),
                     short_amount(ch["my_cash"], ch["token"]), short_amount(ch["peer_cash"], ch["token"]),
                     str(len(ch["nanocontracts"])), _due(ch, now)))
    return _grid(rows, right={4, 5, 6, 7})


def _due(ch: dict[str, Any], now: int) -> str:
    """How far the deadline that matters in the channel's stage is (see `status CHANNEL`)."""
    if ch["stage"] in ("initialising", "closing"):
        return relative(ch["deadline"] - now)
    if ch["stage"] in ("proposed", "accepted") and ch["open_until"]:
        return relative(ch["open_until"] - now)
    return ""


def virtual_table(virtuals: list[dict[str, Any]], now: int) -> str:
    rows = [("VIRTUAL CHANNEL", "YOU ARE", "ALICE", "BOB", "VERSION", "MINE", "PEER'S", "SETTLED")]
    for ch in virtuals:
        mine, peers = ((short_amount(ch[key], ch["token"]) if ch[key] is not None else "-")
                       for key in ("my_balance", "peer_balance"))
        rows.append((ch["channel"], ch["position"], _short_address(ch["alice"]), _short_address(ch["bob"]),
                     str(ch["version"]), mine, peers, "yes" if ch["settled"] else "no"))
    return _grid(rows, right={4, 5, 6})


def _grid(rows: Sequence[tuple[str, ...]], right: set[int]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
        for row in rows
    )
