"""Deploys the contracts and records where they are in a deployment file (JSON)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import cast

from eth_typing import ChecksumAddress

from perun import errors
from perun.chain.backend import Chain, Sender
from perun.chain.multistate import MSContract
from perun.chain.payment import PaymentContract

APP_NAMES = ("HashTimeLock", "TicTacToe", "VirtualChannel")


@dataclass(frozen=True)
class Deployment:
    chain_id: int
    payment_contract: str
    block_number: int
    ms_contract: str = ""  # empty in files written before multistate channels
    apps: dict[str, str] = field(default_factory=dict)  # nanocontract app name -> address

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> Deployment:
        try:
            return cls(**json.loads(path.read_text()))
        except OSError as exc:
            raise errors.DeploymentNotFound(f"cannot read deployment file {path}: {exc.strerror or exc} (`perun "
                                            "deploy` or `perun devnet` writes one)") from exc
        except (ValueError, TypeError) as exc:
            raise errors.DeploymentNotFound(f"cannot read deployment file {path}: {exc}") from exc

    def payment(self, chain: Chain) -> PaymentContract:
        """The deployed PaymentContract, after checking the file is for this chain."""
        return PaymentContract(chain, self._checked(chain, self.payment_contract))

    def multistate(self, chain: Chain) -> MSContract:
        """The deployed MSContract, after checking the file is for this chain."""
        if not self.ms_contract:
            raise errors.DeploymentNotFound("this deployment has no MSContract: deploy again")
        return MSContract(chain, self._checked(chain, self.ms_contract))

    def _checked(self, chain: Chain, address: str) -> str:
        if chain.chain_id != self.chain_id:
            raise errors.DeploymentNotFound(f"deployment is for chain {self.chain_id}, connected to {chain.chain_id}")
        # (as the file says it; web3 refuses it with InvalidAddress unless it is checksummed)
        if not chain.w3.eth.get_code(cast(ChecksumAddress, address)):
            raise errors.DeploymentNotFound(f"no contract at {address} on chain {chain.chain_id}")
        return address


def default_path(chain_id: int) -> Path:
    return Path("deployments") / f"{chain_id}.json"


def deploy(chain: Chain, sender: Sender) -> Deployment:
    """PaymentContract, MSContract and the nanocontract apps."""
    payment = PaymentContract.deploy(chain, sender)
    ms = MSContract.deploy(chain, sender)
    apps = {name: chain.deploy(sender, name) for name in APP_NAMES}
    return Deployment(chain.chain_id, payment.address, chain.block_number(), ms.address, apps)
