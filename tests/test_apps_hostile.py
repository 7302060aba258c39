"""Hostile action texts in the apps world: nothing a model writes runs, escapes `act`, stalls it, or leaks.

Each example builds calls from a grammar of attacks (dunder chains, imports, lambdas, comprehensions, f-strings,
starred arguments, 1 MB strings, 10k-deep nesting, SQL injection, non-API attributes) mixed with real API names
and prose. An audit hook watches for anything executing; a canary file would show a payload that ran.
"""

import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from teamtune.envs.apps import API, AppsEnv, make_task
from teamtune.envs.apps.db import generate, snapshot

# audit events any executed payload would raise (compile is not here: ast.parse raises it by design)
WATCHED = ("exec", "import", "open", "os.", "subprocess.", "socket.", "shutil.", "ctypes.", "sys._getframe")
SEEN: list[str] = []
WATCHING = [False]


def _hook(event: str, args) -> None:
    if WATCHING[0] and event.startswith(WATCHED):
        SEEN.append(event)


sys.addaudithook(_hook)  # hooks cannot be removed; it records only while WATCHING


@pytest.fixture(scope="module")
def canary(tmp_path_factory):
    return tmp_path_factory.mktemp("canary") / "ran"


def payloads(canary: str) -> list[str]:
    run = f"__import__('os').system('touch {canary}')"
    return [
        run,
        f"exec(\"open('{canary}', 'w')\")",
        f"eval({run!r})",
        "().__class__.__base__.__subclasses__()",
        "().__class__.__mro__[1].__subclasses__()[0].__init__.__globals__",
        "contacts.__class__.__dict__",
        "[].__class__.__base__.__subclasses__",
        f"(lambda: {run})()",
        "lambda x: x",
        f"[{run} for _ in range(3)]",
        f"{{k: {run} for k in 'ab'}}",
        f"(x for x in [{run}])",
        f"f'{{{run}}}'",
        f"f'{{open({str(canary)!r}, \"w\")}}'",
        "*[1, 2, 3]",
        f"*[{run}]",
        "**{'query': 'a'}",
        f"**{{'query': {run}}}",
        "'" + "A" * 1_000_000 + "'",
        "[" * 10_000 + "]" * 10_000,
        "(" * 10_000 + "1" + ")" * 10_000,
        "[" * 99 + "]" * 99,
        "-" * 1900 + "1",
        "'; DROP TABLE contacts; --",
        "'\"; DELETE FROM contacts WHERE 1=1; --'",
        "\"' OR '1'='1\"",
        '"x\'); DROP TABLE payments;--"',
        '"%\' OR 1=1 --"',
        "'\\ud800'",
        "'\\x00'",
        "b'bytes'",
        "...",
        "1j",
        "{1, 2}",
        "10**10**10",
        "9" * 1500,
        "__builtins__",
        "globals()",
        "breakpoint()",
        "open",
        "db",
    ]


NAMES = sorted(API) + [
    "os.system",
    "contacts.__init__",
    "contacts.__class__",
    "contacts._db",
    "db.execute",
    "supervisor.__dict__",
    "payments.send_money.__globals__",
    "sys.exit",
    "builtins.exec",
]
KEYS = ["query", "contact_id", "amount", "answer", "page", "text", "x", "__class__"]


def call_lines(canary: str):
    arg = st.sampled_from(payloads(canary))
    one = st.one_of(arg, st.tuples(st.sampled_from(KEYS), arg).map(lambda kv: f"{kv[0]}={kv[1]}"))
    call = st.tuples(st.sampled_from(NAMES), st.lists(one, max_size=3)).map(
        lambda c: f"{c[0]}({', '.join(c[1])})"
    )
    wrapped = st.tuples(st.sampled_from(["", "```", "  ", "Action: "]), call).map("".join)
    noise = st.text(max_size=40)
    return st.lists(st.one_of(wrapped, wrapped, noise), min_size=1, max_size=8).map("\n".join)


TIME_BOUND = 2.0  # seconds for one act(), whatever the text


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(data=st.data())
def test_hostile_actions_never_run_escape_stall_or_leak(data, canary):
    text = data.draw(call_lines(str(canary)))
    task = make_task("train", data.draw(st.integers(0, 5)))
    env = AppsEnv(task)
    env.act("payments.balance()")  # lazily imported code is in memory before the hook watches
    SEEN.clear()
    WATCHING[0] = True
    try:
        t0 = time.perf_counter()
        steps = env.act(text)  # never raises
        took = time.perf_counter() - t0
    finally:
        WATCHING[0] = False
    assert SEEN == [], SEEN
    assert not canary.exists()
    assert took < TIME_BOUND, took
    for s in steps:
        assert isinstance(s.call, str) and isinstance(s.observation, str)
        assert s.observation.startswith(("Error", "{", "[", "Task marked complete")), s.observation[:200]
    after = snapshot(env.db)
    assert set(after) == set(env.initial)  # no table dropped
    # a fresh episode of the same task starts from the same world: nothing leaked through shared state
    again = AppsEnv(task)
    assert snapshot(again.db) == env.initial == snapshot(generate(task.seed))
    assert again.steps == [] and not again.done and again.answer is None


def test_a_huge_text_is_parsed_only_as_far_as_the_step_limit():
    env = AppsEnv(make_task("train", 0))
    text = "contacts.search(query='x')\n" * 400_000  # 10.8 MB
    t0 = time.perf_counter()
    env.act(text)
    assert time.perf_counter() - t0 < 1.0 and env.done and len(env.steps) == env.step_limit


def test_sql_injection_strings_are_values_not_sql():
    env = AppsEnv(make_task("train", 0))
    steps = env.act(
        'contacts.search(query="\'; DROP TABLE contacts; --")\n'
        "contacts.search(query=\"%' OR '1'='1\")\n"
        'notes.search_notes(query="x\') UNION SELECT * FROM payments --")'
    )
    assert [s.observation for s in steps] == ['{"items": [], "page": 0, "has_more": false}'] * 3
    assert snapshot(env.db) == env.initial


@pytest.mark.parametrize(
    "text, needle",
    [
        ("contacts.search(query='\ud800')", "lone surrogate"),  # the raw character, not its escape
        ("contacts.search(\ud800)", "lone surrogate"),
        ("contacts.search(query='a\x00')", "null bytes"),
    ],
)
def test_text_the_parser_cannot_take_is_an_error_observation(text, needle):
    (step,) = AppsEnv(make_task("train", 0)).act(text)
    assert step.observation.startswith("Error") and needle in step.observation
    step.call.encode("utf-8")  # the recorded call is writable text
