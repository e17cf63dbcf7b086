"""Deploys the contracts and records where they are in a deployment file (JSON)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from perun import errors
from perun.chain.backend import Chain, Sender
from perun.chain.payment import PaymentContract


@dataclass(frozen=True)
class Deployment:
    chain_id: int
    payment_contract: str
    block_number: int

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> Deployment:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise errors.DeploymentNotFound(f"cannot read deployment file {path}: {exc}") from exc

    def payment(self, chain: Chain) -> PaymentContract:
        """The deployed PaymentContract, after checking the file is for this chain."""
        if chain.chain_id != self.chain_id:
            raise errors.DeploymentNotFound(f"deployment is for chain {self.chain_id}, connected to {chain.chain_id}")
        if not chain.w3.eth.get_code(self.payment_contract):
            raise errors.DeploymentNotFound(f"no contract at {self.payment_contract} on chain {chain.chain_id}")
        return PaymentContract(chain, self.payment_contract)


def default_path(chain_id: int) -> Path:
    return Path("deployments") / f"{chain_id}.json"


def deploy(chain: Chain, sender: Sender) -> Deployment:
    contract = PaymentContract.deploy(chain, sender)
    return Deployment(chain.chain_id, contract.address, chain.block_number())
