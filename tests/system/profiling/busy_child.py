"""A busy Python process for the Austin tests: prints ``ready`` then burns CPU until killed."""

from __future__ import annotations

import sys
import time


def burn_cpu_for_profiler_tests() -> None:
    """Spin in this function's own code, so Austin's samples name it as the leaf."""
    total = 0
    while True:
        for i in range(10_000):
            total += i * i


if __name__ == "__main__":
    print("ready", flush=True)
    if len(sys.argv) > 1 and sys.argv[1] == "idle":
        time.sleep(3600)
    burn_cpu_for_profiler_tests()
