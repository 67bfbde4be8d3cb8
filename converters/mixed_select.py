"""Choosing a mixed plan: the budget, the measured plans (frontier) and the choice.

The search starts from the fastest plan (every group at its fastest mode) and moves one group at a time
one mode slower (`GroupOptions.modes`, e.g. static int8 -> dynamic int8 -> int8 weights -> float),
taking the move that buys back the most accuracy per unit of cost: accuracy from each group's
measured drop at each mode (quantized alone, the rest float), cost = the latency ratio it adds (the
target's cost table) plus the weight bytes it adds as a share of the all-float plan's.
When no move recovers anything measured alone but the plan is still over an IoU budget, each group is tried
at float on the whole plan and the one measuring lowest is taken (`Search.stalled_move`).
After every move the whole plan's mask-IoU drop is measured; each measured plan is a point. With an
IoU budget, a backward pass then tries each slowed group back at a faster mode (`tighten`; a move back that
saves only bytes counts too), keeping what measures no worse.
Then, with exactly one budget:
- `max_iou_drop` (default 0.01): the fastest measured plan whose drop is within it, both on the search's
  scenes and, measured again, on scenes the search never saw (`confirm`): the fastest of many plans that
  fit the search's few scenes is, by being picked, the one whose drop those scenes understate most; when none
  holds there, the search runs again for a drop tighter by the overshoot (`search_and_choose`);
- `max_latency_ratio` (encoder latency / fp32): the most accurate measured plan within it;
- `max_size_mb` (weights: int8 1 byte, float layers as the target stores them): the most accurate
  measured plan within it.
Pure Python (no torch): the measuring callables are given by `converters.mixed_plan`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

EXTRA_STEPS = 2  # moves measured past the point that meets an IoU budget (slower alternatives for the frontier)
MAX_STEPS = 60
MAX_TIGHTEN = 40  # backward-pass trials at most (each measures the whole plan once)
BACK = " (back)"  # how a backward-pass trial's move ends
MAX_CONFIRM = 8  # plans within an IoU budget measured again on the confirmation scenes, fastest first
CONFIRM_ROUNDS = 3  # searches again for a tighter drop when no plan held on the confirmation scenes


@dataclass(frozen=True)
class Budget:
    """Exactly one of the three budgets (`Budget.of` checks and defaults)."""

    max_iou_drop: float | None = None
    max_latency_ratio: float | None = None
    max_size_mb: float | None = None

    @classmethod
    def of(cls, max_iou_drop: float | None = None, max_latency_ratio: float | None = None,
           max_size_mb: float | None = None) -> Budget:
        """The budget given; none -> max_iou_drop 0.01; more than one -> a one-line ValueError."""
        given = [n for n, v in (("--max-iou-drop", max_iou_drop), ("--max-latency-ratio", max_latency_ratio),
                                ("--max-size", max_size_mb)) if v is not None]
        if len(given) > 1:
            raise ValueError(f"give one mixed-plan budget, not {len(given)}: {', '.join(given)}")
        if not given:
            max_iou_drop = 0.01
        if max_iou_drop is not None and not 0.0 <= max_iou_drop < 1.0:
            raise ValueError(f"--max-iou-drop must be in [0, 1), got {max_iou_drop}")
        if max_latency_ratio is not None and not 0.0 < max_latency_ratio <= 10.0:
            raise ValueError(f"--max-latency-ratio must be in (0, 10], got {max_latency_ratio}")
        if max_size_mb is not None and max_size_mb <= 0:
            raise ValueError(f"--max-size must be a positive number of MB, got {max_size_mb}")
        return cls(max_iou_drop, max_latency_ratio, max_size_mb)

    @property
    def kind(self) -> str:
        """"iou_drop", "latency_ratio" or "size_mb"."""
        if self.max_iou_drop is not None:
            return "iou_drop"
        return "latency_ratio" if self.max_latency_ratio is not None else "size_mb"

    @property
    def limit(self) -> float:
        """The budget's value."""
        return {"iou_drop": self.max_iou_drop, "latency_ratio": self.max_latency_ratio,
                "size_mb": self.max_size_mb}[self.kind]

    def fits(self, p: PlanPoint) -> bool:
        """The measured plan `p` is within the budget."""
        return getattr(p, self.kind) <= self.limit + 1e-12

    def describe(self) -> str:
        """One phrase, e.g. "mask IoU drop <= 0.01"."""
        return {"iou_drop": f"mask IoU drop <= {self.limit:g}", "latency_ratio": f"encoder latency <= {self.limit:g} x fp32",
                "size_mb": f"weights <= {self.limit:g} MB"}[self.kind]


@dataclass(frozen=True)
class PlanPoint:
    """One measured plan: group -> mode, its measured IoU drop, predicted latency ratio and weight size."""

    choice: Mapping[str, str]
    iou_drop: float
    latency_ratio: float
    size_mb: float
    latency_ms: float | None = None
    step: int = 0
    move: str = "fastest plan"
    confirm_drop: float | None = None  # IoU drop on the confirmation scenes (`choose`), where measured

    def to_dict(self, with_choice: bool = False) -> dict:
        """Manifest form (the group modes only when asked: the chosen plan carries them)."""
        d = {"step": self.step, "move": self.move, "iou_drop": round(self.iou_drop, 6),
             "latency_ratio": round(self.latency_ratio, 4), "size_mb": round(self.size_mb, 3),
             "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
             "mode_counts": _counts(self.choice)}
        if self.confirm_drop is not None:
            d["confirm_iou_drop"] = round(self.confirm_drop, 6)
        if with_choice:
            d["groups"] = dict(self.choice)
        return d


def _counts(choice: Mapping[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in choice.values():
        out[m] = out.get(m, 0) + 1
    return out


@dataclass
class Search:
    """The group options and the measuring callables of one target."""

    modes: Mapping[str, tuple[str, ...]]                 # group -> its modes, slowest first
    isolated: Mapping[tuple[str, str], float]            # (group, mode) -> IoU drop quantized alone
    evaluate: Callable[[dict[str, str]], float]          # group -> mode: measured IoU drop of the whole plan
    cost: Callable[[dict[str, str]], tuple[float, float, float | None]]  # -> (latency ratio, size MB, ms or None)
    points: list[PlanPoint] = field(default_factory=list)

    def point(self, choice: dict[str, str], step: int, move: str) -> PlanPoint:
        """Measure `choice` and record it."""
        ratio, size, ms = self.cost(choice)
        p = PlanPoint(dict(choice), float(self.evaluate(choice)), ratio, size, ms, step, move)
        self.points.append(p)
        return p

    @cached_property
    def float_size_mb(self) -> float:
        """Weight size of the all-float plan (the unit of a move's size cost)."""
        return self.cost({g: ms[0] for g, ms in self.modes.items()})[1]

    def price(self, before: tuple[float, float, float | None], after: tuple[float, float, float | None]) -> float:
        """What going from a plan costing `before` to one costing `after` (`cost` tuples) costs: the latency ratio
        it adds plus the weight size it adds as a share of the all-float plan's (so layers that cost no encoder
        time, the decoder's, still pay for their bytes)."""
        return max(after[0] - before[0], 0.0) + max(after[1] - before[1], 0.0) / self.float_size_mb

    def next_move(self, choice: dict[str, str], budget: Budget) -> tuple[str, str] | None:
        """(group, slower mode) that recovers the most drop measured alone per `price`, within a cost budget.
        Any slower mode of a group is a candidate (a jump past a mode that measured worse alone)."""
        now = self.cost(choice)
        best, best_score = None, 0.0
        for g, mode in choice.items():
            modes = self.modes[g]
            for slower in modes[: modes.index(mode)]:
                benefit = self.isolated.get((g, mode), 0.0) - self.isolated.get((g, slower), 0.0)
                if benefit <= 0:
                    continue
                trial = self.cost({**choice, g: slower})
                if budget.kind == "latency_ratio" and trial[0] > budget.limit:
                    continue
                if budget.kind == "size_mb" and trial[1] > budget.limit:
                    continue
                score = benefit / (self.price(now, trial) + 1e-4)
                if score > best_score:
                    best, best_score = (g, slower), score
        return best

    def stalled_move(self, choice: dict[str, str]) -> tuple[str, str] | None:
        """The move when no candidate recovers anything measured alone but the plan is still over an IoU budget
        (drops alone come from few scenes, and groups interact): each group not yet at its slowest mode is tried
        there on the whole plan, and the one whose plan measures the lowest drop is taken, if it is lower than
        now; else the group with the largest drop alone goes to its slowest mode. The trials are not recorded
        as plans (the one taken is, as the search's next step)."""
        now, best = self.evaluate(choice), None
        for g, mode in choice.items():
            slowest = self.modes[g][0]
            if mode != slowest:
                drop = float(self.evaluate({**choice, g: slowest}))
                if drop < now - 1e-12:
                    best, now = (g, slowest), drop
        if best is not None:
            return best
        left = [(self.isolated.get((g, m), 0.0), g) for g, m in choice.items() if m != self.modes[g][0]]
        return (max(left)[1], self.modes[max(left)[1]][0]) if left else None


def tighten(search: Search, start: PlanPoint, budget: Budget, step: int, max_trials: int = MAX_TIGHTEN) -> None:
    """Backward pass from `start` (a plan within an IoU budget): each group the forward search slowed is
    tried back at a faster mode, the biggest predicted gain first (latency, and bytes as a share of the all-float
    plan's: a decoder group costs no encoder time but its float weights still weigh); the next trials build on a trial
    only when the whole plan, measured again, is no worse than before it (and within the budget): early
    moves taken while the plan was far over budget are often not needed once later moves fixed the layers
    that mattered. Every trial is a measured plan the budget may choose. (Building on every trial that
    merely stayed within the budget walked the plan to the budget's edge on its few scenes, and lost 0.014
    of mask agreement on the held-out ones.)"""
    choice, drop = dict(start.choice), start.iou_drop
    now = search.cost(choice)
    trials = []
    for g, mode in choice.items():
        modes = search.modes[g]
        for faster in modes[modes.index(mode) + 1:]:
            gain = search.price(search.cost({**choice, g: faster}), now)  # what the forward move cost
            if gain > 1e-9:
                trials.append((gain, g, faster))
    done: set[str] = set()
    for _, g, faster in sorted(trials, key=lambda t: -t[0])[:max_trials]:
        if g in done:
            continue
        trial = {**choice, g: faster}
        step += 1
        p = search.point(trial, step, f"{g} -> {faster}{BACK}")
        if p.iou_drop <= min(drop, budget.limit) + 1e-12:
            choice, drop = trial, p.iou_drop
            done.add(g)


def search_plans(search: Search, budget: Budget, max_steps: int = MAX_STEPS) -> list[PlanPoint]:
    """Measured plans from the fastest one, one move at a time, then (IoU budget) the backward pass
    `tighten` from the fastest plan that met the budget (see the module docstring)."""
    choice = {g: ms[-1] for g, ms in search.modes.items()}
    p = search.point(choice, 0, "fastest plan: every group at its fastest mode")
    extra = 0
    for step in range(1, max_steps + 1):
        if budget.kind == "iou_drop" and p.iou_drop <= budget.limit:
            if extra >= EXTRA_STEPS:
                break
            extra += 1
        move = search.next_move(choice, budget)
        if move is None and budget.kind == "iou_drop" and p.iou_drop > budget.limit:
            move = search.stalled_move(choice)
        if move is None:
            break
        g, mode = move
        choice = {**choice, g: mode}
        p = search.point(choice, step, f"{g} -> {mode}")
    within = [q for q in search.points if budget.kind == "iou_drop" and budget.fits(q)]
    if within:
        tighten(search, min(within, key=lambda q: q.latency_ratio), budget, search.points[-1].step)
    return search.points


@dataclass(frozen=True)
class Choice:
    """The chosen plan, the best rejected alternatives and the frontier of the measured plans."""

    chosen: PlanPoint
    rejected: list[PlanPoint]
    frontier: list[PlanPoint]
    budget: Budget
    points: list[PlanPoint] = field(default_factory=list)  # every measured plan, confirmation drops included


def _beats(q: PlanPoint, p: PlanPoint) -> bool:
    """`q` is no slower and no less accurate than `p` and better on one of them; at equal speed and accuracy,
    smaller."""
    lat, drop = q.latency_ratio - p.latency_ratio, q.iou_drop - p.iou_drop
    if abs(lat) <= 1e-12 and abs(drop) <= 1e-12:
        return q.size_mb < p.size_mb - 1e-9
    return lat <= 1e-12 and drop <= 1e-12


def frontier(points: list[PlanPoint]) -> list[PlanPoint]:
    """Measured plans no other plan beats on latency ratio and IoU drop (size breaks a tie), by latency."""
    out = [p for p in points if not any(_beats(q, p) for q in points)]
    return sorted(out, key=lambda p: (p.latency_ratio, p.iou_drop, p.size_mb))


def choose(points: list[PlanPoint], budget: Budget, rejected: int = 3,
           confirm: Callable[[PlanPoint], float] | None = None) -> Choice:
    """The plan the budget picks among `points` (ValueError naming the closest plan if none fits).

    With an IoU budget and `confirm` (a plan -> its IoU drop on other scenes), the frontier plans within the budget
    are measured again fastest first (at most `MAX_CONFIRM`) and the first whose confirmation drop is within it too
    is chosen; if none is, the one with the smallest worse-of-both drop (its `confirm_drop` says so)."""
    if not points:
        raise ValueError("no measured mixed plan to choose from")
    fits = [p for p in points if budget.fits(p)]
    if not fits:
        near = min(points, key=lambda p: getattr(p, budget.kind))
        raise ValueError(f"no measured mixed plan within {budget.describe()}: the closest has "
                         f"{budget.kind.replace('_', ' ')} {getattr(near, budget.kind):.4g}")
    if budget.kind == "iou_drop":
        order = frontier(fits)  # by latency; a plan another beats on both counts is never the better pick
        chosen = order[0]
        if confirm is not None:
            tried = {id(p): replace(p, confirm_drop=float(confirm(p))) for p in order[:MAX_CONFIRM]}
            held = [t for t in tried.values() if t.confirm_drop <= budget.limit + 1e-12]
            chosen = held[0] if held else min(tried.values(), key=lambda t: max(t.iou_drop, t.confirm_drop))
            points = [tried.get(id(p), p) for p in points]
        better = sorted((p for p in points if p.latency_ratio < chosen.latency_ratio), key=lambda p: -p.latency_ratio)
    else:
        chosen = min(fits, key=lambda p: (p.iou_drop, p.latency_ratio))
        better = sorted((p for p in points if p.iou_drop < chosen.iou_drop), key=lambda p: -p.iou_drop)
    others = better[:rejected] + [p for p in points if budget.fits(p) and p is not chosen and p not in better][
        : max(0, rejected - len(better))]
    return Choice(chosen, others[:rejected], frontier(points), budget, points)


def _unique(points: list[PlanPoint]) -> list[PlanPoint]:
    """`points` without the repeats of a plan (a later search passes measured plans again; first kept)."""
    seen: set[tuple] = set()
    out = []
    for p in points:
        key = tuple(sorted(p.choice.items()))
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def search_and_choose(search: Search, budget: Budget, confirm: Callable[[PlanPoint], float] | None = None) -> Choice:
    """`search_plans` then `choose`. With an IoU budget and `confirm`: when no plan within the budget holds on
    the confirmation scenes, the search runs again for a drop tighter by the overshoot (measured plans are
    cached), at most `CONFIRM_ROUNDS` times; the choice is always made against the budget itself."""
    def round_(limit: float) -> Choice:
        search_plans(search, Budget.of(max_iou_drop=limit) if budget.kind == "iou_drop" else budget)
        return choose(_unique(search.points), budget, confirm=confirm if budget.kind == "iou_drop" else None)

    limit = budget.limit
    picked = round_(limit)
    for _ in range(CONFIRM_ROUNDS):
        again = picked.chosen.confirm_drop
        if again is None or again <= budget.limit + 1e-12:
            break
        limit = min(limit, picked.chosen.iou_drop) * budget.limit / again
        picked = round_(limit)
    return picked
