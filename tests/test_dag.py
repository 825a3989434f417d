"""The order of steps: file order, `needs`, cycles."""

from __future__ import annotations

from agent.plan import dag


def test_file_order_with_implicit_previous_step_edges() -> None:
    g = dag.build_graph(["a", "b", "c"], [None, None, None])
    assert g.order == ["a", "b", "c"]
    assert g.after == {"a": [], "b": ["a"], "c": ["b"]}
    assert g.needs == {"a": [], "b": [], "c": []}
    assert g.ancestors == {"a": set(), "b": {"a"}, "c": {"a", "b"}}


def test_needs_empty_makes_a_root() -> None:
    g = dag.build_graph(["a", "b", "c"], [None, [], None])
    assert g.after["b"] == []
    assert g.ancestors["b"] == set()
    assert g.ancestors["c"] == {"b"}
    assert g.order == ["a", "b", "c"]


def test_needs_reorders_but_keeps_file_order_where_it_can() -> None:
    g = dag.build_graph(["a", "b", "c", "d"], [["c"], [], [], ["a"]])
    assert g.order == ["b", "c", "a", "d"]
    assert g.needs["a"] == ["c"]
    assert g.ancestors["d"] == {"a", "c"}


def test_find_cycle_names_the_steps_in_run_order() -> None:
    # Each arrow reads "runs before": b needs a, c needs b, a needs c.
    assert dag.find_cycle({"a": ["b"], "b": ["a"]}) == ["a", "b", "a"]
    assert dag.find_cycle({"a": ["c"], "b": ["a"], "c": ["b"]}) == ["a", "b", "c", "a"]
    assert dag.find_cycle({"a": ["a"]}) == ["a", "a"]
    assert dag.find_cycle({"a": [], "b": ["a"], "c": ["b", "a"]}) is None
    assert dag.find_cycle({"a": ["zz"]}) is None
