"""The order of steps: file order, `needs`, cycles."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agent.plan import dag


def test_file_order_with_implicit_previous_step_edges() -> None:
    g = dag.build_graph(["a", "b", "c"], [None, None, None])
    assert g.order == ["a", "b", "c"]
    assert g.after == {"a": [], "b": ["a"], "c": ["b"]}
    assert g.needs == {"a": [], "b": [], "c": []}
    reach = dag.Reach(g)
    assert [reach.ancestors(s) for s in "abc"] == [[], ["a"], ["a", "b"]]
    assert reach.before("a", "c") and not reach.before("c", "a")


def test_needs_empty_makes_a_root() -> None:
    g = dag.build_graph(["a", "b", "c"], [None, [], None])
    assert g.after["b"] == []
    reach = dag.Reach(g)
    assert reach.ancestors("b") == []
    assert reach.ancestors("c") == ["b"]
    assert not reach.before("a", "c")
    assert g.order == ["a", "b", "c"]


def test_needs_reorders_but_keeps_file_order_where_it_can() -> None:
    g = dag.build_graph(["a", "b", "c", "d"], [["c"], [], [], ["a"]])
    assert g.order == ["b", "c", "a", "d"]
    assert g.needs["a"] == ["c"]
    reach = dag.Reach(g)
    assert reach.ancestors("d") == ["c", "a"]
    assert "c" in dag.Earlier(reach, "d") and "b" not in dag.Earlier(reach, "d")
    assert "d" in dag.Earlier(reach, "d", inclusive=True)


def test_find_cycle_names_the_steps_in_run_order() -> None:
    # Each arrow reads "runs before": b needs a, c needs b, a needs c.
    assert dag.find_cycle({"a": ["b"], "b": ["a"]}) == ["a", "b", "a"]
    assert dag.find_cycle({"a": ["c"], "b": ["a"], "c": ["b"]}) == ["a", "b", "c", "a"]
    assert dag.find_cycle({"a": ["a"]}) == ["a", "a"]
    assert dag.find_cycle({"a": [], "b": ["a"], "c": ["b", "a"]}) is None
    assert dag.find_cycle({"a": ["zz"]}) is None


def _earliest_ready_first(ids: list[str], after: dict[str, list[str]]) -> list[str]:
    """The order's definition, spelled out slowly: among the steps whose predecessors have
    all run, the one that comes first in the file runs next."""
    order: list[str] = []
    pending = list(ids)
    while pending:
        ready = [s for s in pending if all(d in order for d in after[s])]
        order.append(ready[0])
        pending.remove(ready[0])
    return order


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_order_is_the_earliest_ready_step_first(data: st.DataObject) -> None:
    n = data.draw(st.integers(min_value=1, max_value=12))
    ids = [f"s{i}" for i in range(n)]
    needs: list[list[str] | None] = []
    for i in range(n):
        # Needs only point at steps earlier in some fixed permutation, so there is no cycle.
        earlier = ids[:i]
        choice = data.draw(st.one_of(st.none(), st.lists(st.sampled_from(earlier or ["x"]))))
        needs.append(None if choice is None or not earlier else sorted(set(choice)))
    perm = data.draw(st.permutations(list(range(n))))
    file_ids = [ids[j] for j in perm]
    file_needs = [needs[j] for j in perm]
    after = {
        sid: list(need) if need is not None else file_ids[i - 1 : i]
        for i, (sid, need) in enumerate(zip(file_ids, file_needs, strict=True))
    }
    # Implicit previous-step edges of the shuffled file can close a cycle.
    assume(dag.find_cycle(after) is None)
    g = dag.build_graph(file_ids, file_needs)
    assert g.order == _earliest_ready_first(file_ids, g.after)
    # Reachability asked in a drawn order (the memo is shared across questions) agrees with
    # the transitive closure spelled out.
    closure: dict[str, set[str]] = {}
    for sid in g.order:
        closure[sid] = set(g.after[sid]).union(*(closure[d] for d in g.after[sid]))
    reach = dag.Reach(g)
    pairs = data.draw(st.permutations([(a, b) for a in ids for b in ids]))
    assert [reach.before(a, b) for a, b in pairs] == [a in closure[b] for a, b in pairs]
    assert {b: set(reach.ancestors(b)) for b in ids} == closure


def test_unknown_need_is_named() -> None:
    with pytest.raises(ValueError, match=r"^step 'a' needs unknown step 'zz'$"):
        dag.build_graph(["a"], [["zz"]])
