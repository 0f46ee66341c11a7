"""Can a critical-value method reject at all, with this reference ensemble and test set?

α̂'s KS test rejects when ``√(nm/(n+m))·d(0) > c``. The distance ``d(0)`` is at most 1, so
a method whose critical value ``c`` is at least ``√(nm/(n+m))`` — equivalently whose
threshold ``τ = c/√(nm/(n+m))`` on the distance axis is at least 1 — can never reject, and
its "0 % flagged" says nothing about the candidates. That happens with small ensembles:
the bootstrap critical value grows as the reference has fewer seeds (6.67 with M = 4 in a
measured case, against a largest possible statistic of about 4), and leave-one-out's rank
test needs ``M ≥ ⌈1/level⌉ − 1`` reference models before its smallest p-value,
``1/(M + 1)``, can reach the level.

:func:`assess` answers per method from ``M``, ``n`` and the level (and, for the bootstrap,
its computed critical value); the outputs comparator uses it to choose the headline method
and to word the verdict, and :func:`recipe_warnings` lets ``validate`` warn before anything
is computed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from scipy import stats


@dataclass(frozen=True)
class MethodPower:
    """Whether ``method`` can reject at ``level`` with ``M`` reference models of ``n`` test
    outputs each: ``can_reject`` is None while unknown (a bootstrap before its critical
    value is computed); ``max_statistic`` is ``√(nm/(n+m))`` with ``m = M·n``, the largest
    value the scaled KS statistic can take; ``reason`` says why in one sentence."""

    method: str
    can_reject: bool | None
    level: float
    n_reference: int
    n_test: int
    max_statistic: float
    critical_value: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def loo_min_models(level: float) -> int:
    """The fewest reference models with which leave-one-out can reject at ``level``."""
    return math.ceil(1.0 / level - 1.0 - 1e-12)


def assess(method: str, *, n_reference: int, n_test: int, level: float,
           critical_value: float | None = None) -> MethodPower:
    """Can ``method`` reject at ``level``? See the module docstring."""
    M, n = int(n_reference), int(n_test)
    m = M * n
    max_stat = math.sqrt(n * m / (n + m)) if n and m else 0.0
    if method == "asymptotic" and critical_value is None:
        critical_value = float(stats.kstwobign.ppf(1.0 - level))
    if method == "leave-one-out" and M < loo_min_models(level):
        return MethodPower(method, False, level, M, n, max_stat, critical_value,
                           f"leave-one-out needs at least {loo_min_models(level)} reference "
                           f"models to reject at level {level} (its smallest p-value is "
                           f"1/(M + 1) = 1/{M + 1}); the reference has {M}")
    if method == "bootstrap" and M < 2:
        return MethodPower(method, False, level, M, n, max_stat, critical_value,
                           "the bootstrap needs at least 2 reference models")
    if critical_value is None:
        return MethodPower(method, None, level, M, n, max_stat, None,
                           f"{method}: known once its critical value is computed")
    if critical_value >= max_stat:
        return MethodPower(method, False, level, M, n, max_stat, critical_value,
                           f"the {method} critical value {critical_value:.3g} is at least the "
                           f"largest possible statistic √(nm/(n+m)) = {max_stat:.3g} "
                           f"(M = {M} reference models, n = {n} test points), so no "
                           "candidate can be flagged")
    return MethodPower(method, True, level, M, n, max_stat, critical_value,
                       f"{method} can reject: critical value {critical_value:.3g} below the "
                       f"largest possible statistic {max_stat:.3g}")


def recipe_warnings(recipe: Any) -> list[str]:
    """What ``validate`` can tell before anything runs: methods that cannot reject with the
    reference ensemble's size when the reference is a heads (or fine-tuning) group whose
    number of seeds the recipe states."""
    cmp = recipe.compare
    if cmp is None or not isinstance(cmp.reference, str):
        return []
    groups = [g for section in (getattr(recipe, "heads", None),
                                getattr(recipe, "finetune", None)) if section is not None
              for g in section.groups]
    group = next((g for g in groups if g.name == cmp.reference), None)
    if group is None:
        return []
    out = []
    for method in cmp.methods:
        if method == "asymptotic":
            continue  # with M models of n outputs it rejects unless n is tiny
        power = assess(method, n_reference=group.seeds, n_test=1_000_000, level=cmp.level)
        if power.can_reject is False:
            out.append(f"compare.methods: {power.reason} (group '{group.name}', "
                       f"{group.seeds} seeds)")
    return out
