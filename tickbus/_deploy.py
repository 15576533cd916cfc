"""``tickbus deploy install``: write the systemd units, configs and environment files of a host.

The files come from the repository's ``deploy/`` directory, which the wheel ships under
``<venv>/share/tickbus/deploy`` (``[tool.setuptools.data-files]``). Under ``--prefix`` (``/`` for the
running system, or a staging directory for a package) it writes:

- ``etc/systemd/system/tickbus-broker.service``, ``tickbus-actors@.service``,
  ``tickbus-profiler.service``: always (they are code), with ``ExecStart`` pointing at this
  installation's ``tickbus`` (``--bin-dir``; default: beside the running interpreter);
- ``etc/sysusers.d/tickbus.conf``: the ``tickbus`` system user;
- ``etc/tickbus/broker.toml``, ``profiler.toml``, ``tickbus.env``, ``groups/example.toml.sample``:
  only when missing, so an operator's edits survive a reinstall (``--force`` overwrites them).

Paths written *inside* the files are the running system's (the prefix is not in them). The command
prints what it wrote and the ``systemctl`` steps that follow (deploy/README.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from observability import ConfigError

__all__ = ["Installed", "add_parser", "deploy_source", "hidden_from_units", "install", "run"]

_DEFAULT_BIN = "/opt/tickbus/bin"
UNITS = ("tickbus-broker.service", "tickbus-actors@.service", "tickbus-profiler.service")
"""The unit files in ``deploy/systemd``."""
_CONFIGS = (  # (source under deploy/, destination under the prefix)
    ("examples/broker.toml", "etc/tickbus/broker.toml"),
    ("examples/profiler.toml", "etc/tickbus/profiler.toml"),
    ("examples/group.toml", "etc/tickbus/groups/example.toml.sample"),
    ("env/tickbus.env", "etc/tickbus/tickbus.env"),
)


@dataclass(frozen=True)
class Installed:
    """What :func:`install` did: files written, and config files kept because they existed."""

    written: tuple[Path, ...]
    kept: tuple[Path, ...]
    warnings: tuple[str, ...] = ()
    """Things the units will trip on, e.g. a ``--bin-dir`` they cannot see (:func:`hidden_from_units`)."""


# Paths the units' hardening hides from the service: ProtectHome=yes and PrivateTmp=yes.
_HIDDEN = (
    ("/home", "ProtectHome=yes"),
    ("/root", "ProtectHome=yes"),
    ("/run/user", "ProtectHome=yes"),
    ("/tmp", "PrivateTmp=yes"),
    ("/var/tmp", "PrivateTmp=yes"),
)


def hidden_from_units(path: Path) -> str | None:
    """Why the installed units could not run a ``tickbus`` under ``path``, or None when they can."""
    resolved = path.resolve()
    for hidden, setting in _HIDDEN:
        if resolved == Path(hidden) or Path(hidden) in resolved.parents:
            return (
                f"{resolved} is under {hidden}, which the units hide from the service ({setting}): "
                "it would fail to start. Install tickbus in a virtualenv outside it (e.g. /opt/tickbus) "
                "and give that --bin-dir"
            )
    return None


def deploy_source() -> Path:
    """The ``deploy/`` directory: the source checkout's, else the one the wheel installed."""
    candidates = (
        Path(__file__).resolve().parent.parent / "deploy",  # a checkout (editable install)
        Path(sys.prefix) / "share" / "tickbus" / "deploy",  # a wheel, in a virtualenv
        Path(sys.base_prefix) / "share" / "tickbus" / "deploy",
    )
    for candidate in candidates:
        if (candidate / "systemd" / UNITS[0]).is_file():
            return candidate
    raise ConfigError(
        f"tickbus deploy: no unit files in {', '.join(str(c) for c in candidates)}; "
        "reinstall tickbus from its wheel or run from a source checkout"
    )


def install(
    prefix: Path, *, bin_dir: Path | None = None, force: bool = False, source: Path | None = None
) -> Installed:
    """Write units, sysusers entry, configs and env files under ``prefix`` (see the module doc)."""
    source = source or deploy_source()
    bin_dir = (bin_dir or Path(sys.executable).parent).absolute()
    tickbus = bin_dir / "tickbus"
    if not (tickbus.is_file() and os.access(tickbus, os.X_OK)):
        raise ConfigError(
            f"tickbus deploy: {tickbus} is not an executable; give --bin-dir of the virtualenv "
            "where tickbus is installed"
        )
    written: list[Path] = []
    kept: list[Path] = []
    try:
        for unit in UNITS:
            text = (source / "systemd" / unit).read_text()
            target = prefix / "etc/systemd/system" / unit
            _write(target, text.replace(f"{_DEFAULT_BIN}/tickbus", str(tickbus)), 0o644)
            written.append(target)
        target = prefix / "etc/sysusers.d/tickbus.conf"
        _write(target, (source / "sysusers/tickbus.conf").read_text(), 0o644)
        written.append(target)
        for name, dest in _CONFIGS:
            target = prefix / dest
            if target.exists() and not force:
                kept.append(target)
                continue
            mode = 0o640 if target.suffix == ".env" else 0o644  # env files may hold keys
            _write(target, (source / name).read_text(), mode)
            written.append(target)
        readme = source / "README.md"
        if readme.is_file():
            target = prefix / "etc/tickbus/README.md"
            _write(target, readme.read_text(), 0o644)
            written.append(target)
    except OSError as exc:
        raise ConfigError(
            f"tickbus deploy: cannot write under {prefix}: {exc.strerror} ({exc.filename}); "
            "run as root for --prefix /, or pick a writable staging directory"
        ) from exc
    hidden = hidden_from_units(bin_dir)
    return Installed(tuple(written), tuple(kept), (hidden,) if hidden else ())


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(text)
    partial.chmod(mode)
    partial.replace(path)  # atomic: systemd never reads half a unit


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tickbus deploy install`` to the ``tickbus`` command."""
    deploy = subparsers.add_parser("deploy", help="install systemd units, configs and env files")
    actions = deploy.add_subparsers(dest="deploy_command", required=True, metavar="ACTION")
    inst = actions.add_parser(
        "install",
        help="write units, configs and env files under --prefix",
        description="Write the tickbus systemd units (broker, actor-group template, profiler), the "
        "tickbus system user (sysusers.d), and /etc/tickbus configs and env files under PREFIX. Existing "
        "configs are kept unless --force. Then: systemd-sysusers; systemctl daemon-reload; systemctl "
        "enable --now tickbus-broker tickbus-actors@GROUP tickbus-profiler.",
    )
    inst.add_argument("--prefix", type=Path, default=Path("/"), help="root to write under (default /)")
    inst.add_argument(
        "--bin-dir",
        type=Path,
        help="directory of the tickbus executable the units run (default: this interpreter's)",
    )
    inst.add_argument("--force", action="store_true", help="overwrite existing configs and env files")


def run(args: argparse.Namespace) -> int:
    """Run ``tickbus deploy install``; print what was written and what to do next."""
    done = install(args.prefix, bin_dir=args.bin_dir, force=args.force)
    for path in done.written:
        print(f"wrote {path}")
    for path in done.kept:
        print(f"kept  {path} (exists; --force overwrites)")
    for warning in done.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    root = "" if args.prefix.resolve() == Path("/") else f" (staged under {args.prefix})"
    print(
        f"next{root}: systemd-sysusers; systemctl daemon-reload; "
        "systemctl enable --now tickbus-broker tickbus-actors@GROUP tickbus-profiler"
    )
    return 0
