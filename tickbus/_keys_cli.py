"""``tickbus keys``: make and inspect CURVE key pairs (pyzmq certificate files, see :mod:`broker._curve`).

::

    tickbus keys generate broker --dir /etc/tickbus/keys     # broker.key + broker.key_secret
    tickbus keys generate host-b --dir /etc/tickbus/keys     # one pair per client host or group
    mkdir -p /etc/tickbus/keys/allowed                       # the broker's allow-list (--allow-dir)
    cp /etc/tickbus/keys/host-b.key /etc/tickbus/keys/allowed/   # the broker admits host-b
    tickbus keys show /etc/tickbus/keys/host-b.key           # print the public key (Z85)

``generate`` prints the two paths, public first; it never overwrites a key (exit 2 instead).
"""

from __future__ import annotations

import argparse

from broker import generate_keys, load_public_key


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``keys`` subcommand to the ``tickbus`` command's subparsers."""
    keys = subparsers.add_parser(
        "keys",
        help="generate and show CURVE key pairs",
        description="CURVE key pairs for the broker and its clients, as pyzmq certificate files: "
        "NAME.key (public: copy it to the broker's --allow-dir) and NAME.key_secret (owner-only).",
    )
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    generate = actions.add_parser("generate", help="write NAME.key and NAME.key_secret into DIR")
    generate.add_argument("name", metavar="NAME", help="key name, e.g. broker or host-b")
    generate.add_argument("--dir", required=True, metavar="DIR", help="directory to write into")
    show = actions.add_parser("show", help="print the public key of a certificate file")
    show.add_argument("file", metavar="FILE", help="a NAME.key or NAME.key_secret file")


def run(args: argparse.Namespace) -> int:
    """Run ``tickbus keys ACTION``; :class:`ConfigError` (exit 2 in the CLI) on any failure."""
    if args.keys_command == "generate":
        public, secret = generate_keys(args.name, args.dir)
        print(public)
        print(secret)
    else:
        print(load_public_key(args.file).decode("ascii"))
    return 0
