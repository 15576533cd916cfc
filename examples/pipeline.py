"""A small trading pipeline in four actors, after Quantlane's talk "Algorithmic trading with asyncio".

::

    Feed --('tick', SYM)--> Model --('state', SYM)--> Strategy --('decision', SYM)--> UI
                                          \\-------------------------------------------^

- :class:`Feed` produces market data (the talk's ``InputDataProcessor``): synthetic ticks or a CSV
  replay, at a steady rate;
- :class:`Model` keeps per-symbol state (last price, fast/slow EWMA, volatility) and publishes it on
  every tick;
- :class:`Strategy` turns each state update into a decision (buy, sell or hold) with a crossover
  rule and a position limit, and measures the tick-to-decision latency;
- :class:`UI` (the talk's ``UserInterfaceServer``) keeps the latest state and decision per symbol and
  publishes a snapshot every 0.25 s.

Every payload carries ``t_ns`` (``time.monotonic_ns()`` when the tick was made; comparable between
processes of one host) and ``n`` (the tick's number), so the latency is measured end to end.
Run them with ``tickbus run --config group.toml`` (see ``examples/README.md``) or all at once with
``python -m examples.demo``.
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import math
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors import Actor, ConfigError, Key, every, handler

DEFAULT_SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "JPM")

Tick = tuple[str, float, int]  # symbol, price, size


def symbol_names(spec: int | str | Sequence[str]) -> list[str]:
    """Symbols from config: a list is used as given; a count ``n`` takes the first ``n`` of
    :data:`DEFAULT_SYMBOLS`, then ``S008``, ``S009``, ..."""
    if isinstance(spec, str):
        spec = [spec]
    if isinstance(spec, int):
        if spec < 1:
            raise ConfigError(f"feed: symbols = {spec}; give a positive count or a list of names")
        return [DEFAULT_SYMBOLS[i] if i < len(DEFAULT_SYMBOLS) else f"S{i:03d}" for i in range(spec)]
    names = [str(s) for s in spec]
    if not names:
        raise ConfigError("feed: symbols = []; give a positive count or a list of names")
    return names


def random_walk(symbols: Sequence[str], seed: int | None = None) -> Iterator[Tick]:
    """Endless synthetic ticks: a random symbol, its price moved by a ~5 bp random step."""
    rng = random.Random(seed)
    prices = {sym: round(rng.uniform(20.0, 500.0), 2) for sym in symbols}
    while True:
        sym = rng.choice(symbols)
        px = prices[sym] = round(prices[sym] * (1.0 + rng.gauss(0.0, 0.0005)), 4)
        yield sym, px, 100 * rng.randint(1, 10)


def replay_csv(path: str | Path) -> Iterator[Tick]:
    """Ticks from a ``symbol,price,size`` file; a header line and ``#`` comments are skipped."""
    with open(path, newline="") as handle:
        for line_no, row in enumerate(csv.reader(handle), 1):
            if not row or row[0].startswith("#"):
                continue
            try:
                yield row[0].strip(), float(row[1]), int(float(row[2]))
            except (IndexError, ValueError):
                if line_no == 1:  # a header such as "symbol,price,size"
                    continue
                raise ConfigError(f"{path}:{line_no}: expected 'symbol,price,size', got {row!r}") from None


def tick_source(config: Mapping[str, Any]) -> Iterator[Tick]:
    """The feed's ticks: a replay of ``config['csv']`` if given, else a random walk."""
    if "csv" in config:
        path = Path(config["csv"])
        if not path.is_file():
            raise ConfigError(f"feed: csv = '{path}' is not a file; give a symbol,price,size file")
        return replay_csv(path)
    symbols = symbol_names(config.get("symbols", len(DEFAULT_SYMBOLS)))
    return random_walk(symbols, config.get("seed"))


class Feed(Actor):
    """Publishes ticks at ``('tick', SYMBOL)``: ``{sym, px, size, t_ns, n}``.

    Config: ``rate`` (ticks per second over all symbols, default 2000), ``symbols`` (a count or a
    list of names, default 8), ``csv`` (replay this ``symbol,price,size`` file instead of the
    random walk), ``count`` (stop after this many ticks; default: until the replay ends or the
    actor stops), ``seed``, ``burst`` (most ticks sent in one loop turn while catching up, 64).

    Pacing is drift-free: tick ``k`` is due at ``start + k / rate``; each loop turn sends every
    tick whose time has come (a small burst), then sleeps until the next one is due. It also
    publishes ``('feed', 'status')`` ``{sent, rate, elapsed_s, done}`` every second and at stop.
    """

    name = "feed"

    async def on_start(self) -> None:
        self.rate = float(self.config.get("rate", 2000))
        if self.rate <= 0:
            raise ConfigError(f"feed: rate = {self.rate}; give ticks per second, e.g. 2000")
        self.count = int(self.config.get("count", 0))
        self.burst = int(self.config.get("burst", 64))
        self.source = tick_source(self.config)
        self.sent = 0
        self.elapsed = 0.0
        self.done = False
        self.stopping: asyncio.Task[None] | None = None
        self.task = asyncio.get_running_loop().create_task(self._run(), name="feed.run")
        self.task.add_done_callback(self._on_task_done)

    async def on_stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.report_status()
        self.log.info("feed stopped after {} ticks in {:.1f}s", self.sent, self.elapsed)

    @every(1.0)
    def report_status(self) -> None:
        """Tell the world how far the feed got (the demo reads the final one)."""
        status = {"sent": self.sent, "rate": self.rate, "elapsed_s": self.elapsed, "done": self.done}
        self.publish(("feed", "status"), status)

    async def _run(self) -> None:
        first = next(self.source, None)
        if first is None:
            self.done = True
            return
        ticks: Iterator[Tick] = itertools.chain([first], self.source)
        if self.count:
            ticks = itertools.islice(ticks, self.count)
        # Over a broker, a tick nobody subscribes to yet is skipped: wait for the model to be there.
        wait_for_subscribers = getattr(self.hub, "wait_for_subscribers", None)
        if wait_for_subscribers is not None:
            timeout = float(self.config.get("subscriber_timeout", 30.0))
            try:
                await wait_for_subscribers(("tick", first[0]), timeout=timeout)
            except TimeoutError:
                self.log.warning("no subscriber for ticks after {}s; sending anyway", timeout)
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            wanted = min(int((loop.time() - start) * self.rate) + 1 - self.sent, self.burst)
            got = 0
            for sym, px, size in itertools.islice(ticks, max(wanted, 0)):
                got += 1
                self.sent += 1
                self.publish(
                    ("tick", sym),
                    {"sym": sym, "px": px, "size": size, "t_ns": time.monotonic_ns(), "n": self.sent},
                )
            self.elapsed = loop.time() - start
            if got < wanted:  # the replay ended or `count` was reached
                break
            await asyncio.sleep(max(0.0, start + self.sent / self.rate - loop.time()))
        self.done = True
        self.log.info("feed finished: {} ticks in {:.1f}s", self.sent, self.elapsed)
        self.report_status()

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        exc = None if task.cancelled() else task.exception()
        if exc is None:
            return
        # The actor's failure policy covers handlers and timers, not our own task: stop the actor,
        # which makes `tickbus run` exit non-zero.
        self.log.opt(exception=exc).error("feed failed: {!r}", exc)
        self.stopping = asyncio.get_running_loop().create_task(self.stop(reason=f"feed failed: {exc!r}"))


@dataclass(slots=True)
class SymbolState:
    """What the model knows about one symbol."""

    px: float
    fast: float
    slow: float
    variance: float = 0.0  # EWMA of squared log returns
    ticks: int = 1


def ewma_weight(span: float) -> float:
    """The weight of a new observation in an EWMA over about ``span`` observations."""
    return 2.0 / (span + 1.0)


class Model(Actor):
    """Turns ticks into per-symbol state, published at ``('state', SYMBOL)`` on every tick:
    ``{sym, px, fast, slow, vol_bp, ticks, t_ns, n}`` (``t_ns`` and ``n`` carried from the tick).

    Config: ``fast`` and ``slow`` (EWMA spans in ticks, 10 and 50), ``vol`` (span of the volatility
    estimate, 50); ``vol_bp`` is the EWMA standard deviation of tick returns in basis points.
    """

    name = "model"
    prefix = ("state",)

    async def on_start(self) -> None:
        self.states: dict[str, SymbolState] = {}
        self.w_fast = ewma_weight(float(self.config.get("fast", 10)))
        self.w_slow = ewma_weight(float(self.config.get("slow", 50)))
        self.w_vol = ewma_weight(float(self.config.get("vol", 50)))

    @handler(("tick", "*"))
    def on_tick(self, key: Key, tick: dict[str, Any]) -> None:
        """Update the symbol's state with one tick and publish it."""
        sym, px = tick["sym"], tick["px"]
        state = self.states.get(sym)
        if state is None:
            state = self.states[sym] = SymbolState(px, px, px)
        else:
            ret = math.log(px / state.px)
            state.variance += self.w_vol * (ret * ret - state.variance)
            state.fast += self.w_fast * (px - state.fast)
            state.slow += self.w_slow * (px - state.slow)
            state.px = px
            state.ticks += 1
        self.publish(
            sym,
            {
                "sym": sym,
                "px": px,
                "fast": state.fast,
                "slow": state.slow,
                "vol_bp": math.sqrt(state.variance) * 1e4,
                "ticks": state.ticks,
                "t_ns": tick["t_ns"],
                "n": tick["n"],
            },
        )


class Strategy(Actor):
    """Decides on every state update, published at ``('decision', SYMBOL)``:
    ``{sym, action, qty, position, px, signal_bp, n, latency_ns}``.

    The rule: the signal is how far the fast EWMA is above the slow one, in basis points. Above
    ``threshold_bp`` buy one ``lot``, below ``-threshold_bp`` sell one, as long as the position stays
    within ``max_position`` shares either way; otherwise (and for the first ``warmup`` ticks of a
    symbol) hold. Defaults: 2 bp, 100 shares, 500 shares, 20 ticks.

    ``latency_ns`` is the time from the tick's creation in the feed to this decision.
    """

    name = "strategy"
    prefix = ("decision",)

    async def on_start(self) -> None:
        self.positions: dict[str, int] = {}
        self.threshold_bp = float(self.config.get("threshold_bp", 2.0))
        self.lot = int(self.config.get("lot", 100))
        self.max_position = int(self.config.get("max_position", 500))
        self.warmup = int(self.config.get("warmup", 20))

    @handler(("state", "*"))
    def on_state(self, key: Key, state: dict[str, Any]) -> None:
        """Apply the rule to one state update and publish the decision."""
        sym = state["sym"]
        signal_bp = (state["fast"] - state["slow"]) / state["slow"] * 1e4
        position = self.positions.get(sym, 0)
        action = "hold"
        if state["ticks"] >= self.warmup:
            if signal_bp > self.threshold_bp and position + self.lot <= self.max_position:
                action, position = "buy", position + self.lot
            elif signal_bp < -self.threshold_bp and position - self.lot >= -self.max_position:
                action, position = "sell", position - self.lot
        self.positions[sym] = position
        self.publish(
            sym,
            {
                "sym": sym,
                "action": action,
                "qty": 0 if action == "hold" else self.lot,
                "position": position,
                "px": state["px"],
                "signal_bp": signal_bp,
                "n": state["n"],
                "latency_ns": time.monotonic_ns() - state["t_ns"],
            },
        )


class UI(Actor):
    """The user's view: the latest state and decision per symbol, as a snapshot at
    ``('ui', 'snapshot')`` every 0.25 s ``{decisions, buys, sells, symbols: {SYM: {px, pos, action,
    signal_bp, vol_bp}}}`` and one log line per second at most.

    A real UI would push the snapshot to browsers over a WebSocket instead of publishing it.
    """

    name = "ui"
    prefix = ("ui",)

    async def on_start(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.counts = {"buy": 0, "sell": 0, "hold": 0}
        self.changed = False

    @handler(("state", "*"))
    def on_state(self, key: Key, state: dict[str, Any]) -> None:
        """Remember the symbol's latest price and volatility."""
        row = self.rows.setdefault(state["sym"], {"pos": 0, "action": "hold", "signal_bp": 0.0})
        row["px"], row["vol_bp"] = state["px"], round(state["vol_bp"], 2)
        self.changed = True

    @handler(("decision", "*"))
    def on_decision(self, key: Key, decision: dict[str, Any]) -> None:
        """Remember the symbol's latest decision and position."""
        row = self.rows.setdefault(decision["sym"], {"px": decision["px"], "vol_bp": 0.0})
        row["pos"], row["action"] = decision["position"], decision["action"]
        row["signal_bp"] = round(decision["signal_bp"], 2)
        self.counts[decision["action"]] += 1
        self.changed = True

    def snapshot(self) -> dict[str, Any]:
        """The compact view the UI renders."""
        return {
            "decisions": sum(self.counts.values()),
            "buys": self.counts["buy"],
            "sells": self.counts["sell"],
            "symbols": {sym: dict(row) for sym, row in sorted(self.rows.items())},
        }

    @every(0.25)
    def render(self) -> None:
        """Publish the snapshot (as the talk's UI sends it to the browser every 0.25 s)."""
        if self.rows:
            self.publish("snapshot", self.snapshot())

    @every(1.0)
    def log_line(self) -> None:
        """One line per second, only when something changed."""
        if not self.changed:
            return
        self.changed = False
        positions = " ".join(f"{sym}:{row['pos']:+d}" for sym, row in sorted(self.rows.items()))
        self.log.info(
            "ui: {} decisions ({} buy, {} sell); positions {}",
            sum(self.counts.values()),
            self.counts["buy"],
            self.counts["sell"],
            positions,
        )
