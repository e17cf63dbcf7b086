"""`perun node` processes for tests: started on free ports, driven through their control socket,
killed or stopped, and always cleaned up (the `Processes` context stops every one)."""

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

    def call(self, method: str, **params: Any) -> Any:
        return control.call(self.data, method, params)

    def wait_exit(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout)


@dataclass
class Processes:
    rpc: str
    contract: str
    tmp: Path
    running: list[NodeProcess] = field(default_factory=list)

    def start(self, name: str, account: LocalAccount, *, crash_at: str | None = None, port: int = 0,
              response_timeout: float = 5.0) -> NodeProcess:
        """Starts `name`'s node (on `port`, or a free one); the same name reuses its store."""
        data = self.tmp / name
        key_file = self.tmp / f"{name}.json"
        if not key_file.exists():
            keystore.import_key(key_file, account.key.hex(), PASSWORD, kdf="pbkdf2", iterations=2)
        env = {**os.environ, "PERUN_PASSWORD": PASSWORD}
        env.pop("PERUN_CRASH_AT", None)
        if crash_at:
            env["PERUN_CRASH_AT"] = crash_at
        cmd = [sys.executable, "-m", "perun.cli", "node", "--data", str(data), "--keystore", str(key_file),
               "--rpc", self.rpc, "--contract", self.contract, "--listen", f"127.0.0.1:{port}", "--poll", "0.05",
               "--response-timeout", str(response_timeout)]
        log = open(self.tmp / f"{name}.log", "a")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        line = proc.stdout.readline()
        if not line.startswith("node "):
            proc.kill()
            raise RuntimeError(f"{name} did not start: {line!r}; see {self.tmp / f'{name}.log'}")
        port = int(line.split(" listening on ")[1].split(",")[0].rsplit(":", 1)[1])
        node = NodeProcess(name, data, account.address, proc, port)
        self.running.append(node)
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
