"""What every interop script shares: the wait deadline, and how a check passes or fails."""

import os

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
