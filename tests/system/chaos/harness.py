"""Processes and bookkeeping shared by the chaos tests and ``bench/soak.py``.

- :class:`LoadGen`: a real paced publisher process (:mod:`tests.system.chaos.loadgen`) and its own log;
- :func:`start_counter`: a real ``tickbus run`` process running :class:`tests.system.chaos.chaos_actors.Counter`;
- :class:`Observer`: an in-process hub collecting the counters' reports and slow-consumer events;
- :func:`counting`: counters and an observer together, torn down after;
- :func:`account`, :func:`unaccounted`, :func:`wait_accounted` and :func:`in_window`: the accounting
  the tests assert.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import actors
from actors import TickbusError
from actors.testing import ActorProcess, BrokerProcess, eventually, wait_for_line

COUNTER = "tests.system.chaos.chaos_actors:Counter"
REPORTS = ("chaos", "count", "*")
SLOW_EVENTS = ("$bus", "slow", "*")


@dataclass
class LoadGen:
    """A paced publisher process; ``report`` is its own log of what it published (after :meth:`halt`)."""

    proc: subprocess.Popen[str]
    publisher_id: str
    log_path: Path
    tmpdir: tempfile.TemporaryDirectory[str]
    report: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def launch(
        cls, broker: BrokerProcess, *, name: str = "feed", rate: int = 5_000, extra: Sequence[str] = ()
    ) -> LoadGen:
        """Start one and wait until it saw a subscriber and started publishing."""
        tmp = tempfile.TemporaryDirectory(prefix="tickbus-loadgen-")
        log_path = Path(tmp.name) / "loadgen.log"
        args = [sys.executable, "-m", "tests.system.chaos.loadgen", broker.frontend, broker.backend]
        args += ["--name", name, "--rate", str(rate), *extra]
        with open(log_path, "w") as log:
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            line = wait_for_line(proc, "loadgen ready", 30)
        except BaseException:
            proc.kill()
            proc.wait()
            print(log_path.read_text(errors="replace")[-2000:])
            tmp.cleanup()
            raise
        return cls(proc, line.split()[-1], log_path, tmp)

    def halt(self, timeout: float = 10) -> dict[str, Any]:
        """Stop publishing (it keeps heartbeating) and return its report."""
        self.proc.send_signal(signal.SIGUSR1)
        try:
            line = wait_for_line(self.proc, "loadgen stopped", timeout)
        except TickbusError as exc:
            self.proc.send_signal(signal.SIGUSR2)  # its stacks, into its log
            time.sleep(0.5)
            raise TickbusError(
                f"{exc}; its log:\n{self.log_path.read_text(errors='replace')[-3000:]}"
            ) from None
        self.report = json.loads(line.removeprefix("loadgen stopped "))
        return self.report

    @property
    def published(self) -> int:
        """Messages it published (each took a sequence number), from its own report."""
        return int(self.report["published"])

    def close(self) -> int:
        """SIGTERM (SIGKILL after 10 s); the exit code; remove its temporary directory."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.tmpdir.cleanup()
        return code


def start_counter(broker: BrokerProcess, name: str) -> ActorProcess:
    """A ``tickbus run`` process (group ``name``) running one :class:`Counter` actor named ``name``."""
    config = f'[group]\nname = "{name}"\n[[actor]]\nclass = "{COUNTER}"\nname = "{name}"\n'
    return ActorProcess.launch(broker, config_toml=config, name=name, timeout=30)


class Observer:
    """An in-process hub that keeps the latest report of every counter and every slow event."""

    def __init__(self, hub: actors.RemoteHub) -> None:
        self.hub = hub
        self.reports: dict[str, dict[str, Any]] = {}
        self.slow_events: list[dict[str, Any]] = []
        sub = actors.Subscriber(hub, "observer")
        sub.add_sync_listener(actors.Key(*REPORTS), lambda k, p: self.reports.__setitem__(p["name"], p))
        sub.add_sync_listener(actors.Key(*SLOW_EVENTS), lambda k, p: self.slow_events.append(p))

    @classmethod
    async def connect(cls, broker: BrokerProcess) -> Observer:
        """Connect to ``broker`` and subscribe; returns once the subscriptions are active."""
        observer = cls(await actors.connect(broker.frontend, broker.backend, name="chaos-observer"))
        await observer.hub.sync()
        return observer

    async def wait_for(self, names: Iterable[str], timeout: float = 10) -> None:
        """Wait until every counter in ``names`` has reported at least once."""
        wanted = set(names)
        await eventually(lambda: wanted <= self.reports.keys(), timeout, f"reports from {sorted(wanted)}")

    async def close(self) -> None:
        await self.hub.close()


def account(report: dict[str, Any], publisher_id: str) -> dict[str, int]:
    """What a counter's report says of one publisher: received, gaps, duplicates, reordered, and
    ``dropped`` from its mailbox (the counter's only other loss; one publisher per test)."""
    figures = {
        "received": int(report["received"].get(publisher_id, 0)),
        "dropped": int(report["actor"]["dropped"]),
    }
    figures.update(gaps=0, duplicates=0, reordered=0)
    for entry in report["publishers"]:
        if entry["publisher"] == publisher_id:
            figures.update({k: int(entry[k]) for k in ("gaps", "duplicates", "reordered")})
    return figures


def unaccounted(report: dict[str, Any], publisher_id: str, published: int) -> int:
    """``published`` minus received + gaps + mailbox drops: 0 is exact accounting."""
    figures = account(report, publisher_id)
    return published - figures["received"] - figures["gaps"] - figures["dropped"]


def in_window(timeline: Iterable[Sequence[int]], start: float, end: float) -> int:
    """Messages in the 100 ms buckets lying wholly within ``[start, end]`` (``time.monotonic()``)."""
    first, last = int(start * 10) + 1, int(end * 10) - 1
    return sum(n for bucket, n in timeline if first <= bucket <= last)


async def wait_accounted(
    observer: Observer, names: Iterable[str], publisher_id: str, published: int, timeout: float = 15
) -> None:
    """Wait until every named counter accounts exactly for ``published`` messages of one publisher."""
    wanted = list(names)
    await eventually(
        lambda: all(
            name in observer.reports and unaccounted(observer.reports[name], publisher_id, published) == 0
            for name in wanted
        ),
        timeout,
        f"{wanted} account for all {published} messages of {publisher_id}",
    )


def assert_clean_exits(load: LoadGen, counters: dict[str, ActorProcess]) -> None:
    """SIGTERM the publisher and every counter: each must exit 0 (none crashed, each drains)."""
    assert load.close() == 0, load.log_path.read_text(errors="replace")[-2000:]
    for name, counter in counters.items():
        code = counter.close()
        assert code == 0, f"{name} exited {code}:\n{counter.log()[-2000:]}"


@contextlib.asynccontextmanager
async def counting(
    broker: BrokerProcess, names: Iterable[str]
) -> AsyncIterator[tuple[dict[str, ActorProcess], Observer]]:
    """Counter processes named ``names`` and an observer hearing their reports; all stopped after."""
    counters: dict[str, ActorProcess] = {}
    observer: Observer | None = None
    try:
        for name in names:
            counters[name] = start_counter(broker, name)
        observer = await Observer.connect(broker)
        await observer.wait_for(counters)
        yield counters, observer
    finally:
        if observer is not None:
            await observer.close()
        for counter in counters.values():
            counter.signal(signal.SIGCONT)  # a stopped process would not see its SIGTERM
            counter.close()
