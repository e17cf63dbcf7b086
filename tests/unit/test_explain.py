"""perun.control.explain without a node: the wording of amounts and times, a contract error's
fields in wire units, and an explanation carried across the control socket."""

from __future__ import annotations

from perun import errors
from perun.control import remote_error
from perun.control.explain import Category, Context, explain, when

DEADLINE = 1796408347  # the leak in issue 15
CID = "0x" + "cd" * 32
TOKEN = "0x" + "70" * 20


def test_times_are_utc_and_relative_to_the_chain() -> None:
    assert when(DEADLINE) == "2026-12-04 18:19:07 UTC"
    assert when(DEADLINE, DEADLINE - 300) == "2026-12-04 18:19:07 UTC, in 5 min"
    assert when(DEADLINE, DEADLINE - 45) == "2026-12-04 18:19:07 UTC, in 45 s"
    assert when(DEADLINE, DEADLINE - 3 * 3600 - 60) == "2026-12-04 18:19:07 UTC, in 3 h 1 min"
    assert when(DEADLINE, DEADLINE + 600) == "2026-12-04 18:19:07 UTC, 10 min ago"


def test_finalize_too_early_says_when_and_what_next() -> None:
    exc = errors.ChannelsFinalizeTooEarly({"deadline": DEADLINE})
    plain = explain(exc)
    assert (plain.code, plain.category, plain.exit_code) == ("FINALIZE_TOO_EARLY", Category.REFUSED, 3)
    assert plain.message == ("the channel can be finalized only once its dispute window ends, at 2026-12-04 18:19:07 "
                             "UTC: the node finalizes it itself then, or run `perun finalize CHANNEL` again")
    known = explain(exc, Context(channel_id=CID, now=DEADLINE - 300))
    assert f"channel {CID} can be finalized" in known.message and "UTC, in 5 min:" in known.message
    assert known.as_json() == {"code": "FINALIZE_TOO_EARLY", "category": "refused", "message": known.message,
                               "contract_error": "ChannelsFinalizeTooEarly", "deadline": DEADLINE, "channel": CID,
                               "now": DEADLINE - 300}


def test_token_amounts_and_the_balance() -> None:
    ctx = Context(channel_id=CID, channel={"kind": "payment", "token": TOKEN})
    short = explain(errors.BalanceExceeded(1500, 1000), ctx)
    assert short.message == (f"paying 1500 units of token {TOKEN} exceeds your balance in channel {CID}, which is "
                             f"1000 units of token {TOKEN}: pay at most that")
    assert (short.code, short.exit_code, short.fields["amount"], short.fields["balance"]) == (
        "INSUFFICIENT_BALANCE", 2, "1500", "1000")
    deposits = explain(errors.ChannelsBalancesNotConserved(
        {"balanceAlice": 10**18, "balanceBob": 0, "total": 2 * 10**18}))
    assert "balances 1 ETH and 0 ETH do not add up to the deposits, 2 ETH" in deposits.message
    assert (deposits.fields["balanceAlice"], deposits.fields["total"]) == (str(10**18), str(2 * 10**18))


def test_peer_offline_unknown_or_reconnecting() -> None:
    peer = "0x" + "12" * 20
    gone = errors.PeerUnavailable(f"not connected to {peer}: connect first")
    unknown = explain(gone, Context(method="open", peer=peer))
    assert (unknown.code, unknown.exit_code) == ("UNKNOWN_PEER", 2)
    redialled = explain(gone, Context(method="pay", channel_id=CID, channel={"kind": "payment", "peer": peer},
                                      peer=peer, known=True, reconnecting=True))
    assert (redialled.code, redialled.exit_code, redialled.fields["reconnecting"]) == ("PEER_OFFLINE", 3, True)
    assert "keeps reconnecting" in redialled.message
    assert redialled.message.endswith(f"or close without it: `perun close --unilateral {CID}`")


def test_a_stale_registration_says_what_is_registered() -> None:
    ctx = Context(channel_id=CID, channel={"kind": "payment", "stage": "closing", "deadline": DEADLINE},
                  now=DEADLINE - 600)
    same = explain(errors.ChannelsStaleVersion({"registered": 1, "submitted": 1}), ctx)
    assert (same.code, same.exit_code) == ("STALE_VERSION", 3)
    assert same.message == (f"version 1 of channel {CID} is registered on chain already, and this node holds no later "
                            "state: nothing to register; the dispute window ends at 2026-12-04 18:19:07 UTC, in 10 min, "
                            f"then `perun finalize {CID}` pays out (the node also does it itself)")
    assert (same.fields["registered"], same.fields["submitted"], same.fields["deadline"]) == (1, 1, DEADLINE)
    higher = explain(errors.ChannelsStaleVersion({"registered": 3, "submitted": 2}), ctx)
    assert higher.message == (f"version 3 of channel {CID} is registered on chain already, above the version 2 this "
                              "node submitted: its watcher answers with a later state if it holds one")


def test_the_client_keeps_what_the_node_explained() -> None:
    exc = remote_error("ChannelsStaleVersion", "version 1 of ... is registered", "STALE_VERSION", "refused",
                       {"registered": 1})
    assert isinstance(exc, errors.ChannelsStaleVersion) and str(exc) == "version 1 of ... is registered"
    assert explain(exc).as_json() == {"code": "STALE_VERSION", "category": "refused",
                                      "message": "version 1 of ... is registered", "registered": 1}
    old_node = remote_error("UnknownChannel", "no channel 0x12")  # no code: explained here, as it is
    assert (explain(old_node).code, explain(old_node).message) == (
        "UNKNOWN_CHANNEL", "no channel 0x12: `perun status` lists its channels")


def test_a_failed_payment_names_the_hop_its_failure_and_what_to_do() -> None:
    hop = "0x" + "ab" * 20
    failed = errors.PaymentFailed(f"{hop} refused the lock (CHANNEL_REFUSED: this node forwards no payments)",
                                  f"pay again over a route without {hop}", hop="0x" + "12" * 20, index=0, code=0x0101)
    plain = explain(failed)
    assert (plain.code, plain.category, plain.exit_code) == ("PAYMENT_FAILED", Category.REFUSED, 3)
    assert plain.message == (f"the payment failed at hop 0 (0x{'12' * 20}): {hop} refused the lock (CHANNEL_REFUSED: "
                             f"this node forwards no payments); pay again over a route without {hop}. Nothing stays "
                             "locked: the amount is back in your channel")
    assert (plain.fields["hop"], plain.fields["index"], plain.fields["failure"]) == ("0x" + "12" * 20, 0,
                                                                                     "NEXT_HOP_REFUSED")
    garbled = explain(errors.PaymentFailed("the failure that came back is unreadable", "pay again"))
    assert (garbled.code, garbled.fields["hop"], garbled.fields["failure"]) == ("PAYMENT_FAILED", None, None)
