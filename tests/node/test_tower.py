"""A watchtower (perun.node.Watchtower) on the embedded chain: which Monitors it takes, and its
refutation of a stale close on an offline party's behalf, paid from that party's payout."""

from __future__ import annotations

import asyncio
import contextlib

from perun.chain.backend import ETHER
from perun.core.machine import ChannelRecord, Stage
from perun.core.monitoring import Monitoring, sign_authorisation
from perun.node import Watchtower
from perun.wire import messages as m
from perun.wire.transport import Connection, handshake
from tests.node.conftest import DELTA, run

E = m.ErrorCode
REWARD = ETHER // 100


def start_tower(net, port: int = 0) -> Watchtower:
    """The tower (same key and store each time: a restart)."""
    return Watchtower(net.account("tower").key, net.chain, net.contract.address, net.tmp / "tower.db", port=port,
                      name="tower", poll_interval=0.02, response_timeout=5.0)


async def dial(net, tower: Watchtower, key) -> Connection:
    reader, writer = await asyncio.open_connection("127.0.0.1", tower.port)
    return await handshake(reader, writer, key, net.chain.chain_id, net.contract.address, expected_peer=tower.address)


def monitor(net, rec: ChannelRecord, tower: str, key, reward: int = REWARD) -> m.Monitor:
    """The Monitor of `rec`'s party for its latest state (the peer's signature on it)."""
    domain = net.contract.domain
    authorisation = sign_authorisation(domain, Monitoring.of(domain, rec.current, tower, reward), key)
    return m.Monitor.of(rec.params, rec.current, rec.peer_signature, reward, authorisation)


async def answer(conn: Connection) -> m.Message:
    await conn.drain()
    return await asyncio.wait_for(conn.read(), 20)


def events_of(net, cid, *names):
    return [e for e in net.contract.events() if e.name in names and e.args.get("channelId") == cid]


def test_a_tower_takes_only_a_newer_valid_state_and_refutes_a_stale_close_with_it(net):
    bob_key = net.account("bob").key

    async def scenario():
        async with net.pair() as (alice, bob, cid):
            tower = await start_tower(net).start()
            try:
                conn = await dial(net, tower, bob_key)
                await alice.pay(cid, ETHER)  # version 1
                stale = alice.channel(cid)
                await alice.pay(cid, ETHER)  # version 2
                first = monitor(net, bob.channel(cid), tower.address, bob_key)
                conn.send(first)
                assert await answer(conn) == m.MonitorAck(cid, 2)
                # The same version again, an older one: stale; the Error says which version it holds.
                conn.send(first)
                refusal = await answer(conn)
                assert (refusal.code, refusal.ref_type, refusal.channel_id, refusal.signed) == (
                    E.STALE_VERSION, m.Monitor.TYPE, cid, 2)
                await alice.pay(cid, ETHER)  # version 3
                latest = monitor(net, bob.channel(cid), tower.address, bob_key)
                for bad, code in [
                    (monitor(net, bob.channel(cid), tower.address, net.account("alice").key), E.INVALID_SIGNATURE),
                    (monitor(net, bob.channel(cid), net.account("alice").address, bob_key), E.INVALID_SIGNATURE),
                    (monitor(net, bob.channel(cid), tower.address, bob_key, reward=8 * ETHER + 1),
                     E.AMOUNT_OUT_OF_RANGE),
                    (m.Monitor(**{**latest.__dict__, "balance_bob": latest.balance_bob + 1}), E.BALANCES_NOT_CONSERVED),
                    (m.Monitor(**{**latest.__dict__, "nonce": latest.nonce + 1}), E.UNKNOWN_CHANNEL),
                ]:
                    conn.send(bad)
                    assert (await answer(conn)).code == code
                assert tower.records[cid].version == 2  # nothing refused changed what it holds
                conn.send(latest)
                assert await answer(conn) == m.MonitorAck(cid, 3)
                assert tower.store.watched() == [tower.records[cid]]  # one row, the latest state
                assert tower.describe(cid)["version"] == 3 and tower.describe(cid)["stage"] == "watching"
                conn.close()
                await bob.stop()  # Bob goes offline; only the tower watches for him
                await alice.watcher.stop()  # her node would answer her own stale close

                # Alice cheats: registers version 1 behind her node's back.
                receipt = net.contract.close(net.account("alice"), stale.params, stale.current, stale.peer_signature)
                deadline = receipt.event("CloseRegistered").args["deadline"]
                rec = await tower.wait_for(cid, lambda r: r.registered == 3)
                assert rec.refuted == 3 and rec.deadline == deadline
                net.chain.set_next_block_timestamp(deadline + 1)
                net.chain.mine()
                rec = await tower.wait_for(cid, lambda r: r.closed)
                assert rec.reward_paid == REWARD
                assert tower.describe(cid)["stage"] == "closed"
                return cid, tower.address
            finally:
                await tower.stop()

    cid, tower = run(scenario())
    registered = [(e.args["version"], e.args["by"]) for e in events_of(net, cid, "CloseRegistered")]
    assert registered == [(1, net.account("alice").address), (3, tower)]
    [recorded] = events_of(net, cid, "RewardRecorded")
    assert (recorded.args["tower"], recorded.args["payer"], recorded.args["amount"]) == (
        tower, net.account("bob").address, REWARD)
    [paid] = events_of(net, cid, "RewardPaid")
    assert (paid.args["tower"], paid.args["amount"]) == (tower, REWARD)
    [finalized] = events_of(net, cid, "Finalized")
    assert (finalized.args["balanceAlice"], finalized.args["balanceBob"]) == (7 * ETHER, 8 * ETHER - REWARD)


@contextlib.asynccontextmanager
async def alice_bob_and_tower(net, **tower_kwargs):
    """Alice; a tower; Bob, who hands his states to the tower; an open channel. Yields (alice,
    bob, towers, cid): `towers` a list whose last item is the tower running (a test restarts it)."""
    towers = [await start_tower(net, **tower_kwargs).start()]
    bob = None
    try:
        async with net.running("alice") as (alice,):
            tower = towers[0]
            bob = await net.node("bob", towers={tower.address: ("127.0.0.1", tower.port)},
                                 tower_reward=REWARD).start()
            await alice.connect(bob.address, "127.0.0.1", bob.port)
            cid = await alice.open(bob.address, 10 * ETHER, 5 * ETHER, DELTA)
            await bob.wait_for(cid, lambda r: r.stage is Stage.OPEN)
            yield alice, bob, towers, cid
    finally:
        for node in (bob, *towers):
            if node is not None and not node.runtime.killed:
                await node.stop()  # a failure to stop fails the test


def test_bobs_node_hands_his_states_to_the_tower_which_refutes_for_him_after_a_restart(net):
    alice_account, bob_account = net.account("alice"), net.account("bob")

    async def scenario():
        async with alice_bob_and_tower(net) as (alice, bob, towers, cid):
            for _ in range(2):
                await alice.pay(cid, ETHER)
            stale = alice.channel(cid)  # version 2
            for _ in range(3):
                await alice.pay(cid, ETHER)  # versions 3 to 5: Bob holds 10 ETH
            await bob.towers_hold(cid, 5)
            tower = towers[0]
            assert bob.describe(cid)["towers"] == {tower.address: 5}
            assert [(r.channel_id, r.version, r.client, r.reward) for r in tower.store.watched()] == [
                (cid, 5, bob_account.address, REWARD)]  # one row per channel, the latest state
            # A stale Monitor (Bob's latest again, by hand) is refused, naming the version held.
            conn = await dial(net, tower, bob_account.key)
            conn.send(monitor(net, bob.channel(cid), tower.address, bob_account.key))
            refusal = await answer(conn)
            assert (refusal.code, refusal.channel_id, refusal.signed) == (E.STALE_VERSION, cid, 5)
            conn.close()

            await bob.stop()  # Bob goes offline
            await alice.watcher.stop()  # her node would answer her own stale close
            tower.kill()  # as SIGKILL: only what it stored survives
            tower = await start_tower(net).start()
            towers.append(tower)
            assert tower.records[cid].version == 5

            bob_before = net.chain.balance(bob_account.address)
            receipt = net.contract.close(alice_account, stale.params, stale.current, stale.peer_signature)
            deadline = receipt.event("CloseRegistered").args["deadline"]
            rec = await tower.wait_for(cid, lambda r: r.registered == 5)
            assert rec.standing
            net.chain.set_next_block_timestamp(deadline + 1)
            net.chain.mine()
            rec = await tower.wait_for(cid, lambda r: r.closed)
            assert rec.reward_paid == REWARD
            return cid, tower.address, bob_before

    cid, tower, bob_before = run(scenario())
    registered = [(e.args["version"], e.args["by"]) for e in events_of(net, cid, "CloseRegistered")]
    assert registered == [(2, alice_account.address), (5, tower)]
    [paid] = events_of(net, cid, "RewardPaid")
    assert (paid.args["tower"], paid.args["payer"], paid.args["amount"]) == (tower, bob_account.address, REWARD)
    [finalized] = events_of(net, cid, "Finalized")
    assert (finalized.args["balanceAlice"], finalized.args["balanceBob"]) == (5 * ETHER, 10 * ETHER - REWARD)
    assert net.chain.balance(bob_account.address) == bob_before + 10 * ETHER - REWARD  # Bob sent nothing
    assert net.chain.balance(tower) > 0


def test_a_tower_that_was_down_gets_the_latest_state_when_it_is_back(net):
    async def scenario():
        async with alice_bob_and_tower(net) as (alice, bob, towers, cid):
            tower = towers[0]
            await alice.pay(cid, ETHER)
            await bob.towers_hold(cid, 1)
            port = tower.port
            tower.kill()
            for _ in range(3):  # the tower's absence slows no payment
                await alice.pay(cid, ETHER)
            assert bob.describe(cid)["towers"] == {tower.address: 1}
            tower = await start_tower(net, port=port).start()
            towers.append(tower)
            await bob.towers_hold(cid, 4)  # Bob's node redialled it and handed over version 4 only
            assert tower.records[cid].version == 4
            assert bob.describe(cid)["towers"] == {tower.address: 4}
    run(scenario())
