"""A node's part in multi-hop payments (perun.core.multihop): the payee's and an intermediary's
checks of a lock that came with an onion, the records' round trip through the store, failures
made, passed on and read by the payer, the safety rule of cancelling, and each lock's duties at
its deadline."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest
from eth_account import Account

from perun import errors
from perun.core import multihop as mh
from perun.core import onion
from perun.core.multihop import FailureCode, HopDuty, HopRecord, Leg, Part, Release
from perun.core.onion import HopPayload
from perun.core.route import Invoice, Policy
from perun.store import Store

PAYEE = Account.from_key(b"\x03" * 32)
NEXT = "0x" + "44" * 20
NOW = 1_700_000_000
DELTA, MARGIN = 600, 350
PREIMAGE = b"\x42" * 32
HASH = hashlib.sha256(PREIMAGE).digest()


def invoiced(amount=1000, min_final=0) -> tuple[HopRecord, Invoice]:
    invoice, preimage = Invoice.create(PAYEE.key, PREIMAGE, amount, NOW + 3600, chain_id=1337, min_final=min_final)
    return HopRecord(invoice.payment_hash, Part.PAYEE, preimage=preimage, invoice=invoice.to_bytes()), invoice


def test_the_payee_takes_only_its_invoice_with_its_secret_amount_and_time():
    rec, invoice = invoiced()
    timeout = NOW + DELTA + MARGIN
    good = HopPayload(None, 1000, timeout, invoice.payment_secret)
    assert mh.check_payee(rec, good, 1000, timeout, DELTA, MARGIN, NOW) == invoice
    with pytest.raises(errors.InvalidNanocontract, match="no invoice"):
        mh.check_payee(None, good, 1000, timeout, DELTA, MARGIN, NOW)
    with pytest.raises(errors.InvalidNanocontract, match="payment secret"):
        mh.check_payee(rec, HopPayload(None, 1000, timeout), 1000, timeout, DELTA, MARGIN, NOW)
    with pytest.raises(errors.InvalidNanocontract, match="not what the payer sent"):
        mh.check_payee(rec, good, 999, timeout, DELTA, MARGIN, NOW)
    with pytest.raises(errors.RouteFeeMismatch):
        low = HopPayload(None, 999, timeout, invoice.payment_secret)
        mh.check_payee(rec, low, 999, timeout, DELTA, MARGIN, NOW)
    with pytest.raises(errors.RouteTimeoutTooClose):
        mh.check_payee(rec, good, 1000, timeout, DELTA, MARGIN, NOW + 1)
    paid = HopRecord(HASH, Part.PAYEE, Leg(bytes(32), b"\x01" * 32, 1000, timeout), invoice=invoice.to_bytes())
    with pytest.raises(errors.InvalidNanocontract, match="being paid"):
        mh.check_payee(paid, good, 1000, timeout, DELTA, MARGIN, NOW)


def test_a_payee_takes_a_keysend_lock_only_if_the_secret_is_the_preimage():
    timeout = NOW + DELTA + MARGIN
    keysend = HopPayload(None, 1000, timeout, PREIMAGE)
    assert mh.check_payee(None, keysend, 1000, timeout, DELTA, MARGIN, NOW, HASH) is None
    with pytest.raises(errors.InvalidNanocontract, match="no invoice"):  # any other secret: a probe
        mh.check_payee(None, HopPayload(None, 1000, timeout, b"\x43" * 32), 1000, timeout, DELTA, MARGIN, NOW, HASH)
    with pytest.raises(errors.InvalidNanocontract, match="not what the payer sent"):
        mh.check_payee(None, keysend, 999, timeout, DELTA, MARGIN, NOW, HASH)
    with pytest.raises(errors.RouteTimeoutTooClose):
        mh.check_payee(None, keysend, 1000, timeout, DELTA, MARGIN, NOW + 1, HASH)
    # A node that took part in this hash already (paid once) takes no second lock with it.
    received = HopRecord(HASH, Part.PAYEE, Leg(bytes(32), b"\x01" * 32, 1000, timeout), preimage=PREIMAGE)
    with pytest.raises(errors.InvalidNanocontract):
        mh.check_payee(received, keysend, 1000, timeout, DELTA, MARGIN, NOW, HASH)


def test_an_intermediary_forwards_for_its_fee_with_time_to_spare_once_per_hash():
    policy = Policy(10, 1000, DELTA, 10**6)
    payload = HopPayload(NEXT, 1000, NOW + 2000)
    mh.check_forwarding(None, policy, DELTA, MARGIN, 1011, NOW + 2000 + DELTA + MARGIN, payload)
    with pytest.raises(errors.RouteFeeMismatch):
        mh.check_forwarding(None, policy, DELTA, MARGIN, 1010, NOW + 2000 + DELTA + MARGIN, payload)
    with pytest.raises(errors.RouteTimeoutTooClose):
        mh.check_forwarding(None, policy, DELTA, MARGIN, 1011, NOW + 1999 + DELTA + MARGIN, payload)
    with pytest.raises(errors.InvalidNanocontract, match="already"):
        mh.check_forwarding(invoiced()[0], policy, DELTA, MARGIN, 1011, NOW + 2000 + DELTA + MARGIN, payload)


def test_a_preimage_is_learnt_only_if_it_hashes_to_the_payment_hash():
    rec = HopRecord(HASH, Part.PAYER)
    assert mh.learn(rec, PREIMAGE).preimage == PREIMAGE and not rec.settled
    assert mh.learn(rec, PREIMAGE).settled
    with pytest.raises(errors.InvalidNanocontract):
        mh.learn(rec, b"\x00" * 32)


def test_a_forwarder_resumes_only_an_unforwarded_payment_with_delta_and_margin_left():
    out_timeout = NOW + 2000
    rec = HopRecord(HASH, Part.FORWARDER, Leg(b"\x01" * 32, b"\x02" * 32, 1010, out_timeout + DELTA + MARGIN),
                    Leg(b"\x03" * 32, b"", 1000, out_timeout), NEXT, b"\x01" * 930)
    assert mh.unforwarded(rec)
    # The next hop gets Δ + margin before the outgoing lock times out: to the second.
    assert mh.still_forwardable(rec, DELTA, MARGIN, out_timeout - DELTA - MARGIN)
    assert not mh.still_forwardable(rec, DELTA, MARGIN, out_timeout - DELTA - MARGIN + 1)
    given_up = mh.give_up(rec)
    assert given_up.outgoing is None and given_up.incoming == rec.incoming and not mh.unforwarded(given_up)
    assert not mh.still_forwardable(given_up, DELTA, MARGIN, NOW)
    # Forwarded (the outgoing lock has its nid), paid, or not signed by both yet: nothing to resume.
    assert not mh.unforwarded(replace(rec, outgoing=replace(rec.outgoing, nid=b"\x04" * 32)))
    assert not mh.unforwarded(replace(rec, preimage=PREIMAGE))
    assert not mh.unforwarded(replace(rec, incoming=replace(rec.incoming, nid=b"")))
    assert not mh.unforwarded(replace(rec, part=Part.PAYER, incoming=None))


def test_records_round_trip_through_the_store(tmp_path):
    payee, _ = invoiced()
    forwarder = HopRecord(b"\x07" * 32, Part.FORWARDER, Leg(b"\x01" * 32, b"\x02" * 32, 2**128 - 1, 2**64 - 1),
                          Leg(b"\x03" * 32, b"", 5, 6), NEXT, b"\x01" * 930, claimed=True)
    gave_up = mh.give_up(replace(forwarder, payment_hash=b"\x08" * 32, claimed=False))
    store = Store(tmp_path / "s.db", PAYEE.address, 1337, "0x" + "ab" * 20)
    store.commit([payee, forwarder, gave_up])
    store.close()
    again = Store(tmp_path / "s.db", PAYEE.address, 1337, "0x" + "ab" * 20)
    assert sorted(again.hops(), key=lambda r: r.payment_hash) == sorted([payee, forwarder, gave_up],
                                                                        key=lambda r: r.payment_hash)
    assert again.hops()[0].channel_id in (payee.payment_hash, forwarder.payment_hash)


# --------------------------------------------------------------------------- failures (§13.6)

KEYS = [bytes([0x11 * (i + 1)]) * 32 for i in range(3)]  # Bob, Carol, Dave: the hops
NODES = [Account.from_key(k).address for k in KEYS]
SESSION = bytes([0x41]) * 32
T = NOW + 7200


def _route() -> tuple[HopRecord, list[HopRecord]]:
    """Alice's record of a payment to Dave through Bob and Carol, and each hop's, as their nodes
    store them once the locks are signed by both (each hop's shared secret from its layer)."""
    payloads = [HopPayload(NODES[1], 1010, T - 1000), HopPayload(NODES[2], 1000, T - 2000),
                HopPayload(None, 1000, T - 2000, bytes(32))]
    packet = onion.build(SESSION, [(onion.compressed_public_key(k), p) for k, p in zip(KEYS, payloads)], HASH)
    payer = HopRecord(HASH, Part.PAYER, outgoing=Leg(b"\x0a" * 32, b"\x01" * 32, 1020, T), onion=packet,
                      session_key=SESSION, route_keys=tuple(onion.compressed_public_key(k) for k in KEYS),
                      route_nodes=tuple(NODES))
    hops, legs = [], [payer.outgoing] + [Leg(bytes([i]) * 32, bytes([i + 1]) * 32, p.amount, p.timeout)
                                         for i, p in zip((0x0b, 0x0c), payloads)]
    for i, key in enumerate(KEYS):
        peeled = onion.peel(packet, key, HASH)
        part = Part.PAYEE if peeled.is_payee else Part.FORWARDER
        hops.append(HopRecord(HASH, part, legs[i], legs[i + 1] if i < 2 else None, peeled.payload.next_hop,
                              shared_secret=peeled.shared_secret))
        packet = peeled.next_packet
    return payer, hops


def _back(payer: HopRecord, hops: list[HopRecord], failing: HopRecord) -> HopRecord:
    """`failing`'s failure passed on by each hop before it (each cancelled downstream with it),
    to the payer, whose lock the first hop cancels with it."""
    blob = failing.failure
    for rec in reversed(hops[:hops.index(next(h for h in hops if h.incoming == failing.incoming))]):
        rec = mh.outgoing_released(rec, Release.CANCELLED, blob)
        assert mh.may_cancel(rec) and len(rec.failure) == onion.FAILURE_SIZE and rec.failure != blob
        blob = rec.failure
    return mh.outgoing_released(payer, Release.CANCELLED, blob)


def test_a_payees_failure_passed_on_by_each_hop_names_the_payee_at_the_payer():
    payer, hops = _route()
    payee = mh.fail(hops[2], FailureCode.UNKNOWN_PAYMENT)
    assert mh.may_cancel(payee) and mh.payment_failed(payer) is None  # the payer's lock is live
    failed = mh.payment_failed(_back(payer, hops, payee))
    assert (failed.hop, failed.index, failed.code) == (NODES[2], 2, FailureCode.UNKNOWN_PAYMENT)
    assert "knows no invoice" in failed.reason and failed.advice


def test_a_forwarder_fails_by_itself_when_its_lock_comes_back_without_a_failure():
    payer, hops = _route()
    reclaimed = mh.outgoing_released(hops[1], Release.RECLAIMED)  # Carol took hers back at T_out + 1
    failed = mh.payment_failed(_back(payer, hops, reclaimed))
    assert (failed.hop, failed.index, failed.code) == (NODES[1], 1, FailureCode.DOWNSTREAM_TIMED_OUT)
    assert f"towards {NODES[2]} timed out at {T - 2000}" in failed.reason
    cancelled = _back(payer, hops, mh.outgoing_released(hops[1], Release.CANCELLED))  # Dave, without a LockFailure
    failed = mh.payment_failed(cancelled)
    assert (failed.index, failed.code) == (1, FailureCode.NEXT_HOP_CANCELLED)
    assert onion.decode_failure(SESSION, payer.route_keys, cancelled.failure).data == bytes.fromhex(NODES[2][2:])


def test_a_garbled_failure_still_ends_the_payment_as_failed():
    payer, hops = _route()
    blob = mh.fail(hops[2], FailureCode.UNKNOWN_PAYMENT).failure
    failed = mh.payment_failed(mh.outgoing_released(payer, Release.CANCELLED, blob[:5] + b"\xff" + blob[6:]))
    assert failed.hop is None and failed.code is None and "unreadable" in failed.reason
    assert "UnreadableFailure" in failed.reason


def test_the_payers_own_outcomes_need_no_failure():
    payer, _ = _route()
    refused = replace(payer, outgoing=None, refusal="peer rejected it: CHANNEL_REFUSED: no")
    assert mh.payment_failed(refused).reason.endswith("never created: peer rejected it: CHANNEL_REFUSED: no")
    timed_out = mh.payment_failed(mh.outgoing_released(payer, Release.RECLAIMED))
    assert (timed_out.hop, timed_out.code) == (NODES[0], None) and "timed out" in timed_out.reason
    assert mh.payment_failed(replace(payer, preimage=PREIMAGE, claimed=True)) is None
    assert [mh.outcome(r) for r in (payer, refused, replace(payer, preimage=PREIMAGE))] == \
        ["pending", "failed", "settled"]


SAMPLE_DATA = {
    FailureCode.NEXT_HOP_REFUSED: mh.refusal_data(8, "this node forwards no payments"),
    FailureCode.NO_CAPACITY: mh.text_data("no open channel can lock 1010"),
    FailureCode.NEXT_HOP_UNREACHABLE: mh.address_data(NODES[2]),
    FailureCode.TOO_LATE: mh.times_data(T, NOW),
    FailureCode.DOWNSTREAM_TIMED_OUT: mh.times_data(T),
    FailureCode.NEXT_HOP_CANCELLED: mh.address_data(NODES[2]),
    FailureCode.UNKNOWN_PAYMENT: b"",
    FailureCode.WRONG_AMOUNT: (999).to_bytes(16, "big"),
    FailureCode.EXPIRY_TOO_SOON: mh.times_data(T, NOW),
    FailureCode.INVOICE_EXPIRED: mh.times_data(NOW),
}


@pytest.mark.parametrize("code", list(FailureCode), ids=lambda c: c.name)
def test_every_failure_code_reads_as_words_with_advice(code):
    payer, hops = _route()
    failed = mh.payment_failed(_back(payer, hops, mh.fail(hops[1], code, SAMPLE_DATA[code])))
    assert (failed.index, failed.code) == (1, code) and failed.advice
    assert not failed.reason.startswith("failure code"), failed.reason
    assert str(failed).startswith(f"the payment failed at hop 1 ({NODES[1]}): ")


def test_an_unknown_code_is_shown_as_it_is():
    payer, hops = _route()
    failed = mh.payment_failed(_back(payer, hops, mh.fail(hops[1], 0x0999, b"\x01\x02")))
    assert failed.reason == "failure code 0x0999 (data 0x0102)"


def test_a_refusals_reason_is_cut_to_fit_in_whole_characters():
    data = mh.refusal_data(8, "é" * 200)
    assert len(data) == 2 + 254 and data[2:].decode() == "é" * 127
    assert mh.text_data("ok") == b"ok"


def test_the_safety_rule_cancels_only_a_lock_this_node_will_never_pay_downstream_for():
    _, (bob, carol, dave) = _route()
    failing = mh.fail(carol, FailureCode.NO_CAPACITY)
    assert not mh.may_cancel(failing)  # its outgoing lock is live: Dave may still claim it
    assert mh.may_cancel(mh.give_up(failing))  # never created, never will be
    creating = replace(failing, outgoing=replace(carol.outgoing, nid=b""))
    assert not mh.may_cancel(creating)  # a creation may be in flight: not given up
    for how in Release:
        assert mh.may_cancel(mh.outgoing_released(carol, how))
    released = mh.outgoing_released(carol, Release.CANCELLED)
    assert not mh.may_cancel(replace(released, preimage=PREIMAGE))  # it claims instead
    assert not mh.may_cancel(replace(released, claimed=True))
    assert not mh.may_cancel(mh.incoming_released(released, Release.RECLAIMED))  # its sender took it
    assert not mh.may_cancel(replace(released, failure=b""))
    assert mh.may_cancel(mh.fail(dave, FailureCode.UNKNOWN_PAYMENT)) and not mh.may_cancel(dave)


def test_a_payee_takes_a_lock_it_fails_and_says_why():
    rec, invoice = invoiced()
    leg = Leg(b"\x0c" * 32, b"\x02" * 32, 1000, NOW + DELTA + MARGIN)
    secret = bytes([7]) * 32
    def peeled(amount=1000, timeout=leg.timeout, payment_secret=invoice.payment_secret):
        return onion.Peeled(HopPayload(None, amount, timeout, payment_secret), secret, None)
    def code(held, p, incoming=leg, now=NOW):
        got = mh.receive_as_payee(held, HASH, p, incoming, DELTA, MARGIN, now)
        assert got.incoming == incoming and got.shared_secret == secret
        return onion.decode_failure(SESSION, [onion.compressed_public_key(KEYS[0])], got.failure).code \
            if got.failure else None
    assert code(rec, peeled()) is None and not mh.may_cancel(mh.receive_as_payee(rec, HASH, peeled(), leg, DELTA,
                                                                                MARGIN, NOW))
    assert mh.receive_as_payee(None, HASH, peeled(), leg, DELTA, MARGIN, NOW).part is Part.PAYEE
    payee = mh.receive_as_payee(None, HASH, peeled(), leg, DELTA, MARGIN, NOW)
    assert onion.failure(secret, FailureCode.UNKNOWN_PAYMENT) == payee.failure
    wrong_secret = mh.receive_as_payee(rec, HASH, peeled(payment_secret=bytes(32)), leg, DELTA, MARGIN, NOW)
    assert wrong_secret.failure == onion.failure(secret, FailureCode.UNKNOWN_PAYMENT)
    low = mh.receive_as_payee(rec, HASH, peeled(amount=999), replace(leg, amount=999), DELTA, MARGIN, NOW)
    assert low.failure == onion.failure(secret, FailureCode.WRONG_AMOUNT, (999).to_bytes(16, "big"))
    soon = mh.receive_as_payee(rec, HASH, peeled(), leg, DELTA, MARGIN, NOW + 1)
    assert soon.failure == onion.failure(secret, FailureCode.EXPIRY_TOO_SOON, mh.times_data(leg.timeout, NOW + 1))
    late_leg = replace(leg, timeout=NOW + 9000)
    expired = mh.receive_as_payee(rec, HASH, peeled(timeout=late_leg.timeout), late_leg, DELTA, MARGIN, NOW + 3600)
    assert expired.failure == onion.failure(secret, FailureCode.INVOICE_EXPIRED, mh.times_data(invoice.expiry))
    with pytest.raises(errors.InvalidNanocontract, match="already"):  # one record holds one attempt
        mh.receive_as_payee(replace(rec, incoming=leg), HASH, peeled(), leg, DELTA, MARGIN, NOW)
    with pytest.raises(errors.InvalidNanocontract, match="already"):
        mh.receive_as_payee(HopRecord(HASH, Part.PAYER), HASH, peeled(), leg, DELTA, MARGIN, NOW)


def test_only_a_failed_attempt_with_nothing_live_makes_room_for_another():
    payer, (bob, carol, dave) = _route()
    assert mh.retryable(None) is None and mh.retryable(payer) is payer
    assert mh.retryable(mh.outgoing_released(payer, Release.CANCELLED)) is None
    done = mh.incoming_released(mh.outgoing_released(carol, Release.CANCELLED), Release.CANCELLED)
    assert mh.finished(done) and mh.retryable(done) is None
    assert not mh.finished(mh.incoming_released(carol, Release.RECLAIMED))  # its outgoing lock is live
    invoice_rec, _ = invoiced()
    paid_once = mh.incoming_released(replace(invoice_rec, incoming=dave.incoming, failure=b"\x01"), Release.CANCELLED)
    again = mh.retryable(paid_once)
    assert again == replace(invoice_rec, shared_secret=b"") and again.preimage == invoice_rec.preimage
    assert mh.retryable(replace(payer, preimage=PREIMAGE, outgoing=None)) is not None  # paid: never again


# --------------------------------------------------------------------------- deadlines (§13.7)


@pytest.mark.parametrize("offset", [-1, 0, 1], ids=["T-1", "T", "T+1"])
def test_each_lock_is_claimed_until_its_timeout_and_reclaimed_after(offset):
    _, (bob, carol, _) = _route()
    knows = replace(bob, preimage=PREIMAGE)  # Bob learnt it: he claims his incoming lock by its timeout
    t_in, t_out = bob.incoming.timeout, bob.outgoing.timeout
    assert mh.duties(knows, t_in + offset, DELTA, MARGIN) == (() if offset > 0 else (HopDuty.CLAIM,))
    assert mh.duties(bob, t_out + offset, DELTA, MARGIN) == ((HopDuty.RECLAIM,) if offset > 0 else ())
    assert mh.duties(replace(bob, preimage=PREIMAGE, claimed=True), t_out + offset, DELTA, MARGIN) == ()
    released = mh.outgoing_released(bob, Release.RECLAIMED)
    assert mh.duties(released, t_out + offset, DELTA, MARGIN) == (HopDuty.FAIL_BACK,)
    last = carol.outgoing.timeout - DELTA - MARGIN  # the last second Dave gets Δ + margin
    unforwarded = replace(carol, outgoing=replace(carol.outgoing, nid=b""))
    assert mh.duties(unforwarded, last + 1 + offset, DELTA, MARGIN) == ((HopDuty.GIVE_UP,) if offset >= 0 else ())


def test_the_next_due_time_is_the_first_second_with_a_duty():
    _, (bob, carol, _) = _route()
    t_in, t_out = bob.incoming.timeout, bob.outgoing.timeout
    assert mh.next_due(bob, NOW, DELTA, MARGIN) == t_out + 1
    assert mh.next_due(replace(bob, preimage=PREIMAGE), NOW, DELTA, MARGIN) == NOW  # claim now
    assert mh.next_due(replace(bob, preimage=PREIMAGE), t_in + 1, DELTA, MARGIN) is None  # too late, and paid
    unforwarded = replace(carol, outgoing=replace(carol.outgoing, nid=b""))
    assert mh.next_due(unforwarded, NOW, DELTA, MARGIN) == carol.outgoing.timeout - DELTA - MARGIN + 1
    assert mh.next_due(mh.incoming_released(mh.outgoing_released(bob, Release.CANCELLED), Release.CANCELLED),
                       NOW, DELTA, MARGIN) is None


def test_a_failing_payments_records_round_trip_and_older_rows_still_read(tmp_path):
    payer, (bob, carol, dave) = _route()
    records = [mh.outgoing_released(payer, Release.CANCELLED, mh.fail(bob, FailureCode.NO_CAPACITY).failure),
               replace(mh.incoming_released(mh.fail(mh.give_up(bob), FailureCode.TOO_LATE, mh.times_data(T, NOW)),
                                            Release.RECLAIMED), payment_hash=b"\x08" * 32),
               replace(carol, payment_hash=b"\x09" * 32), replace(payer, payment_hash=b"\x0a" * 32, outgoing=None,
                                                                 refusal="peer rejected it: CONFLICT: é")]
    store = Store(tmp_path / "s.db", PAYEE.address, 1337, "0x" + "ab" * 20)
    store.commit(records)
    # A row written before failures existed (schema 5, as it was): no failure, route or release.
    store.db.execute("INSERT INTO hops VALUES (?, ?)", (b"\x0b" * 32, json.dumps({
        "payment_hash": "0b" * 32, "part": "forwarder", "next_hop": NEXT, "onion": "", "preimage": "",
        "invoice": "", "claimed": False, "outgoing": None,
        "incoming": {"channel": "01" * 32, "nid": "02" * 32, "amount": "5", "timeout": 6}})))
    store.close()
    again = Store(tmp_path / "s.db", PAYEE.address, 1337, "0x" + "ab" * 20)
    read = {rec.payment_hash: rec for rec in again.hops()}
    assert [read[rec.payment_hash] for rec in records] == records
    assert read[b"\x0b" * 32] == HopRecord(b"\x0b" * 32, Part.FORWARDER, Leg(b"\x01" * 32, b"\x02" * 32, 5, 6),
                                           None, NEXT)
