"""A watchtower (perun.node.Watchtower with an MSContract) for multistate channels on the embedded
chain: which states it takes, its answers to a stale close and a stale nanocontract registration
on an offline party's behalf, and the SETTLE of an offline end's latest virtual channel state;
each paid from that party's payout."""

from __future__ import annotations

import contextlib

from perun.chain.backend import ETHER
from perun.core.apps import hashtimelock as htlc
from perun.core.apps import virtualchannel as vc
from perun.core.machine import Stage
from perun.core.monitoring import Execution, Monitoring, sign_authorisation
from perun.core.msmachine import MSRecord
from perun.core.multistate import ChannelState, NanocontractState
from perun.node import Watchtower
from perun.wire import messages as m
from tests.node.conftest import DELTA, run
from tests.node.test_multistate_nodes import PREIMAGE, consent, finalized, lock, ms_pair
from tests.node.test_tower import answer, dial
from tests.node.test_virtual_nodes import WINDOW, at, close_ledgers, half, opened, stored, triangle

E = m.ErrorCode
REWARD = ETHER // 100
NANO_REWARD = ETHER // 200


def start_tower(net, port: int = 0) -> Watchtower:
    """The tower (same key and store each time: a restart)."""
    return Watchtower(net.account("tower").key, net.chain, net.contract.address, net.tmp / "tower.db", port=port,
                      name="tower", poll_interval=0.02, response_timeout=5.0, ms_contract=net.ms.contract.address,
                      virtual_app=net.ms.apps.get("VirtualChannel"))


def monitor_channel(net, rec: MSRecord, tower: str, key, reward: int = REWARD,
                    state: ChannelState | None = None, signature: bytes | None = None) -> m.MonitorChannel:
    """Bob's MonitorChannel for his latest channel state (Alice's signature on it)."""
    domain = net.ms.contract.domain
    state = state or rec.state
    signature = signature or rec.channel.sig_alice
    authorisation = sign_authorisation(domain, Monitoring.of(domain, state, tower, reward), key)
    return m.MonitorChannel.of(rec.params, state, signature, reward, authorisation)


def monitor_nano(net, state: NanocontractState, signature: bytes, tower: str, key,
                 reward: int = NANO_REWARD) -> m.MonitorNanocontract:
    domain = net.ms.contract.domain
    authorisation = sign_authorisation(domain, Monitoring.of(domain, state, tower, reward), key)
    return m.MonitorNanocontract.of(state, signature, reward, authorisation)


def events_of(net, cid, *names):
    return [e for e in net.ms.contract.events() if e.name in names and e.args.get("channelId") == cid]


def test_a_tower_takes_only_valid_newer_multistate_items(net):
    """Hand-built messages: what the tower refuses, and why."""
    bob_account = net.account("bob")

    async def scenario():
        async with ms_pair(net) as (alice, bob, cid):
            tower = await start_tower(net).start()
            try:
                pay = await alice.multistate.create(cid, "HashTimeLock", lock(ETHER, net=net))  # channel version 1
                first = bob.multistate.channel(cid).nanocontract(pay)  # version 0: Alice's 1 ETH locked
                await bob.multistate.call(cid, pay, htlc.CLAIM, PREIMAGE)  # version 1: released to Bob
                rec = bob.multistate.channel(cid)
                latest = rec.nanocontract(pay)
                assert latest.state.version == 1 and latest.state.released_bob == ETHER

                conn = await dial(net, tower, bob_account.key)
                # A nanocontract before its channel: the tower holds no state of the channel.
                conn.send(monitor_nano(net, first.state, first.sig_alice, tower.address, bob_account.key))
                refusal = await answer(conn)
                assert (refusal.code, refusal.ref_type, refusal.channel_id) == (
                    E.UNKNOWN_CHANNEL, m.MonitorNanocontract.TYPE, pay)
                conn.send(monitor_channel(net, rec, tower.address, bob_account.key))
                assert await answer(conn) == m.MonitorAck(cid, 1)
                # Version 0 gives Bob nothing: a reward would be more than what he holds in it.
                conn.send(monitor_nano(net, first.state, first.sig_alice, tower.address, bob_account.key))
                assert (await answer(conn)).code == E.AMOUNT_OUT_OF_RANGE
                conn.send(monitor_nano(net, first.state, first.sig_alice, tower.address, bob_account.key, reward=0))
                assert await answer(conn) == m.MonitorNanoAck(cid, pay, False, 0)
                for bad, code in [
                    # Signed by the client itself, not by the other party.
                    (monitor_nano(net, latest.state, latest.sig_bob, tower.address, bob_account.key),
                     E.INVALID_SIGNATURE),
                    # A reward above what the state gives Bob (1 ETH released to him).
                    (monitor_nano(net, latest.state, latest.sig_alice, tower.address, bob_account.key,
                                  reward=ETHER + 1), E.AMOUNT_OUT_OF_RANGE),
                    # A channel state not above the one held.
                    (monitor_channel(net, rec, tower.address, bob_account.key), E.STALE_VERSION),
                    # No VirtualChannel half: no call is taken.
                    (m.MonitorCall(cid, pay, 0, b"", 0, bytes(65)), E.INVALID_NANOCONTRACT),
                ]:
                    conn.send(bad)
                    assert (await answer(conn)).code == code
                conn.send(monitor_nano(net, latest.state, latest.sig_alice, tower.address, bob_account.key))
                assert await answer(conn) == m.MonitorNanoAck(cid, pay, False, 1)
                # A stale nanocontract state is refused, naming the nid and the version held.
                conn.send(monitor_nano(net, first.state, first.sig_alice, tower.address, bob_account.key))
                refusal = await answer(conn)
                assert (refusal.code, refusal.ref_type, refusal.channel_id, refusal.version, refusal.signed) == (
                    E.STALE_VERSION, m.MonitorNanocontract.TYPE, pay, 0, 1)
                [stored] = tower.store.ms_watched()
                assert stored == tower.ms_records[cid]
                assert (stored.version, [(n.nid, n.state.version) for n in stored.nanos]) == (1, [(pay, 1)])
                assert tower.describe(cid)["nanocontracts"] == {"0x" + pay.hex(): 1}
                conn.close()
            finally:
                await tower.stop()

    run(scenario())


@contextlib.asynccontextmanager
async def alice_bob_ms_and_tower(net):
    """Alice; a tower; Bob, whose node hands his states to the tower; an open multistate channel.
    Yields (alice, bob, towers, cid): `towers` a list whose last item is the tower running (a
    test restarts it)."""
    towers = [await start_tower(net).start()]
    bob = None
    try:
        async with net.running("alice", accept_nanocontract=consent) as (alice,):
            tower = towers[0]
            bob = await net.node("bob", accept_nanocontract=consent, towers={tower.address: ("127.0.0.1", tower.port)},
                                 tower_reward=REWARD).start()
            await alice.connect(bob.address, "127.0.0.1", bob.port)
            cid = await alice.multistate.open(bob.address, 10 * ETHER, 5 * ETHER, DELTA)
            await bob.wait_for(cid, lambda r: r.stage is Stage.OPEN)
            yield alice, bob, towers, cid
    finally:
        for node in (bob, *towers):
            if node is not None and not node.runtime.killed:
                await node.stop()  # a failure to stop fails the test


def test_bobs_node_hands_his_channel_and_lock_to_the_tower_which_answers_a_stale_close_for_him(net):
    alice_account, bob_account = net.account("alice"), net.account("bob")

    async def scenario():
        async with alice_bob_ms_and_tower(net) as (alice, bob, towers, cid):
            tower = towers[0]
            pay = await alice.multistate.create(cid, "HashTimeLock", lock(ETHER, net=net))  # channel version 1
            first = alice.multistate.channel(cid).nanocontract(pay)  # version 0: Alice's 1 ETH locked
            await bob.multistate.call(cid, pay, htlc.CLAIM, PREIMAGE)  # version 1: released to Bob
            await bob.towers_hold(cid, 1, {pay: 1})
            shown = bob.describe(cid)
            assert shown["towers"] == {tower.address: 1}
            assert [nc["towers"] for nc in shown["nanocontracts"]] == [{tower.address: 1}]
            [stored] = tower.store.ms_watched()  # one row: the latest channel state and lock state
            assert (stored.client, stored.version, stored.reward) == (bob_account.address, 1, REWARD)
            assert [(n.nid, n.state.version, n.reward) for n in stored.nanos] == [(pay, 1, REWARD)]

            await bob.stop()  # Bob goes offline; only the tower watches for him
            bob_before = net.chain.balance(bob_account.address)
            await alice.watcher.stop()  # her node would answer her own stale close
            tower.kill()  # as SIGKILL: only what it stored survives
            tower = await start_tower(net).start()
            towers.append(tower)
            assert tower.ms_records[cid] == stored

            # Alice cheats: closes with the initial state (no signature needed) and registers the
            # lock unclaimed, with Bob's signature on version 0.
            params = stored.params
            receipt = net.ms.contract.close(alice_account, params, ChannelState.initial(params, cid))
            deadline = receipt.event("CloseRegistered").args["deadline"]
            net.ms.contract.register(alice_account, params, first.state, first.sig_bob)
            held = await tower.wait_for(cid, lambda r: r.registered == 1 and r.chain(pay) is not None
                                        and r.chain(pay).version == 1)
            assert held.standing and held.chain(pay).ours and held.chain(pay).terminated
            assert tower.describe(cid)["stage"] == "closing"
            net.chain.set_next_block_timestamp(deadline + 1)
            net.chain.mine()
            held = await tower.wait_for(cid, lambda r: r.closed)
            assert held.reward_paid == 2 * REWARD
            return cid, pay, tower.address, bob_before

    cid, pay, tower, bob_before = run(scenario())
    registered = [(e.args["version"], e.args["by"]) for e in events_of(net, cid, "CloseRegistered")]
    assert registered == [(0, alice_account.address), (1, tower)]
    nanos = [(e.args["version"], e.args["by"]) for e in events_of(net, cid, "NanocontractRegistered")]
    assert nanos == [(0, alice_account.address), (1, tower)]
    paid = sorted((e.args["nid"], e.args["payer"], e.args["amount"]) for e in events_of(net, cid, "RewardPaid"))
    assert paid == sorted([(bytes(32), bob_account.address, REWARD), (pay, bob_account.address, REWARD)])
    # Bob's latest outcome: his 5 ETH of cash and the claimed 1 ETH, less the two rewards.
    assert finalized(net, cid) == (9 * ETHER, 6 * ETHER - 2 * REWARD)
    assert net.chain.balance(bob_account.address) == bob_before + 6 * ETHER - 2 * REWARD  # Bob sent nothing
    assert net.chain.balance(tower) > 0


def test_a_tower_that_was_down_gets_the_latest_of_each_item_when_it_is_back(net):
    async def scenario():
        async with alice_bob_ms_and_tower(net) as (alice, bob, towers, cid):
            tower = towers[0]
            pay = await alice.multistate.create(cid, "HashTimeLock", lock(ETHER, net=net))  # channel version 1
            await bob.towers_hold(cid, 1, {pay: 0})
            port = tower.port
            tower.kill()
            # The tower's absence slows no update.
            await bob.multistate.call(cid, pay, htlc.CLAIM, PREIMAGE)  # the lock's version 1
            second = await alice.multistate.create(cid, "HashTimeLock", lock(2 * ETHER, net=net))  # version 2
            await bob.multistate.call(cid, second, htlc.CLAIM, PREIMAGE)
            await alice.multistate.absorb(cid, pay)  # channel version 3: the first lock is gone
            assert bob.describe(cid)["towers"] == {tower.address: 1}
            tower = await start_tower(net, port=port).start()
            towers.append(tower)
            await bob.towers_hold(cid, 3, {second: 1})  # Bob's node redialled it and handed over the latest
            held = tower.ms_records[cid]
            assert (held.version, [(n.nid, n.state.version) for n in held.nanos]) == (3, [(second, 1)])
            assert held.state == bob.multistate.channel(cid).state
            shown = bob.describe(cid)
            assert shown["towers"] == {tower.address: 3}
            assert [(nc["nid"], nc["towers"]) for nc in shown["nanocontracts"]] == [
                ("0x" + second.hex(), {tower.address: 1})]
    run(scenario())


def test_bobs_node_hands_the_tower_the_settle_of_his_virtual_channel_which_it_makes_for_him(net):
    bob_account = net.account("bob")

    async def scenario():
        tower = await start_tower(net).start()
        bob_kwargs = {"towers": {tower.address: ("127.0.0.1", tower.port)}, "tower_reward": REWARD}
        try:
            async with triangle(net, bob_kwargs=bob_kwargs) as (alice, ingrid, bob, a, b):
                gid, validity = await opened(net, alice, bob, a, b)  # γ at version 2: Bob holds 3 of 4 ETH
                await bob.pay(gid, ETHER // 2)  # version 3: Bob holds 2.5 ETH
                await bob.towers_hold(gid, 3)
                nu_b = half(bob, gid, 1)
                assert bob.describe(gid)["towers"] == {tower.address: 3}
                held = tower.ms_records[b]
                assert (held.client, held.version) == (bob_account.address, bob.multistate.channel(b).state.version)
                assert [(n.nid, n.state.version) for n in held.nanos] == [(nu_b.nid, 0)]
                assert (held.call(nu_b.nid).version, held.call(nu_b.nid).reward) == (3, REWARD)
                [shown] = bob.describe(b)["nanocontracts"]
                assert (shown["towers"], shown["tower_calls"]) == ({tower.address: 0}, {tower.address: 3})
                old = next(s for s in bob.store.states(gid) if s.state.version == 2)
                # Both ends offline from before the settlement until after: only Ingrid and the tower act.
                await bob.stop()
                await alice.stop()
                # A SETTLE with an older γ state is stale: refused with the nid and the version held.
                z_old = vc.settle_arg(vc.as_virtual(old.state), old.sig_alice, old.sig_bob)
                stale = Execution.of(b, nu_b.nid, vc.SETTLE, z_old, tower.address, REWARD)
                conn = await dial(net, tower, bob_account.key)
                conn.send(m.MonitorCall(b, nu_b.nid, vc.SETTLE, z_old, REWARD,
                                        sign_authorisation(net.ms.contract.domain, stale, bob_account.key)))
                refusal = await answer(conn)
                assert (refusal.code, refusal.channel_id, refusal.version, refusal.signed) == (
                    E.STALE_VERSION, nu_b.nid, 2, 3)
                conn.close()
                # (Ingrid's registration of ν_b lands a block after validity − Δ − 1: its window ends
                # after validity; the tower's SETTLE goes in the first block after that.)
                for t in (validity - DELTA - 1, validity + DELTA, validity + WINDOW, validity + 2 * WINDOW):
                    await at(net, t, ingrid, tower)
                assert stored(net, nu_b) == (3, ETHER + ETHER // 2, 2 * ETHER + ETHER // 2)  # the tower's SETTLE
                assert stored(net, half(ingrid, gid, 0)) == (3, ETHER + ETHER // 2, 2 * ETHER + ETHER // 2)
                executed = [(e["by"], e["fun"]) for e in events_of_nid(net, nu_b.nid, "NanocontractExecuted")]
                assert executed == [(tower.address, vc.SETTLE), (ingrid.address, vc.FINALIZE)]
                paid = await close_ledgers(net, [(ingrid, a), (ingrid, b)])
                return paid, nu_b.nid, tower.address
        finally:
            await tower.stop()

    paid, nid, tower = run(scenario())
    # Bob: his latest γ balance of 2.5 ETH (10 − 1 + 2.5), less the reward; Ingrid is not worse off.
    assert paid[bob_account.address] == 11 * ETHER + ETHER // 2 - REWARD
    assert paid[net.account("ingrid").address] == 20 * ETHER
    assert paid[net.account("alice").address] == 8 * ETHER + ETHER // 2
    [reward] = [e.args for e in net.ms.contract.events() if e.name == "RewardPaid"]
    assert (reward["nid"], reward["tower"], reward["payer"], reward["amount"]) == (
        nid, tower, bob_account.address, REWARD)


def events_of_nid(net, nid, name):
    return [e.args for e in net.ms.contract.events() if e.name == name and e.args["nid"] == nid]
