"""The profiling collector's errors, a branch of tickbus's one exception tree (see _errors.py).

::

    TickbusError
     └── ObservabilityError
          └── ProfilerError                                  the profiler cannot sample, store or answer
               ├── SamplerError                         Austin cannot start, attach or keep sampling
               │    └── PtraceNotPermittedError (also PermissionError)  the kernel refuses reads
               └── ProfileStoreError                    profiles.sqlite cannot be opened or written

``OSError`` and ``austin.AustinError`` from Austin are translated in one place
(:class:`observability._austin.AustinSampler`); ``sqlite3.Error`` in :mod:`observability._profile_store`.
Messages name the process or file, what is wrong and the fix.

The package ``__init__`` loads the profiler's names lazily (see ``observability.__getattr__``): the
collector imports :mod:`actors`, which imports :mod:`observability`, and austin-python, which
actor processes never need.
"""

from __future__ import annotations

from ._errors import ObservabilityError


class ProfilerError(ObservabilityError):
    """The profiling collector cannot sample, store or answer a query."""


class SamplerError(ProfilerError):
    """Austin cannot be started, cannot attach to a process, or failed while sampling it."""


class PtraceNotPermittedError(SamplerError, PermissionError):
    """The kernel does not let Austin read the target's memory; the message says how to allow it."""


class ProfileStoreError(ProfilerError):
    """The profile store (``profiles.sqlite``) cannot be opened, read or written."""
