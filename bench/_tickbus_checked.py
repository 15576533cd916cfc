"""tickbus with CURVE, forwarded by libzmq's proxy (``tickbus+curve``) or by the checked Python
forwarder with per-identity permissions on (``tickbus+perm``).

Same traffic as the ``tickbus`` system; both rows encrypt (CURVE), so the pair isolates what the
permission checks cost: every message's header decoded and its key and publisher id checked in
Python, instead of libzmq's C loop. The keys (made once per server start, in a temporary directory
removed at exit) and the permissions file::

    [identities.pub]  publishers = ["bench-pub@*"]  publish = ["quote.*"]
    [identities.sub]  publishers = ["bench-sub@*"]  subscribe = ["quote.*"]
"""

from __future__ import annotations

import atexit
import math
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from ._procs import ProcessGroup, free_port, wait_line
from ._systems import Config, OnMessage
from ._tickbus import READY_LINE, _Driver, _Pub, _Sub

PERMISSIONS = """
[identities.pub]
publishers = ["bench-pub@*"]
publish = ["quote.*"]

[identities.sub]
publishers = ["bench-sub@*"]
subscribe = ["quote.*"]
"""


async def _connect(config: Config, name: str, key: str) -> Any:
    import actors

    curve = actors.ClientCurve.from_files(config["server_key"], Path(config["keys"], f"{key}.key_secret"))
    return await actors.connect(  # max_lag: as bench._tickbus._connect's
        frontend=config["frontend"],
        backend=config["backend"],
        name=name,
        wait=10.0,
        curve=curve,
        max_lag=None if config.get("overload") else math.inf,
    )


class _CurveDriver(_Driver):
    def __init__(self, name: str, checked: bool) -> None:
        self.name = name
        self._checked = checked

    def start_server(self, procs: ProcessGroup) -> Config:
        import broker

        folder = Path(tempfile.mkdtemp(prefix="tickbus-bench-keys-"))
        atexit.register(shutil.rmtree, folder, True)
        allowed = folder / "allowed"
        allowed.mkdir()
        for name in ("broker", "pub", "sub"):
            public, _ = broker.generate_keys(name, folder)
            if name != "broker":
                shutil.copy(public, allowed)
        frontend = f"tcp://127.0.0.1:{free_port()}"
        backend = f"tcp://127.0.0.1:{free_port()}"
        argv = [sys.executable, "-m", "tickbus", "broker", "--frontend", frontend, "--backend", backend]
        argv += ["--curve-secret", str(folder / "broker.key_secret"), "--allow-dir", str(allowed)]
        if self._checked:
            (folder / "permissions.toml").write_text(PERMISSIONS)
            argv += ["--permissions", str(folder / "permissions.toml")]
        wait_line(procs.server(argv), READY_LINE, 15.0)
        return {
            "frontend": frontend,
            "backend": backend,
            "keys": str(folder),
            "server_key": str(folder / "broker.key"),
        }

    async def publisher(self, config: Config) -> _Pub:
        return _Pub(await _connect(config, "bench-pub", "pub"))

    async def subscriber(self, config: Config, on_message: OnMessage) -> _Sub:
        import actors

        hub = await _connect(config, "bench-sub", "sub")

        def callback(key: Any, payload: Any) -> None:
            on_message(payload["s"], payload["t"])

        actors.Subscriber(hub, "bench").add_sync_listener(actors.Key("quote", "*"), callback)
        return _Sub(hub)


CURVE_DRIVER = _CurveDriver("tickbus+curve", checked=False)
CHECKED_DRIVER = _CurveDriver("tickbus+perm", checked=True)
