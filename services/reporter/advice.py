"""Defence advice chosen by what the audit found, always in the same order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from privaudit.services.reporter.catalog import attack_info
from privaudit.services.reporter.epsilon import EpsilonEstimate
from privaudit.services.reporter.epsilon_terms import ASSUMPTION, CONFIDENCE
from privaudit.services.reporter.figures import decimal, epsilon_value
from privaudit.services.reporter.policy import Advice as AdviceSettings
from privaudit.services.reporter.risk import Assessment, Risk
from privaudit.v1 import results_pb2


@dataclass(frozen=True)
class Recommendation:
    """A defence: `id` is stable for programs, `why` ties it to this model's findings."""

    id: str
    title: str
    description: str
    why: str


@dataclass(frozen=True)
class Advice:
    """The recommendations in their fixed order, and notes on what was deliberately not advised."""

    recommendations: tuple[Recommendation, ...]
    notes: tuple[str, ...]


# Every recommendation, in the order reports list them: (title, description) by id.
_DEFENCES: dict[str, tuple[str, str]] = {
    "differential_privacy": (
        "Differential privacy (DP-SGD)",
        "Train with differentially private SGD: clip each example's gradient and add calibrated Gaussian "
        "noise, so that no single record can change the trained model by more than the privacy budget "
        "(epsilon) allows. This bounds the success of every membership attack, including attacks not run "
        "in this audit. It costs some accuracy and training time; agree the budget with the data owners.",
    ),
    "confidence_masking": (
        "Confidence masking",
        "Return less than the full probability vector: only the top-k classes, probabilities rounded to a "
        "few decimals, or the predicted label alone. Attacks that read confidence scores lose most of their "
        "signal while the model and its accuracy stay unchanged. It does nothing against attacks that need "
        "only predicted labels.",
    ),
    "regularisation": (
        "Regularisation, early stopping and data augmentation",
        "Narrow the gap between how the model does on its training records and on new ones: weight decay, "
        "dropout or label smoothing; stopping when validation loss stops improving; augmenting the training "
        "data. Membership attacks feed on that gap, so narrowing it weakens all of them, usually at little "
        "cost in test accuracy.",
    ),
    "knowledge_distillation": (
        "Knowledge distillation",
        "Release a student model trained on a teacher's soft predictions over public or held-out data "
        "instead of a model trained on the private records. The student never sees those records, which "
        "limits what it can memorise about any one of them; it combines well with differential privacy.",
    ),
}

NO_LEAK_NOTE = (
    "The audit found no measurable membership leakage: every attack that ran is LOW under the risk "
    "policy. This covers only the attacks that ran, at the size of their evaluation sets: stronger "
    "attacks (more shadow models, LiRA, RMIA) or larger evaluation sets may still find leakage, and a "
    "figure reported as not measurable was not checked."
)
NOTHING_RATED_NOTE = (
    "No attack completed, so the model's leakage was not measured and no advice follows; fix the "
    "failed attacks and run the audit again."
)


def advise(
    assessments: Sequence[Assessment],
    models: Sequence[results_pb2.ModelSummary],
    overall: Risk | None,
    settings: AdviceSettings,
    strongest_estimate: tuple[Assessment, EpsilonEstimate] | None,
) -> Advice:
    """The advice for these ratings and models, given the attack with the largest epsilon estimate;
    the same input always gives the same output."""
    if overall is None:
        return Advice((), (NOTHING_RATED_NOTE,))
    if overall is Risk.LOW:
        return Advice((), (NO_LEAK_NOTE,))
    risky = [a for a in assessments if a.is_risky]
    reasons: dict[str, str] = {
        "differential_privacy": f"Overall risk is {overall.name} ({_levels(risky)}); DP-SGD is the one "
        "defence here that bounds every attack, not only the ones this audit ran. " + _budget(strongest_estimate)
    }
    notes: list[str] = []
    by_scores = [a for a in risky if attack_info(a.attack_name).reads_scores is True]
    by_labels = [a for a in risky if attack_info(a.attack_name).reads_scores is False]
    if by_scores:
        reasons["confidence_masking"] = f"Attacks reading confidence scores succeeded: {_levels(by_scores)}." + (
            f" It will not stop the label-only attacks: {_names(by_labels)}." if by_labels else ""
        )
    elif by_labels:
        notes.append(
            f"Confidence masking is not recommended: the attacks rated MIDDLE or HIGH ({_names(by_labels)}) "
            "read predicted labels only, which masking leaves intact."
        )
    widest = max(models, key=_gap, default=None)
    if widest is not None and _gap(widest) >= settings.large_accuracy_gap:
        reasons["regularisation"] = (
            f"{widest.name} has train_acc {decimal(widest.train_acc)} and test_acc "
            f"{decimal(widest.test_acc)}, a gap of {decimal(_gap(widest))} >= {settings.large_accuracy_gap:g}."
        )
    if overall is Risk.HIGH:
        reasons["knowledge_distillation"] = (
            f"Risk is HIGH ({_levels([a for a in risky if a.risk is Risk.HIGH])}): worth a further step "
            "beyond the measures above."
        )
    recommendations = tuple(
        Recommendation(key, *_DEFENCES[key], reasons[key]) for key in _DEFENCES if key in reasons
    )
    return Advice(recommendations, tuple(notes))


def _budget(strongest_estimate: tuple[Assessment, EpsilonEstimate] | None) -> str:
    """What the empirical epsilon estimate says about choosing a budget."""
    if strongest_estimate is None:
        return "No attack gave an empirical epsilon estimate to compare a budget with."
    assessment, estimate = strongest_estimate
    if not estimate.epsilon:
        return (f"No attack's empirical epsilon estimate rules out any budget at delta = {estimate.delta:g} "
                f"({CONFIDENCE:.0%} confidence) on evaluation sets of this size, so it gives no guide to choosing one.")
    return (f"{assessment.label} gives an empirical epsilon estimate of {epsilon_value(estimate)} at delta = "
            f"{estimate.delta:g}: if {ASSUMPTION}, any DP guarantee of this training would need epsilon of at "
            f"least that ({CONFIDENCE:.0%} confidence), and a budget below it would rule out what the attack "
            "achieved here. Unless the audited members were chosen that way, it is an estimate, not a proof; "
            "stronger attacks may push it higher.")


def _gap(model: results_pb2.ModelSummary) -> float:
    return round(model.train_acc - model.test_acc, 9)


def _names(assessments: Sequence[Assessment]) -> str:
    return ", ".join(a.label for a in assessments)


def _levels(assessments: Sequence[Assessment]) -> str:
    return ", ".join(f"{a.label} rated {a.risk.name}" for a in assessments if a.risk is not None)
