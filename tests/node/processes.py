"""`perun node` processes for tests (and `perun watchtower` ones: command="watchtower"): started
on free ports, driven through their control socket, killed or stopped, restarted on the same
store, and always cleaned up (the `Processes` context stops every one)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from perun import control, keystore

PASSWORD = "test password"


@dataclass
class NodeProcess:
    name: str
    data: Path
    address: str
    proc: subprocess.Popen
    port: int
    account: LocalAccount | None = None
    args: tuple[str, ...] = ()  # the options it was started with besides the common ones
    command: str = "node"  # or "watchtower"

    def call(self, method: str, **params: Any) -> Any:
        return control.call(self.data, method, params)

    def wait_exit(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class Processes:
    """Nodes on the chain at `rpc`: with payment channels only on the PaymentContract at
    `contract`, or, given a `deployment` file, with MSContract and the apps too."""

    rpc: str
    contract: str | None
    tmp: Path
    deployment: Path | None = None
    running: list[NodeProcess] = field(default_factory=list)

    def start(self, name: str, account: LocalAccount, *, crash_at: str | None = None, port: int = 0,
              response_timeout: float = 5.0, args: tuple[str, ...] = (), command: str = "node") -> NodeProcess:
        """Starts `name`'s node (on `port`, or a free one); the same name reuses its store.
        `args` are further `perun node` options (--hub, say); `command` "watchtower" starts a tower."""
        return self.ready(self.launch(name, account, crash_at=crash_at, port=port, response_timeout=response_timeout,
                                      args=args, command=command))

    def start_all(self, *nodes: tuple[str, LocalAccount, dict[str, Any]]) -> list[NodeProcess]:
        """Starts several nodes at once (their start-ups overlap): (name, account, start's options)."""
        return [self.ready(launched) for launched in [self.launch(name, account, **options)
                                                       for name, account, options in nodes]]

    def restart(self, node: NodeProcess, crash_at: str | None = None) -> NodeProcess:
        """Starts `node`, which has exited, again: the same key, store, port and options, and
        this time `crash_at` (none by default)."""
        assert not node.alive, f"{node.name} is still running"
        assert node.account is not None
        return self.start(node.name, node.account, crash_at=crash_at, port=node.port, args=node.args,
                          command=node.command)

    def stop(self, node: NodeProcess) -> int:
        """Stops `node` as an operator does (SIGTERM); its exit code."""
        node.proc.send_signal(signal.SIGTERM)
        return node.wait_exit(20)

    def launch(self, name: str, account: LocalAccount, *, crash_at: str | None = None, port: int = 0,
               response_timeout: float = 5.0, args: tuple[str, ...] = (), command: str = "node") -> NodeProcess:
        """Starts `name`'s node without waiting until it is ready (`ready`)."""
        data = self.tmp / name
        key_file = self.tmp / f"{name}.json"
        if not key_file.exists():
            keystore.import_key(key_file, account.key.hex(), PASSWORD, kdf="pbkdf2", iterations=2)
        env = {**os.environ, "PERUN_PASSWORD": PASSWORD}
        env.pop("PERUN_CRASH_AT", None)
        if crash_at:
            env["PERUN_CRASH_AT"] = crash_at
        where = ["--deployment", str(self.deployment)] if self.deployment else ["--contract", str(self.contract)]
        policy = ["--max-own-deposit", "1000eth"] if command == "node" else []  # the tests script both parties
        cmd = [sys.executable, "-m", "perun.cli", command, "--data", str(data), "--keystore", str(key_file),
               "--rpc", self.rpc, *where, "--listen", f"127.0.0.1:{port}", "--poll", "0.05",
               "--response-timeout", str(response_timeout), *policy, *args]
        log = open(self.tmp / f"{name}.log", "a")
        if crash_at:
            log.write(f"---- started to die at {crash_at}\n")
            log.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        log.close()  # the child has its own descriptor
        node = NodeProcess(name, data, account.address, proc, port, account, tuple(args), command)
        self.running.append(node)
        return node

    def ready(self, node: NodeProcess) -> NodeProcess:
        """Waits for `node`'s ready line; its port."""
        line = node.proc.stdout.readline()
        if not line and node.port and node.proc.wait(10) == -signal.SIGKILL:
            # Killed at its armed crash point while it started: on a restart the point may come
            # before the ready line (a proposal sent again as it reconnects). `died` sees it.
            return node
        if not line.startswith(f"{node.command} "):
            node.proc.kill()
            raise RuntimeError(f"{node.name} did not start: {line!r}; see {self.tmp / f'{node.name}.log'}")
        node.port = int(line.split(" listening on ")[1].split(",")[0].rsplit(":", 1)[1])
        return node

    def stop_all(self) -> None:
        """Stops every node, then prints each log's tail (pytest shows it if the test failed)."""
        for node in self.running:
            if node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        for node in self.running:
            try:
                node.proc.wait(10)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait()
            if node.proc.stdout:
                node.proc.stdout.close()
        self.running.clear()
        for log in sorted(self.tmp.glob("*.log")):
            print(f"---- {log.name} (last 40 lines)")
            print("".join(log.read_text().splitlines(keepends=True)[-40:]), end="")
