"""What every interop script shares: the wait deadline, how a check passes or fails, and the
runner that turns a script's checks into an exit code."""

import asyncio
import os
import sys
import traceback
from typing import Awaitable, Callable

# Deadline for any single wait. The harness kills the whole script at 60 s.
WAIT = 10.0


class CheckFailed(Exception):
    """A check did not hold; the message says what was expected and seen."""


def env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise CheckFailed(f"environment variable {name} is not set")
    return value


def passed(check: str, detail: str) -> None:
    print(f"PASS {check}: {detail}", flush=True)


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise CheckFailed(what)


# The harness kills a script at 60 s; a script gives up a little earlier so it can say why.
BUDGET = 55.0


def run_checks(run: Callable[[], Awaitable[None]]) -> int:
    """Runs a script's checks; prints the verdict and returns the process exit code."""
    try:
        asyncio.run(asyncio.wait_for(run(), BUDGET))
    except CheckFailed as e:
        print(f"FAIL {e}", flush=True)
        return 1
    except asyncio.TimeoutError:
        print(f"FAIL the script ran past its {BUDGET:.0f} s budget", flush=True)
        return 1
    except Exception:
        print("FAIL unexpected exception:", flush=True)
        traceback.print_exc(file=sys.stdout)
        return 1
    print("all checks passed", flush=True)
    return 0
