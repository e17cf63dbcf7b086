"""Gas of every PaymentContract step and of two ETH lifecycles, on the embedded chain.

`make bench` (python -m benchmarks.gas) prints the table and writes benchmarks/gas.json, the
snapshot that tests/contracts/test_gas.py holds the contract to (within 2 %). Keys are fixed,
so signatures, calldata and so the figures are exactly reproducible.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from eth_account import Account
from eth_utils import keccak

from perun.chain.backend import ETHER, EmbeddedChain
from perun.chain.payment import PaymentContract
from perun.core.channel import Params
from perun.core.eip712 import sign_state

SNAPSHOT = Path(__file__).with_name("gas.json")

# Published figures, for the README's comparison (gas per call).
RAIDEN = {"openChannel": 111_094, "setTotalDeposit (each)": 56_000, "closeChannel": 118_501,
          "updateNonClosingBalanceProof": 90_516, "settleChannel": 108_569, "cooperativeSettle": 112_270}
NITRO = {"deposits": 46_496 + 29_408, "cooperative exit": 111_514, "challenge + payout": 113_146 + 82_026}


def measure() -> dict[str, int]:
    chain = EmbeddedChain()
    contract = PaymentContract.deploy(chain, chain.dev_accounts[0])
    alice, bob = (Account.from_key(keccak(text=f"perun benchmark {name}")) for name in ("alice", "bob"))
    for party in (alice, bob):
        chain.fund(party.address, 100 * ETHER)
    nonce = iter(range(1, 100))

    def opened() -> tuple[Params, object, dict[str, int]]:
        params = Params(alice.address, bob.address, 6 * ETHER, 4 * ETHER, 3600, next(nonce))
        gas = {"create": contract.create(alice, params).gas_used, "confirm": contract.confirm(bob, params).gas_used}
        return params, params.initial_state(chain.chain_id, contract.address), gas

    sign = lambda state, who: sign_state(contract.domain, state, who.key)  # noqa: E731

    params, s0, coop = opened()
    final = s0.pay(ETHER, from_alice=True).final()
    coop["cooperativeClose"] = contract.cooperative_close(alice, params, final, sign(final, alice), sign(final, bob)).gas_used

    params, s0, disputed = opened()
    s1 = s0.pay(ETHER, from_alice=True)
    s2 = s1.pay(ETHER, from_alice=True)
    disputed["close"] = contract.close(alice, params, s1, sign(s1, bob)).gas_used
    disputed["close (higher version)"] = contract.close(bob, params, s2, sign(s2, alice)).gas_used
    chain.advance_time(3601)
    disputed["finalize"] = contract.finalize(bob, params).gas_used

    params = Params(alice.address, bob.address, 6 * ETHER, 4 * ETHER, 3600, next(nonce))
    contract.create(alice, params)
    chain.advance_time(3601)
    refund = contract.refund(alice, params).gas_used

    return {
        "create": coop["create"],
        "confirm": coop["confirm"],
        "close": disputed["close"],
        "close (higher version)": disputed["close (higher version)"],
        "finalize": disputed["finalize"],
        "cooperativeClose": coop["cooperativeClose"],
        "refund": refund,
        "lifecycle: cooperative": sum(coop.values()),
        "lifecycle: disputed": sum(disputed.values()),
    }


def table(figures: dict[str, int]) -> str:
    lines = ["| step (ETH channel) | gas |", "|---|---:|"]
    lines += [f"| {name} | {gas:,} |" for name, gas in figures.items()]
    return "\n".join(lines)


def main() -> None:
    figures = measure()
    SNAPSHOT.write_text(json.dumps(figures, indent=2) + "\n")
    print(table(figures))
    print(f"\nwritten to {SNAPSHOT}", file=sys.stderr)


if __name__ == "__main__":
    main()
