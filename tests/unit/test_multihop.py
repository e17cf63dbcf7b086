"""A node's part in multi-hop payments (perun.core.multihop): the payee's and an intermediary's
checks of a lock that came with an onion, and the records' round trip through the store."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from eth_account import Account

from perun import errors
from perun.core import multihop as mh
from perun.core.multihop import HopRecord, Leg, Part
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
