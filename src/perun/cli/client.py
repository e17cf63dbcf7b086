"""The commands for a running node, through its control socket (perun.control): channel ids
resolved from their prefixes, the answers shown, and the waits with a progress line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from perun import errors
from perun.cli.args import amount_arg, channel_arg
from perun.cli.show import (
    closed_virtual,
    describe_hop,
    describe_ledger,
    describe_ms_watched,
    describe_payment,
    describe_virtual,
    describe_watched,
    emit,
    hop_table,
    host_port,
    ledger_table,
    paid_over_route,
    payment_table,
    payouts,
    show_amount,
    tx,
    virtual_table,
    watched_table,
)
from perun.control.explain import when

# --------------------------------------------------------------------------- commands for a running node


CHANNEL_ARGS = ("channel", "ledger", "ledger_b")


def _resolve(args: argparse.Namespace) -> None:
    """Replaces each channel id prefix in `args` by the one channel of the node's it names."""
    short = [name for name in CHANNEL_ARGS if len(getattr(args, name, None) or "0x" + "0" * 64) < 66]
    if not short:
        return
    known = [ch.get("channel") or ch["payment_hash"] for ch in call(args, "status")]
    for name in short:
        prefix = getattr(args, name)
        matches = [cid for cid in known if cid.startswith(prefix)]
        if not matches:
            raise errors.UnknownChannel(f"no channel of this node starts with {prefix}")
        if len(matches) > 1:
            raise errors.ValidationError(f"{prefix} is the start of {len(matches)} channels: give more digits")
        setattr(args, name, matches[0])


def resolving(run: Callable[[argparse.Namespace], Any]) -> Callable[[argparse.Namespace], Any]:
    """`run` after the channel id prefixes in its arguments are resolved."""
    def resolved(args: argparse.Namespace) -> Any:
        _resolve(args)
        return run(args)
    return resolved


def call(args: argparse.Namespace, method: str, **params: Any) -> Any:
    from perun.control import call

    return call(args.data, method, params)


def cmd_info(args: argparse.Namespace) -> None:
    info = call(args, "info")
    if "tower" in info["channels"]:  # a watchtower's socket
        emit(args, info, "\n".join([
            f"watchtower {info['address']}",
            f"listening  {host_port(info['host'], info['port'])}",
            f"chain      {info['chain_id']}, PaymentContract {info['contract']}"
            + (f", MSContract {info['ms_contract']}" if "ms_contract" in info else "")
            + ("" if info["chain_reachable"] else " (unreachable now: the tower keeps trying)"),
            f"clients    {', '.join(info['peers']) or 'none connected'}",
            f"watching   {info['watched'] + info.get('ms_watched', 0)} channel(s)",
        ]))
        return
    emit(args, info, "\n".join([
        f"node      {info['address']}",
        f"listening {host_port(info['host'], info['port'])}",
        f"chain     {info['chain_id']}, PaymentContract {info['contract']}"
        + ("" if info["chain_reachable"] else " (unreachable now: the node keeps trying)"),
        f"peers     {', '.join(info['peers']) or 'none connected'}",
        f"channels  {', '.join(f'{n} {kind}' for kind, n in info['channels'].items())}",
    ]))


def cmd_connect(args: argparse.Namespace) -> None:
    host, port = args.address
    result = call(args, "connect", peer=args.peer, host=host, port=port)
    emit(args, result, f"connected to {result['peer']} at {host_port(host, port)}")


def cmd_open(args: argparse.Namespace) -> None:
    method = "ledger_open" if args.multistate else "open"
    ch = call(args, method, peer=args.peer, deposit=str(args.deposit), peer_deposit=str(args.peer_deposit),
               delta=args.delta, timeout=args.timeout)
    kind, mine, peers = ("multistate channel", ch["my_cash"], ch["peer_cash"]) if args.multistate else (
        "channel", ch["my_balance"], ch["peer_balance"])
    if ch["stage"] == "initialising":  # created, and the peer has not confirmed yet
        now = call(args, "info")["chain_time"]
        emit(args, ch, f"created {kind} {ch['channel']} on chain with your deposit of {show_amount(mine)}; "
                        f"{ch['peer']} has not confirmed it yet and may until {when(ch['deadline'], now)}. "
                        f"If it does not, your node takes your deposit back then. `perun status {ch['channel']}` "
                        "shows where it is.")
        return
    emit(args, ch, f"opened {kind} {ch['channel']} with {ch['peer']}: you {show_amount(mine)}, "
                    f"peer {show_amount(peers)}, dispute window {ch['delta']} s")


def cmd_cancel(args: argparse.Namespace) -> None:
    ch = call(args, "cancel", channel=args.channel)
    if ch["stage"] == "failed":
        text = f"gave up the opening of {ch['channel']}: {ch['given_up']}; nothing is on chain, nothing will be sent"
    elif ch["role"] == "alice":
        now = call(args, "info")["chain_time"]
        text = (f"gave up {ch['channel']}, which is on chain with your deposit: {ch['peer']} may still confirm it "
                f"until {when(ch['deadline'], now)}; if it does not, your node takes your deposit back then")
    else:
        text = (f"gave up {ch['channel']}: your node will not confirm it, and {ch['peer']} takes its deposit back "
                "after the confirm deadline")
    emit(args, ch, text)


def cmd_virtual_open(args: argparse.Namespace) -> None:
    now = call(args, "info")["chain_time"]
    ch = call(args, "virtual_open", ledger=args.ledger, peer=args.peer, ledger_b=args.ledger_b,
               deposit=str(args.deposit), peer_deposit=str(args.peer_deposit), validity=now + args.validity,
               window=args.window, fee=str(args.fee))
    emit(args, ch, f"opened virtual channel {ch['channel']} with {ch['bob']} through {ch['ingrid']}: "
                    f"you {show_amount(ch['my_balance'], ch['token'])}, peer {show_amount(ch['peer_balance'], ch['token'])}; "
                    f"it closes by {when(ch['validity'], now)}")


def cmd_virtual_close(args: argparse.Namespace) -> None:
    ch = call(args, "virtual_close", channel=args.channel)
    emit(args, ch, closed_virtual(ch))


def cmd_pay(args: argparse.Namespace) -> None:
    """The three forms of `perun pay`: CHANNEL AMOUNT, INVOICE, --to ADDRESS AMOUNT."""
    what = args.what
    if args.to is not None and len(what) == 1:
        result = call(args, "pay_to", payee=args.to, amount=str(_typed(amount_arg, what[0], "AMOUNT")),
                      timeout=args.timeout)
        emit(args, result, paid_over_route(result))
    elif args.to is None and len(what) == 1 and what[0].lower().startswith("perun1"):
        result = call(args, "pay_invoice", invoice=what[0], timeout=args.timeout)
        emit(args, result, paid_over_route(result))
    elif args.to is None and len(what) == 2:
        args.channel = _typed(channel_arg, what[0], "CHANNEL")
        amount = _typed(amount_arg, what[1], "AMOUNT")
        _resolve(args)
        ch = call(args, "pay", channel=args.channel, amount=str(amount))
        token = ch["token"]
        emit(args, ch, f"paid {show_amount(amount, token)} on {ch['channel']}: version {ch['paid_version']}, "
                        f"you {show_amount(ch['my_balance'], token)}, peer {show_amount(ch['peer_balance'], token)}")
    else:
        raise errors.UsageError("perun pay", "give CHANNEL AMOUNT, or an INVOICE (perun1...), or --to ADDRESS "
                                "AMOUNT")


def _typed(read: Callable[[str], Any], text: str, name: str) -> Any:
    """`text` read as an argument of type `read` (one of perun.cli.args), or a UsageError."""
    try:
        return read(text)
    except argparse.ArgumentTypeError as exc:
        raise errors.UsageError("perun pay", f"argument {name}: {exc}") from None


def cmd_invoice(args: argparse.Namespace) -> None:
    invoice = call(args, "invoice", amount=str(args.amount), expiry=args.expiry, description=args.description)
    if not args.json:  # the text alone on stdout, for `$(perun invoice ...)`; what it asks on stderr
        now = call(args, "info")["chain_time"]
        print(f"invoice for {show_amount(invoice['amount'], invoice['token'])} to {invoice['payee']}, payable until "
              f"{when(invoice['expiry'], now)}; payment hash {invoice['payment_hash']}", file=sys.stderr)
    emit(args, invoice, invoice["invoice"])


def cmd_status(args: argparse.Namespace) -> None:
    if args.sync:
        call(args, "sync")
    if args.channel:
        ch = call(args, "status", channel=args.channel)
        describe = {"payment": describe_payment, "multistate": describe_ledger, "virtual": describe_virtual,
                    "tower": describe_watched, "ms-tower": describe_ms_watched, "multihop": describe_hop}
        emit(args, ch, describe[ch["kind"]](ch, call(args, "info")["chain_time"]))
        return
    every = call(args, "status")
    now = call(args, "info")["chain_time"] if every else 0
    tables = [shown(of_kind, now) for kinds, shown in ((("payment",), payment_table), (("multistate",), ledger_table),
                                                       (("virtual",), virtual_table),
                                                       (("multihop",), hop_table),
                                                       (("tower", "ms-tower"), watched_table))
              if (of_kind := [ch for ch in every if ch["kind"] in kinds])]
    emit(args, every, "\n\n".join(tables) or "no channels")


def cmd_close(args: argparse.Namespace) -> None:
    if not args.unilateral:
        if args.wait:
            raise errors.UsageError("perun close", "--wait goes with --unilateral (a cooperative close waits anyway)")
        ch = call(args, "close", channel=args.channel)
        emit(args, ch, closed_virtual(ch) if ch["kind"] == "virtual"
              else f"closed {ch['channel']} cooperatively: {payouts(ch)}")
        return
    ch = call(args, "register", channel=args.channel)
    if ch["stage"] == "closed":  # it held a final state signed by both: that pays out at once
        text = f"closed {ch['channel']} with the final state both signed: {payouts(ch)}"
    elif args.wait:
        print(f"registered version {ch['registered_version']} of {ch['channel']} on chain{tx(ch)}", file=sys.stderr)
        ch = _wait_closed(args, ch)
        text = f"closed {ch['channel']} after the dispute window: {payouts(ch)}"
    else:
        text = (f"registered version {ch['registered_version']} of {ch['channel']} on chain{tx(ch)}; "
                f"the peer may answer until {when(ch['deadline'], call(args, 'info')['chain_time'])}, then your "
                "node finalizes and pays out (`perun finalize --wait` waits for it)")
    emit(args, ch, text)


def cmd_finalize(args: argparse.Namespace) -> None:
    if args.wait and (ch := call(args, "status", channel=args.channel))["stage"] == "closing":
        ch = _wait_closed(args, ch)
        emit(args, ch, f"{ch['channel']} is closed: {payouts(ch)}")
        return
    ch = call(args, "finalize", channel=args.channel)
    done = f"finalized {ch['channel']}{tx(ch)}" if ch["transaction"] else f"{ch['channel']} was closed already"
    emit(args, ch, f"{done}: {payouts(ch)}")


def _wait_closed(args: argparse.Namespace, ch: dict[str, Any]) -> dict[str, Any]:
    """Waits until a closing channel is paid out (its node finalizes once the window is over),
    with a progress line on stderr: rewritten each second on a terminal, once otherwise."""
    tty = sys.stderr.isatty()
    shown = False
    while True:
        if tty or not shown:
            now = call(args, "info")["chain_time"]
            line = f"waiting for the dispute window of {ch['channel'][:10]}… to end at {when(ch['deadline'], now)}"
            print(("\r\033[K" if tty else "") + line, end="" if tty else "\n", file=sys.stderr, flush=True)
            shown = True
        try:
            ch = call(args, "wait", channel=ch["channel"], stage="closed", timeout=1 if tty else 30)
        except errors.PeerTimeout:
            ch = call(args, "status", channel=ch["channel"])
            continue
        if tty:
            print(file=sys.stderr)
        return ch


def cmd_refund(args: argparse.Namespace) -> None:
    ch = call(args, "refund", channel=args.channel)
    done = f"refunded {ch['channel']}{tx(ch)}" if ch["transaction"] else f"{ch['channel']} was closed already"
    emit(args, ch, f"{done}: {payouts(ch)}")
