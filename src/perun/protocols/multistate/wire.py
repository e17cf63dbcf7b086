"""Multistate proposals on the wire (docs/protocol.md §9, §10.2): a proposal as the message that
carries it, the message as the proposal it stands for (rebuilt from the receiver's own latest
states: the wire carries only what the receiver cannot compute), and the acknowledgement.
"""

from __future__ import annotations

from dataclasses import replace

from perun import errors
from perun.core import msmachine as ms
from perun.core.apps import AppState
from perun.core.machine import Role
from perun.core.msmachine import AppOf, Kind, MSProposal, MSRecord, MSState, Signed
from perun.core.multistate import ChannelState, NanocontractState, nanocontract_id
from perun.wire import messages as m

CHANNEL_SLOT = bytes(32)  # the slot of the channel state on the wire (msmachine's b"")
PROPOSALS = (m.NanocontractCreate, m.NanocontractCall, m.NanocontractAbsorb, m.MultistateClose)


def message(p: MSProposal) -> m.Message:
    if p.kind is Kind.CREATE:
        nc, ch = p.nanocontract, p.channel
        assert nc is not None and ch is not None
        return m.NanocontractCreate(ch.channel_id, ch.version, p.prev, p.expires, nc.app, nc.blocked_alice,
                                    nc.blocked_bob, p.fee, nc.storage, p.sig_channel, p.sig_nanocontract)
    if p.kind is Kind.CALL:
        nc = p.nanocontract
        assert nc is not None
        return m.NanocontractCall(nc.channel_id, p.nid, nc.version, p.prev, p.expires, p.fun, p.z, p.sig_nanocontract)
    if p.kind is Kind.CLOSE:
        assert p.final is not None
        return m.MultistateClose(p.final.channel_id, p.final.version, p.prev, p.expires, p.sig_channel)
    assert p.channel is not None
    return m.NanocontractAbsorb(p.channel.channel_id, p.nid, p.channel.version, p.prev, p.expires, p.sig_channel)


def ack(p: MSProposal) -> m.NanocontractAck:
    cid = (p.channel or p.nanocontract or p.final).channel_id  # type: ignore[union-attr]
    slot = p.nid if p.kind is Kind.CALL else CHANNEL_SLOT
    return m.NanocontractAck(cid, slot, p.version, p.sig_channel, p.sig_nanocontract)


def refers_to(msg: m.Message) -> bytes:
    """What a refusal of `msg` names: the slot of a nanocontract call, else the channel."""
    if isinstance(msg, m.NanocontractCall):
        return msg.nid
    return getattr(msg, "channel_id", bytes(32))


def proposal_of(rec: MSRecord, msg: m.Message, app_of: AppOf, now: int) -> tuple[MSProposal, MSProposal | None]:
    """The proposal `msg` stands for, and, if this party holds it as its latest state already
    (countersigned before, the acknowledgement lost), its acknowledgement."""
    if isinstance(msg, m.MultistateClose):
        if rec.final is not None and rec.final.state.version == msg.version:
            again = MSProposal(Kind.CLOSE, b"", final=rec.final.state, sig_channel=msg.sig_final)
            return again, _adopted(rec, again)
        _check_prev(msg.prev, rec.state.version, "channel")
        final = ms.final_state(rec, msg.version)
        return MSProposal(Kind.CLOSE, b"", final=final, sig_channel=msg.sig_final, expires=msg.expires), None
    if isinstance(msg, m.NanocontractCall):
        held = rec.nanocontract(msg.nid).state
        if msg.version == held.version:
            again = MSProposal(Kind.CALL, msg.nid, nanocontract=held, fun=msg.fun, z=msg.z,
                               sig_nanocontract=msg.sig_nanocontract)
            return again, _adopted(rec, again)
        _check_prev(msg.prev, held.version, "nanocontract")
        nc = ms.called(rec, msg.nid, msg.fun, msg.z, msg.version, app_of, now)
        return MSProposal(Kind.CALL, msg.nid, nanocontract=nc, fun=msg.fun, z=msg.z,
                          sig_nanocontract=msg.sig_nanocontract, expires=msg.expires), None
    if isinstance(msg, m.NanocontractCreate):
        nid = nanocontract_id(rec.channel_id, msg.version)
        nc = NanocontractState.create(rec.channel_id, nid, msg.app,
                                      AppState(msg.blocked_alice, msg.blocked_bob, 0, 0, msg.data))
        if msg.version == rec.state.version:
            again = MSProposal(Kind.CREATE, nid, channel=rec.state, nanocontract=nc,
                               sig_channel=msg.sig_channel, sig_nanocontract=msg.sig_nanocontract, fee=msg.fee)
            return again, _adopted(rec, again)
        _check_prev(msg.prev, rec.state.version, "channel")
        paid = rec.state.fund(nc).transfer(msg.fee, from_alice=rec.role is Role.BOB)
        return MSProposal(Kind.CREATE, nid, channel=replace(paid, version=msg.version), nanocontract=nc,
                          sig_channel=msg.sig_channel, sig_nanocontract=msg.sig_nanocontract, fee=msg.fee,
                          expires=msg.expires), None
    assert isinstance(msg, m.NanocontractAbsorb)
    if msg.version == rec.state.version:
        again = MSProposal(Kind.ABSORB, msg.nid, channel=rec.state, sig_channel=msg.sig_channel)
        return again, _adopted(rec, again)
    _check_prev(msg.prev, rec.state.version, "channel")
    channel = replace(rec.state.absorb(rec.nanocontract(msg.nid).state), version=msg.version)
    return MSProposal(Kind.ABSORB, msg.nid, channel=channel, sig_channel=msg.sig_channel, expires=msg.expires), None


def _adopted(rec: MSRecord, proposal: MSProposal) -> MSProposal:
    done = ms.adopted(rec, proposal)
    if done is None:
        raise errors.StaleVersion(f"this party holds another state at that version of 0x{proposal.nid.hex()}")
    return done


def _check_prev(prev: int, held: int, what: str) -> None:
    if prev != held:
        raise errors.UpdateConflict(f"the proposal builds on {what} version {prev}; this party holds {held}")


def signed_states(rec: MSRecord, proposal: MSProposal, signatures: MSProposal) -> list[Signed[MSState]]:
    """The states of `proposal` with what this party holds of their signatures after `rec`."""
    out: list[Signed[MSState]] = []
    for state in (proposal.channel, proposal.nanocontract, proposal.final):
        if state is None:
            continue
        if state == rec.state:
            out.append(rec.channel)
        elif rec.final is not None and state == rec.final.state:
            out.append(rec.final)
        else:
            held = next((s for s in rec.nanocontracts if s.state == state), None)
            own = signatures.sig_channel if isinstance(state, ChannelState) else signatures.sig_nanocontract
            out.append(held or Signed(state, *((own, b"") if rec.role is Role.ALICE else (b"", own))))
    return out


def by_peer(rec: MSRecord, signed: Signed[MSState]) -> bytes:
    """The peer's signature on `signed`: what the contract takes from this party."""
    return signed.by(Role.BOB if rec.role is Role.ALICE else Role.ALICE)
