"""ibtoolkit.parallel beyond the sweep tests: per-call worker state and errors raised with their type.

The engine's outcomes, order, dead workers and progress are tested in tests/test_sweep.py (through
the experiments' names, which are these).
"""
import pytest

from ibtoolkit.parallel import Engine, Task, drop_worker_state, worker_state


class Boom(ValueError):
    pass


def _explode(i):
    if i == 2:
        raise Boom(f"task {i} failed")
    return i


def test_worker_state_is_built_once_per_call_token():
    built = []

    def build():
        built.append(1)
        return {"n": len(built)}

    first = worker_state("call-a", build)
    assert worker_state("call-a", build) is first and len(built) == 1  # reused by the call's later tasks
    assert worker_state("call-b", build) == {"n": 2}                   # a new call builds its own
    drop_worker_state("call-a")                                         # not the current one: kept
    assert worker_state("call-b", build) == {"n": 2} and len(built) == 2
    drop_worker_state("call-b")
    assert worker_state("call-b", build) == {"n": 3}
    drop_worker_state("call-b")


@pytest.mark.parametrize("jobs", [1, 2])
def test_capture_false_raises_the_task_error_with_its_type(jobs):
    tasks = [Task("t", str(i), _explode, (i,)) for i in range(4)]
    with Engine(jobs=jobs) as engine:
        outcomes = engine.map(tasks)
        assert [o.ok for o in outcomes] == [True, True, False, True]
        assert outcomes[2].error.startswith("Boom: task 2 failed")
        with pytest.raises(Boom, match="task 2 failed"):
            engine.map(tasks, capture=False)
