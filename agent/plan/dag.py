"""Execution order: file order by default, `needs` for a DAG; cycles named step by step."""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

__all__ = ["Earlier", "Graph", "Reach", "build_graph", "find_cycle", "implied_after"]


@dataclass
class Graph:
    """The steps' dependencies.

    A step without `needs` runs after the step before it in the file, whatever that step's
    status (a runbook reads top to bottom, like the action plan it replaces). `needs: [a, b]`
    replaces that with real dependencies: the step runs only if a and b succeeded.
    `needs: []` makes a step independent.
    """

    order: list[str]
    needs: dict[str, list[str]]  # explicit: must have succeeded
    after: dict[str, list[str]]  # every ordering edge, explicit or implied by file order
    # Each step's place in `order`. No set of ancestors per step: a 10,000-step chain held
    # 50 M set entries that way (2.4 GB); `Reach` answers "does a run before b" on demand.
    rank: dict[str, int] = field(default_factory=dict)


class Reach:
    """Answers "does step a run before step b in every order", remembering what it walked.

    A walk goes back from b along `after` and never below a's rank, so a reference to the
    step before costs one edge. What a walk learns is kept per target step, so many steps
    reading one early step walk the chain once: memory grows with the references, not with
    the square of the steps.
    """

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self._known: dict[str, dict[str, bool]] = {}

    def before(self, a: str, b: str) -> bool:
        """Whether `a` is an ancestor of `b` (both steps of the graph)."""
        rank = self.graph.rank
        floor = rank[a]
        if rank[b] <= floor:
            return False
        known = self._known.setdefault(a, {a: True})
        after = self.graph.after
        # Iterative DFS: a node on the stack when `a` is found reaches it; a node whose
        # edges are all walked without finding it does not.
        stack: list[tuple[str, Iterator[str]]] = [(b, iter(after[b]))]
        seen = {b}
        while stack:
            node, edges = stack[-1]
            for dep in edges:
                if rank[dep] < floor or dep in seen:
                    continue
                hit = known.get(dep)
                if hit is True:
                    for n, _ in stack:
                        known[n] = True
                    return True
                if hit is None:
                    seen.add(dep)
                    stack.append((dep, iter(after[dep])))
                    break
            else:
                known[node] = False
                stack.pop()
        return False

    def ancestors(self, b: str) -> list[str]:
        """Every step that runs before `b`, in run order (walked once, for a hint)."""
        seen: set[str] = set()
        todo = list(self.graph.after[b])
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(self.graph.after[n])
        return sorted(seen, key=self.graph.rank.__getitem__)


@dataclass(frozen=True)
class Earlier:
    """The steps that run before `step` in every order (and `step` itself when `inclusive`)."""

    reach: Reach
    step: str
    inclusive: bool = False

    def __contains__(self, sid: object) -> bool:
        if not isinstance(sid, str) or sid not in self.reach.graph.rank:
            return False
        return (self.inclusive and sid == self.step) or self.reach.before(sid, self.step)

    def __iter__(self) -> Iterator[str]:
        yield from self.reach.ancestors(self.step)
        if self.inclusive:
            yield self.step


def find_cycle(after: dict[str, list[str]]) -> list[str] | None:
    """Return a cycle as a path `[a, b, a]` whose arrows read "runs before", or None.

    Args:
        after: each node's predecessors.

    Returns:
        The first cycle found in node order, or None when the graph is acyclic.
    """
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(after, white)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        color[node] = grey
        stack.append(node)
        for dep in after.get(node, []):
            if dep not in color:
                continue
            if color[dep] == grey:
                cycle = [*stack[stack.index(dep) :], dep]
                cycle.reverse()
                return cycle
            if color[dep] == white and (found := visit(dep)) is not None:
                return found
        stack.pop()
        color[node] = black
        return None

    for node in after:
        if color[node] == white and (found := visit(node)) is not None:
            return found
    return None


def implied_after(ids: Sequence[str], needs: Sequence[list[str] | None]) -> dict[str, list[str]]:
    """What each step runs after: its `needs`, or, without them, the step before it in the file.

    Args:
        ids: step ids in file order.
        needs: each step's `needs` (None when the step does not say).

    Returns:
        {step id: the steps it waits for}.
    """
    return {
        sid: list(need) if need is not None else list(ids[i - 1 : i])
        for i, (sid, need) in enumerate(zip(ids, needs, strict=True))
    }


def build_graph(ids: Sequence[str], needs: Sequence[list[str] | None]) -> Graph:
    """Build the graph of steps given in file order (ids unique, needs known, no cycle).

    Args:
        ids: step ids in file order.
        needs: each step's `needs` (None when the step does not say).

    Returns:
        The graph, with a topological order that keeps file order where it can.
    """
    explicit = {sid: list(need or []) for sid, need in zip(ids, needs, strict=True)}
    after = implied_after(ids, needs)
    # Kahn's algorithm, the ready steps in a heap by file position: the earliest ready step
    # goes first. Rescanning every pending step per pick was quadratic (26 ms of `plan` for
    # 200 steps, cProfile).
    waiting = {sid: len(set(after[sid])) for sid in ids}
    dependents: dict[str, list[str]] = {sid: [] for sid in ids}
    for sid in ids:
        for dep in set(after[sid]):
            if dep not in dependents:  # the loader names unknown steps first; a caller may not
                raise ValueError(f"step {sid!r} needs unknown step {dep!r}")
            dependents[dep].append(sid)
    ready = [(i, sid) for i, sid in enumerate(ids) if not waiting[sid]]
    heapq.heapify(ready)
    position = {sid: i for i, sid in enumerate(ids)}
    order: list[str] = []
    while ready:
        _, nxt = heapq.heappop(ready)
        order.append(nxt)
        for child in dependents[nxt]:
            waiting[child] -= 1
            if not waiting[child]:
                heapq.heappush(ready, (position[child], child))
    if len(order) < len(ids):  # a cycle; build_graph's callers check find_cycle first
        raise ValueError(f"cycle among {[s for s in ids if waiting[s]]}")
    rank = {sid: i for i, sid in enumerate(order)}
    return Graph(order=order, needs=explicit, after=after, rank=rank)
