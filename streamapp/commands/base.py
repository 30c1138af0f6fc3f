"""The base of streamapp's commands: run on a private event loop without starting a worker, and turn
expected failures into one clear line on stderr and a non-zero exit code."""

from __future__ import annotations

import asyncio
from typing import Any, NoReturn

from faust.cli import AppCommand


class CommandError(Exception):
    """An expected failure of a command: its message is the one line the user sees."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class StreamappCommand(AppCommand):
    """Runs `run()` to completion on its own loop; no worker, no web server, no agents."""

    abstract = True

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        try:
            result = asyncio.run(self.execute(*self.args + args, **{**self.kwargs, **kwargs}))
        except CommandError as exc:
            print(f"error: {exc}", file=self.stderr)
            raise SystemExit(exc.exit_code) from None
        except KeyboardInterrupt:
            print("interrupted", file=self.stderr)
            raise SystemExit(130) from None
        raise SystemExit(result if isinstance(result, int) else 0)
