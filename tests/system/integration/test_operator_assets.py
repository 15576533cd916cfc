"""The operator assets in ``deploy/``: the Prometheus config and alert rules, the Grafana dashboards.

``promtool`` checks the config and the rules as shipped. Then a real Prometheus (the Debian package, on
loopback, its own temporary data directory), configured from ``deploy/prometheus/prometheus.yml`` with
only the targets, the intervals and the rules path rewritten, scrapes a real ``tickbus broker`` and a
real ``tickbus run`` group carrying traffic, and every PromQL expression of both dashboards (panels and
template variables) must return data, and every alert rule must load, evaluate without error and carry
``for:``, a severity and a summary and description. The expressions are read from the files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import actors
from actors.testing import ActorProcess, BrokerProcess, free_tcp_port

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
RULES = DEPLOY / "prometheus" / "tickbus-rules.yml"
DASHBOARDS = sorted((DEPLOY / "grafana").glob("*.json"))
ECHO = "tests.system.integration.sample_actors:Echo"
GROUP = "feed"  # the `group` label prometheus.yml gives the target on port 9465
# concrete values for the dashboards' template variables (Grafana fills these in)
VARIABLES = {"group": GROUP, "actor": "echo", "__rate_interval": "1m", "datasource": "prometheus"}


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(
            f"{name.upper()} NOT INSTALLED: the deploy/prometheus checks did not run; install the Debian "
            "package 'prometheus', which ships both prometheus and promtool (as root: bash "
            "tests/ensure_system_deps.sh, which `make test` runs)"
        )
    return path


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``promtool *args``, its output captured."""
    return subprocess.run(
        [_binary("promtool"), *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(("check", "path"), [("rules", RULES), ("config", CONFIG)])
def test_promtool_accepts_the_shipped_file(check: str, path: Path) -> None:
    done = _promtool("check", check, path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def _substitute(expr: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in VARIABLES, f"no test value for the template variable ${name} in {expr}"
        return VARIABLES[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def _dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and template variable of every dashboard, variables filled."""
    found: list[tuple[str, str]] = []

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for item in items:
            yield item
            yield from panels(item.get("panels", []))

    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        assert board["schemaVersion"] >= 36
        for panel in panels(board["panels"]):
            for target in panel.get("targets", []):
                where = f"{path.name}: panel {panel['title']!r} {target['refId']}"
                found.append((where, _substitute(target["expr"])))
        for variable in board["templating"]["list"]:
            if variable["type"] != "query":
                continue
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            label_values = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query.strip())
            assert label_values, f"{path.name}: variable {variable['name']}: not label_values(...): {query}"
            metric, label = label_values.groups()
            where = f"{path.name}: variable ${variable['name']}"
            found.append((where, _substitute(f"count by ({label}) ({metric})")))
    assert len(DASHBOARDS) == 2 and len(found) > 20
    return found


def _api(base: str, path: str, **params: str) -> dict[str, Any]:
    """GET a Prometheus API path; its JSON answer, errors included (HTTP 400/422 carry one too)."""
    url = f"{base}{path}?{urllib.parse.urlencode(params)}" if params else f"{base}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        return dict(json.loads(exc.read() or b"{}") or {"status": "error", "error": str(exc)})
    except OSError as exc:
        return {"status": "unreachable", "error": str(exc)}


def _get_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except OSError:
        return None


def _test_config(tmp: Path, ports: dict[str, int]) -> Path:
    """deploy/prometheus/prometheus.yml with the test's targets, 1 s intervals, and the rules beside it."""
    text = CONFIG.read_text()
    for shipped, port in ports.items():
        assert f'"127.0.0.1:{shipped}"' in text, (
            f"prometheus.yml no longer has the target 127.0.0.1:{shipped}"
        )
        text = text.replace(f'"127.0.0.1:{shipped}"', f'"127.0.0.1:{port}"')
    for key in ("scrape_interval", "scrape_timeout", "evaluation_interval"):
        text, count = re.subn(rf"^(\s*{key}:) \w+", r"\1 1s", text, flags=re.MULTILINE)
        assert count == 1, key
    assert "- tickbus-rules.yml" in text
    shutil.copy(RULES, tmp / "tickbus-rules.yml")
    config = tmp / "prometheus.yml"
    config.write_text(text)
    return config


@contextlib.contextmanager
def _prometheus(ports: dict[str, int]) -> Iterator[str]:
    binary = _binary("prometheus")
    web_port = free_tcp_port()
    with tempfile.TemporaryDirectory(prefix="tickbus-prometheus-") as name:
        tmp = Path(name)
        config = _test_config(tmp, ports)
        with open(tmp / "prometheus.log", "w") as log:
            prometheus = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp / 'data'}",
                    f"--web.listen-address=127.0.0.1:{web_port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        base = f"http://127.0.0.1:{web_port}"
        try:
            deadline = time.monotonic() + 30
            while _get_status(f"{base}/-/ready") != 200:  # polling: no event tells when it is ready
                if prometheus.poll() is not None or time.monotonic() > deadline:
                    log_text = (tmp / "prometheus.log").read_text()[-3000:]
                    raise AssertionError(
                        f"Prometheus did not become ready with the shipped files:\n{log_text}"
                    )
                time.sleep(0.2)
            yield base
        except BaseException:
            print("prometheus log:", (tmp / "prometheus.log").read_text()[-3000:])
            raise
        finally:
            prometheus.terminate()
            try:
                prometheus.wait(10)
            except subprocess.TimeoutExpired:
                prometheus.kill()
                prometheus.wait()


async def _traffic(broker: BrokerProcess, stop: asyncio.Event) -> int:
    """Ping the echo actor every 20 ms until ``stop``; the number of pongs it answered."""
    hub = await actors.connect(broker.frontend, broker.backend, name="driver")
    pongs = 0

    def on_pong(key: actors.Key, payload: int) -> None:
        nonlocal pongs
        pongs += 1

    try:
        actors.Subscriber(hub, "s").add_sync_listener(actors.Key("pong", "*"), on_pong)
        await hub.sync()
        await hub.wait_for_subscribers(("ping", "x"))
        i = 0
        while not stop.is_set():
            hub.publish(actors.Key("ping", "x"), i)
            i += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.02)
    finally:
        await hub.close()
    return pongs


async def _until_all_answer(base: str, queries: list[tuple[str, str]], timeout: float) -> dict[str, Any]:
    """Query each expression until it returns a non-empty result; the ones that never did, with the answer."""
    pending = dict((expr, where) for where, expr in queries)
    last: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for expr in list(pending):
            answer = await asyncio.to_thread(_api, base, "/api/v1/query", query=expr)
            if answer.get("status") == "success" and answer["data"]["result"]:
                del pending[expr]
            else:
                last[expr] = answer
        if pending:
            await asyncio.sleep(0.5)  # polling is the point: Prometheus has no event to wait on
    return {f"{where}: {expr}": last.get(expr) for expr, where in pending.items()}


async def _loaded_rules(base: str, timeout: float) -> list[dict[str, Any]]:
    """The alerting rules Prometheus loaded, once every one has been evaluated at least once."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await asyncio.to_thread(_api, base, "/api/v1/rules")
        groups = answer.get("data", {}).get("groups", []) if answer.get("status") == "success" else []
        rules = [rule for group in groups for rule in group["rules"]]
        if rules and all(not rule["lastEvaluation"].startswith("0001") for rule in rules):
            return rules
        if time.monotonic() > deadline:
            raise TimeoutError(f"Prometheus did not load and evaluate the rules within {timeout}s: {answer}")
        await asyncio.sleep(0.5)


async def test_a_real_prometheus_answers_every_dashboard_query_and_rule_on_a_live_bus() -> None:
    _binary("prometheus")
    broker_port, group_port = free_tcp_port(), free_tcp_port()
    # the shipped config's other targets (a second group, the collector) point at ports nobody serves
    ports = {"9464": broker_port, "9465": group_port, "9466": free_tcp_port(), "9467": free_tcp_port()}
    queries = _dashboard_queries()
    with BrokerProcess.start(extra_args=["--metrics-port", str(broker_port)]) as broker:
        group = ActorProcess.launch(broker, ECHO, name=GROUP, env={"TICKBUS_METRICS_PORT": str(group_port)})
        stop = asyncio.Event()
        traffic = asyncio.create_task(_traffic(broker, stop))
        try:
            with _prometheus(ports) as base:
                missing = await _until_all_answer(base, queries, timeout=60)
                assert not missing, "dashboard queries without data:\n" + json.dumps(missing, indent=1)
                rules = await _loaded_rules(base, timeout=30)
                evaluated = {
                    rule["name"]: await asyncio.to_thread(_api, base, "/api/v1/query", query=rule["query"])
                    for rule in rules
                }
                up = await asyncio.to_thread(_api, base, "/api/v1/query", query="up == 1")
        finally:
            stop.set()
            pongs = await traffic
            group.close()
    print(f"{len(queries)} dashboard queries answered; {len(rules)} rules evaluated; {pongs} pongs")
    assert pongs > 0
    assert {r["metric"]["job"] for r in up["data"]["result"]} == {"tickbus-broker", "tickbus-actors"}
    shipped = re.findall(r"^\s*- alert: (\w+)$", RULES.read_text(), flags=re.MULTILINE)
    assert sorted(rule["name"] for rule in rules) == sorted(shipped)
    for rule in rules:
        assert rule["type"] == "alerting"
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
        assert rule["duration"] > 0, f"{rule['name']}: no for:"
        assert rule["labels"].get("severity") in {"critical", "warning", "info"}, rule["name"]
        assert rule["annotations"].get("summary") and rule["annotations"].get("description"), rule["name"]
        answer = evaluated[rule["name"]]
        assert answer.get("status") == "success", (rule["name"], rule["query"], answer)


def _folded(alert: str, key: str) -> str:
    """The folded (``>-``) annotation ``key`` of ``alert`` as shipped: its lines joined by spaces."""
    block = RULES.read_text().split(f"- alert: {alert}\n", 1)[1].split("- alert:", 1)[0]
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"{key}: >-")
    indent = len(lines[start]) - len(lines[start].lstrip())
    body = []
    for line in lines[start + 1 :]:
        if not line.strip() or len(line) - len(line.lstrip()) <= indent:
            break
        body.append(line.strip())
    return " ".join(body)


def test_telemetry_lost_fires_for_either_counter_and_not_for_flat_ones(tmp_path: Path) -> None:
    # the rule as shipped, evaluated by promtool over synthetic series: a process exports
    # tickbus_export_failures_total only once a write failed, so each counter must fire alone
    actors_target = {"job": "tickbus-actors", "instance": "127.0.0.1:9465", "group": "feed"}
    broker_target = {"job": "tickbus-broker", "instance": "127.0.0.1:9464"}
    quiet_target = {"job": "tickbus-actors", "instance": "127.0.0.1:9466", "group": "quiet"}

    def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
        text = ",".join(f'{k}="{v}"' for k, v in labels.items())
        return {"series": f"{name}{{{text}}}", "values": values}

    def fired(labels: dict[str, str]) -> dict[str, Any]:
        return {
            "exp_labels": {**labels, "severity": "warning"},
            "exp_annotations": {
                "summary": f"{labels['job']} {labels['instance']} is losing its own telemetry (log lines or export files)",
                "description": _folded("TickbusTelemetryLost", "description"),
            },
        }

    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    series(
                        "tickbus_export_failures_total",
                        {**actors_target, "signal": "traces"},
                        "0 0 3 3 3 3 3",
                    ),
                    series(
                        "tickbus_log_lost_total", {**actors_target, "tickbus_reason": "queue_full"}, "0x6"
                    ),
                    series(
                        "tickbus_log_lost_total",
                        {**broker_target, "tickbus_reason": "queue_full"},
                        "0 0 40 80 80 80 80",
                    ),
                    series("tickbus_log_lost_total", {**quiet_target, "tickbus_reason": "queue_full"}, "5x6"),
                ],
                "alert_rule_test": [
                    {"eval_time": "1m", "alertname": "TickbusTelemetryLost", "exp_alerts": []},
                    {
                        "eval_time": "5m",
                        "alertname": "TickbusTelemetryLost",
                        "exp_alerts": [fired(actors_target), fired(broker_target)],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "telemetry_lost_test.yml"
    path.write_text(json.dumps(tests))  # JSON is YAML
    done = _promtool("test", "rules", path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_deploy_readme_lists_every_shipped_alert() -> None:
    shipped = re.findall(r"^\s*- alert: (\w+)$", RULES.read_text(), flags=re.MULTILINE)
    listed = set(re.findall(r"^\| `(Tickbus\w+)` \|", (DEPLOY / "README.md").read_text(), flags=re.MULTILINE))
    assert shipped and sorted(set(shipped) - listed) == []
