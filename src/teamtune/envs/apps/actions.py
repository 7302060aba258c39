"""Agents act by writing API calls, one per line, e.g. `contacts.search(query="Ava")`.

Lines are parsed with `ast` and their arguments read with `ast.literal_eval`: model output is never executed,
only matched against the registered API functions, so it cannot reach files, processes or the network.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field

from .api import API, ApiError, signature

CALL_LINE = re.compile(r"^\s*`*\s*([a-z_]+\.[a-z_]+)\s*\(")
MAX_LINE = 2000
LINE = re.compile("[^\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]+")  # what str.splitlines splits on
COMPLETE = "supervisor.complete"


@dataclass
class Call:
    name: str
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)

    def __str__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.name}({', '.join(parts)})"


@dataclass
class BadCall:
    line: str
    error: str


def parse_actions(text: str) -> Iterator[Call | BadCall]:
    """Every line of `text` that starts like `app.function(` becomes a Call, or a BadCall saying what is wrong.

    Lazily, line by line: a caller that stops at its step limit never parses the rest of a huge text.
    """
    for match in LINE.finditer(text):
        line = match.group()
        if CALL_LINE.match(line):
            yield parse_call(line.strip().strip("`").strip())


def parse_call(line: str) -> Call | BadCall:
    if len(line) > MAX_LINE:
        return BadCall(line[:80] + "...", f"line longer than {MAX_LINE} characters")
    try:
        node = ast.parse(line, mode="eval").body
    except SyntaxError as e:
        return BadCall(line, f"not a valid call: {e.msg}")
    except UnicodeEncodeError:  # a lone surrogate has no UTF-8 form for the parser
        return BadCall(
            line.encode("utf-8", "backslashreplace").decode(),
            "the line holds a lone surrogate, which is not text",
        )
    except ValueError as e:  # Python 3.11: a NUL byte
        return BadCall(line, f"not a valid call: {e}")
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
    ):
        return BadCall(line, "write one call per line, like contacts.search(query='Ava')")
    name = f"{node.func.value.id}.{node.func.attr}"
    try:
        args = [ast.literal_eval(a) for a in node.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg is not None}
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return BadCall(line, "arguments must be plain values (numbers, strings, true/false, None, lists)")
    if any(k.arg is None for k in node.keywords):
        return BadCall(line, "** arguments are not allowed")
    return Call(name, args, kwargs)


_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "None": (type(None),)}


def _check_types(call: Call, bound: inspect.BoundArguments, sig: inspect.Signature) -> None:
    for pname, value in bound.arguments.items():
        allowed = tuple(
            t
            for part in str(sig.parameters[pname].annotation).split("|")
            for t in _TYPES.get(part.strip(), (object,))
        )
        ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
        if not ok:
            raise ApiError(f"{call.name}: {pname} must be {sig.parameters[pname].annotation}, got {value!r}")


def execute(db: sqlite3.Connection, call: Call) -> str:
    """Run one parsed call; the observation is the JSON result or an `Error: ...` line. Never raises."""
    if call.name not in API:
        apps = sorted({n.split(".")[0] for n in API})
        return f"Error: unknown API {call.name} (apps: {', '.join(apps)}, supervisor)"
    sig = signature(call.name)
    try:
        bound = sig.bind(*call.args, **call.kwargs)
        _check_types(call, bound, sig)
    except TypeError as e:
        return f"Error: {call.name}: {e}"
    except ApiError as e:
        return f"Error: {e}"
    db.execute("SAVEPOINT call")
    try:
        result = API[call.name](db, *bound.args, **bound.kwargs)
    except ApiError as e:
        db.execute("ROLLBACK TO call")
        return f"Error: {e}"
    except (sqlite3.Error, OverflowError, ValueError) as e:
        db.execute("ROLLBACK TO call")
        return f"Error: {call.name} failed: {e}"
    finally:
        db.execute("RELEASE call")
    return json.dumps(result)
