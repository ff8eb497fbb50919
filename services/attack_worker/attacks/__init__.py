"""The attacks this worker can run, by their YAML names.

An attack is a module with `run(args, runtime) -> Scores` (see `base.py`).
Register it here to make the worker run it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from privaudit.services.attack_worker.attacks import baseline, label_only, loss, ml_leak
from privaudit.services.attack_worker.attacks.base import Runtime, Scores
from privaudit.services.common.task_spec import BaselineArgs, LabelOnlyArgs, LiraArgs, LossArgs, MlLeakArgs, RmiaArgs

AttackRunner = Callable[[Any, Runtime], Scores]


def _shadow_model_attack(args: Any, rt: Runtime) -> Scores:
    """LIRA or RMIA, the whole attack in one job keeping no shadow model. Worker jobs run these
    through shadow_jobs themselves (parts, the shadow cache)."""
    from privaudit.services.attack_worker import shadow_jobs  # built on this package: imported when first run

    return shadow_jobs.whole_attack(args, rt, shadow_jobs.ShadowStore(".", None))


RUNNERS: dict[str, AttackRunner] = {
    BaselineArgs.name: baseline.run,
    MlLeakArgs.name: ml_leak.run,
    LabelOnlyArgs.name: label_only.run,
    LossArgs.name: loss.run,
    LiraArgs.name: _shadow_model_attack,
    RmiaArgs.name: _shadow_model_attack,
}


class AttackUnavailable(LookupError):
    """The task names an attack that this worker version does not implement."""


def runner_for(name: str) -> AttackRunner:
    """The `run` function of attack `name`; AttackUnavailable when it is not registered."""
    try:
        return RUNNERS[name]
    except KeyError:
        raise AttackUnavailable(
            f"attack {name} is not available in this version of the attack worker "
            f"(available: {', '.join(RUNNERS)})"
        ) from None
