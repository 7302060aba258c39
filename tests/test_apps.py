import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from teamtune.envs.apps import API, TEMPLATES, UNSEEN, AppsEnv, docs, evaluate, make_task, make_tasks
from teamtune.envs.apps.actions import BadCall, parse_actions, parse_call
from teamtune.envs.apps.world import templates_for


def solve(task, calls=None):
    env = AppsEnv(task)
    env.act("\n".join(task.gold_calls() if calls is None else calls))
    return env, evaluate(env)


@pytest.mark.parametrize("split", ["train", "dev", "test", "test_unseen"])
def test_gold_solutions_succeed(split):
    n = 3 * len(templates_for(split))  # every template on three worlds
    for task in make_tasks(split, n):
        env, out = solve(task)
        assert out.success and all(out.subtask_success) and not out.collateral, (task.id, task.template, out)
        assert not any(s.observation.startswith("Error") for s in env.steps), task.id
        assert 1 <= len(task.subtasks) <= 8


def test_templates_and_splits():
    assert len(TEMPLATES) >= 30
    seen = {make_task(s, i).template for s in ("train", "dev", "test") for i in range(60)}
    unseen = {make_task("test_unseen", i).template for i in range(30)}
    assert unseen == set(UNSEEN) and not seen & unseen
    seeds = {s: {make_task(s, i).seed for i in range(200)} for s in ("train", "dev", "test", "test_unseen")}
    assert (
        not seeds["train"] & seeds["dev"]
        and not seeds["dev"] & seeds["test"]
        and not seeds["train"] & seeds["test"]
    )
    multi_app = {
        t.template for t in make_tasks("train", 48) if len({s.app for s in t.subtasks} - {"supervisor"}) >= 2
    }
    assert len(multi_app) >= 6
    assert make_task("dev", 5).to_dict() == make_task("dev", 5).to_dict()  # reproducible


def first_task(template, split="train"):
    return next(t for t in make_tasks(split, 200) if t.template == template)


def test_partial_solution_fails_on_the_right_subtask():
    task = first_task("pay_back_friends")
    calls = [c for s in task.subtasks[:-1] for c in s.calls] + [task.final_call()]  # forgets the last text
    _, out = solve(task, calls)
    assert (
        not out.success
        and out.first_failed == len(task.subtasks) - 1
        and out.subtask_success[:-1] == [True] * (len(task.subtasks) - 1)
    )
    task = first_task("buy_two")
    calls = [c for s in task.subtasks if s.kind != "lookup" for c in s.calls] + [task.final_call()]
    _, out = solve(task, calls)  # acts without looking anything up: state right, lookups not done
    assert out.success and out.subtask_success[0] is False and out.first_failed == 0


def test_nothing_done_fails_every_subtask():
    for task in make_tasks("dev", 60):
        _, out = solve(task, [task.final_call()])
        assert out.subtask_success[-1] is False or task.subtasks[-1].kind == "answer", task.template
        assert not any(
            ok for ok, sub in zip(out.subtask_success, task.subtasks, strict=True) if sub.kind != "answer"
        ), (task.template, out.subtask_success)


def test_wrong_answer_and_collateral_damage_are_caught():
    task = first_task("count_liked")
    _, out = solve(task, [*task.subtasks[0].calls, "supervisor.complete(answer='999')"])
    assert not out.success and not out.answer_ok and out.first_failed == 1
    task = first_task("text_contact")
    extra = "notes.create_note(title='oops', body='not asked for')"
    _, out = solve(task, [*task.gold_calls()[:-1], extra, task.final_call()])
    assert not out.success and all(out.subtask_success) and any("notes" in c for c in out.collateral)
    task = first_task("delete_contact")
    wrong = json.loads(AppsEnv(task).act("contacts.search(query='')")[0].observation)["items"]
    victim = next(c["id"] for c in wrong if f"contact_id={c['id']})" not in task.subtasks[1].calls[0])
    _, out = solve(task, [f"contacts.delete(contact_id={victim})", task.final_call()])
    assert not out.success and out.collateral and out.first_failed == 0


@pytest.mark.parametrize(
    "line,needle",
    [
        ("contacts.search(query=", "not a valid call"),
        ("contacts.search(query=__import__('os').system('ls'))", "plain values"),
        ("contacts.nope()", "unknown API contacts.nope"),
        ("contacts.get(contact_id='seven')", "contact_id must be int"),
        ("contacts.get(contact_id=99999)", "no contact with id 99999"),
        ("contacts.get(1, 2)", "too many positional"),
        ("payments.send_money(contact_id=1, amount=10**9)", "plain values"),
        ("payments.send_money(contact_id=1, amount=1e12)", "insufficient balance"),
        ("shopping.checkout()", "the cart is empty"),
        ("contacts.search(**{'query': 'a'})", "** arguments"),
    ],
)
def test_malformed_calls_become_error_observations(line, needle):
    env = AppsEnv(make_task("dev", 0))
    before = env.initial
    steps = env.act(line)
    assert len(steps) == 1 and steps[0].observation.startswith("Error") and needle in steps[0].observation
    from teamtune.envs.apps.db import snapshot

    assert snapshot(env.db) == before  # a refused call changes nothing


def test_step_limit_and_completion():
    env = AppsEnv(make_task("dev", 1), step_limit=3)
    env.act("\n".join(["payments.balance()"] * 5))
    assert env.done and len(env.steps) == 3
    env = AppsEnv(make_task("dev", 1))
    env.act("Thought: done.\nsupervisor.complete(answer=42)\ncontacts.delete(contact_id=1)")
    assert env.done and env.answer == "42" and len(env.steps) == 1  # nothing runs after completion


def test_docs_list_every_api():
    text = docs()
    for name in API:
        assert name + "(" in text
    assert "supervisor.complete" in text and "contacts.search(query: str = ''" in text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_fuzzed_text_never_escapes(text):
    env = AppsEnv(make_task("train", 0))
    env.act(text)  # never raises
    for s in env.steps:
        assert s.observation.startswith(("Error", "{", "[", "Task marked complete"))


names = st.sampled_from(sorted(API) + ["os.system", "supervisor.complete", "contacts.__class__"])
values = st.one_of(
    st.integers(-5, 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(
    names,
    st.lists(values, max_size=3),
    st.dictionaries(
        st.sampled_from(["query", "contact_id", "amount", "page", "song_id", "date", "text", "x"]),
        values,
        max_size=3,
    ),
)
def test_fuzzed_calls_never_raise(name, args, kwargs):
    line = f"{name}({', '.join([repr(a) for a in args] + [f'{k}={v!r}' for k, v in kwargs.items()])})"
    call = parse_call(line)
    env = AppsEnv(make_task("train", 1))
    steps = env.act(line)
    assert isinstance(call, BadCall) or len(steps) == 1
    assert all(isinstance(s.observation, str) for s in steps)


def test_parse_actions_ignores_prose():
    text = "I will look them up.\n```\ncontacts.search(query='Chen')\n```\nThen pay: payments.balance()"
    calls = parse_actions(text)
    assert [str(c) for c in calls] == ["contacts.search(query='Chen')"]
