"""Model calls in a child process (`streamapp.child_process`), so scoring runs on another core than the
event loop. The model is sent to the child once per version (as `pickle` bytes: tensors by value); each
batch ships only its rows:

    result = await model_process.call("anomaly", version, model, score_rows, histories)

`fn` must be a module-level function taking the model first (it is pickled by reference).
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from streamapp.child_process import ChildProcess, offloading, one_torch_thread

T = TypeVar("T")

# ---- in the child -----------------------------------------------------------------------------------
_installed: dict[str, tuple[str, Any]] = {}  # model name -> (version, model)


class ModelNotInstalled(LookupError):
    """The child does not hold this version of the model (it was restarted, or the version is new)."""


def load_libraries() -> bool:
    """In the child: import what the models unpickle into (torch, scikit-learn, PyOD) ahead of the first batch."""
    import pyod.models.iforest  # noqa: F401
    import pyod.models.ocsvm  # noqa: F401
    import sklearn.ensemble  # noqa: F401
    import torch  # noqa: F401

    return True


def _install(name: str, version: str, pickled_model: bytes) -> None:
    _installed[name] = (version, pickle.loads(pickled_model))


def _call(name: str, version: str, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    held = _installed.get(name)
    if held is None or held[0] != version:
        raise ModelNotInstalled(f"{name} {version}")
    return fn(held[1], *args)


# ---- in the worker ----------------------------------------------------------------------------------
class ModelProcess:
    """The worker's models, served by one child process (calls run one at a time, in order)."""

    def __init__(self) -> None:
        self.child = ChildProcess("model", one_torch_thread)
        self._sent: dict[str, tuple[int, str]] = {}  # model name -> (child generation, version it holds)

    async def call(self, name: str, version: str, model: Any, fn: Callable[..., T], *args: Any) -> T:
        """`fn(model, *args)` in the child (blocking work off the loop and off its core)."""
        if not offloading():
            return await self.child.run(fn, model, *args)
        version = f"{version}#{id(model)}"  # a reloaded model object is sent again, even under the same version
        for _ in range(3):  # the child may be replaced between sending the model and the call
            if self._sent.get(name) != (self.child.generation, version):
                # pickled here with the standard pickler: multiprocessing's own would share torch tensors
                # through file descriptors the child fetches back from this process, which hung a worker
                pickled = await asyncio.get_running_loop().run_in_executor(None, pickle.dumps, model)
                await self.child.run(_install, name, version, pickled)  # sent twice at worst: harmless
                self._sent[name] = (self.child.generation, version)
            try:
                return await self.child.run(_call, name, version, fn, args)
            except ModelNotInstalled:
                self._sent.pop(name, None)
        raise RuntimeError(f"the model process did not keep {name} {version}")

    async def call_on_windows(
        self, name: str, version: str, model: Any, fn: Callable[..., T], window: int,
        histories: Sequence[Sequence[Any]], *args: Any,
    ) -> T:
        """`fn(model, histories, *args)` in the child, each history (an asset's vectors, oldest first) cut to
        its last `window` first: the model reads no more, so no more is shipped."""
        return await self.call(name, version, model, fn, [history[-window:] for history in histories], *args)


model_process = ModelProcess()
