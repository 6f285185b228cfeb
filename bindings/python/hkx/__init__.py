"""hkx for Python: a ``concurrent.futures`` executor, and an asyncio one
(``hkx.aio``), whose tasks run in separate host processes driven by
``hkx serve``, so that they can be cancelled, stopped, paused, frozen and
killed while this process and the executor carry on.

    with hkx.Executor(4, kill_after=5.0) as ex:
        print(ex.submit("sha256", "/etc/hosts").result())
"""

from concurrent.futures import CancelledError

from . import errors
from .errors import *
from .executor import Executor
from .futures import Future, Group

__all__ = [
    "aio",
    "CancelledError",
    "Executor",
    "Future",
    "Group",
]
__all__ += errors.__all__


def __getattr__(name: str) -> object:
    """``hkx.aio`` on first use: a program of threads never pays for
    importing asyncio."""
    if name == "aio":
        import importlib
        return importlib.import_module(".aio", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
