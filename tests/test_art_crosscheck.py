"""Independent cross-checks against IBM ART 1.20.1 (a test-only dependency) on the same target outputs.

- ART's MembershipInferenceBlackBoxRuleBased, given the target's precomputed predictions through
  a BlackBoxClassifier lookup table, must equal BASELINE record by record, and so in every metric.
- ART's MembershipInferenceBlackBox, trained on the same shadow model's outputs turned into the
  same features (ML-LEAK's top-k logit-scaled posteriors, no labels), must land within 0.03 AUC
  of ML-LEAK. ART scales the features itself (StandardScaler, fitted on the shadow's features as
  ours is) and fits its own sklearn attack model; its default "nn" model needs PyTorch, which is
  not installed, so the sklearn-backed types are used.

These run on the numpy fake runtime. `python tests/test_art_crosscheck.py [SEED ...]` runs the same
comparisons on the real example with Paddle (needs `make example`) and prints the figures;
`--root DIR --task FILE` points it at another storage root and task file of the same shape
(BASELINE, ML-LEAK and LABEL-ONLY attacks).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.special import softmax
from scipy.stats import spearmanr
from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # ART announces that PyTorch is absent
    from art.attacks.inference.membership_inference import (
        MembershipInferenceBlackBox,
        MembershipInferenceBlackBoxRuleBased,
    )
    from art.estimators.classification import BlackBoxClassifier

from fake_runtime import AUDIT_PATHS, FakeDataset, NearestNeighbourModel, audit_runtime, membership_auc

from privaudit.services.attack_worker import metrics
from privaudit.services.attack_worker.attacks import baseline, label_only, loss, ml_leak
from privaudit.services.attack_worker.attacks.base import Outputs, Runtime, Scores
from privaudit.services.common.task_spec import BaselineArgs, DatasetPair, MlLeakArgs, parse_yaml

AUC_TOLERANCE = 0.03
ART_MODEL_TYPES = ("lr", "gb", "rf")  # sklearn-backed attack models ART builds itself


# ------------------------------------------------------------------ ART, fed precomputed outputs


def art_rule_based(member_outputs: Outputs, non_member_outputs: Outputs) -> tuple[np.ndarray, np.ndarray]:
    """ART's rule-based membership decisions on the records whose target outputs are given. ART
    queries its estimator with the records; here a record is its running number, and ART's own
    lookup table (BlackBoxClassifier with a (inputs, predictions) tuple) answers with the target's
    precomputed softmax probabilities."""
    outputs = (member_outputs, non_member_outputs)
    logits = np.concatenate([o.logits for o in outputs]).astype(np.float64)
    labels = np.concatenate([o.labels for o in outputs])
    records = np.arange(len(labels), dtype=np.float32)[:, None]
    classes = logits.shape[1]
    estimator = BlackBoxClassifier((records, softmax(logits, axis=1)), input_shape=(1,), nb_classes=classes)
    # One-hot labels: given integer labels, ART counts the classes from the labels present.
    called = MembershipInferenceBlackBoxRuleBased(estimator).infer(records, np.eye(classes)[labels])
    return called[: len(member_outputs.labels)], called[len(member_outputs.labels):]


def art_black_box(shadow_in: np.ndarray, shadow_out: np.ndarray, target: np.ndarray, model_type: str,
                  num_classes: int) -> np.ndarray:
    """P(member) from ART's learned black-box attack, fitted on the shadow's member and non-member
    features and applied to the target's. Given the features (`pred`), ART never queries its
    estimator, so the estimator only states the class count."""
    def unused(x: np.ndarray) -> np.ndarray:
        raise AssertionError("ART queried the estimator although the features were given")

    estimator = BlackBoxClassifier(unused, input_shape=(1,), nb_classes=num_classes)
    attack = MembershipInferenceBlackBox(estimator, input_type="prediction", attack_model_type=model_type)
    if "random_state" in attack.attack_model.get_params():
        attack.attack_model.set_params(random_state=0)
    attack.fit(pred=shadow_in, test_pred=shadow_out)
    return attack.infer(None, pred=target, probabilities=True).ravel()


def both(pair: DatasetPair) -> tuple[str, str]:
    return pair.members, pair.non_members


def auc(members: np.ndarray, non_members: np.ndarray) -> float:
    truth = np.r_[np.ones(len(members)), np.zeros(len(non_members))]
    return float(roc_auc_score(truth, np.r_[members, non_members]))


# ------------------------------------------------------------------ ML-LEAK's shadow, kept


def ml_leak_with_shadow(args: MlLeakArgs, rt: Runtime) -> tuple[Scores, Any]:
    """ML-LEAK's scores and the shadow model it trained (recorded as it is trained)."""
    trained: list[Any] = []
    train = rt.train

    def recording(model: Any, *rest: Any, **options: Any) -> None:
        trained.append(model)
        train(model, *rest, **options)

    rt.train = recording  # type: ignore[method-assign]
    try:
        scores = ml_leak.run(args, rt)
    finally:
        del rt.train  # back to the class's method
    (shadow,) = trained
    return scores, shadow


def ml_leak_features(args: MlLeakArgs, rt: Runtime, model: Any, path: str) -> np.ndarray:
    return ml_leak.top_k_logit_posteriors(rt.predict(model, rt.load_dataset("", path), args.batch_size).logits,
                                          args.topk)


def art_on_ml_leak_features(args: MlLeakArgs, rt: Runtime, shadow: Any,
                            model_types: tuple[str, ...] = ART_MODEL_TYPES) -> dict[str, float]:
    """AUC of ART's black-box attack per attack-model type, on ML-LEAK's features of `shadow`."""
    shadow_in, shadow_out = (ml_leak_features(args, rt, shadow, path) for path in both(args.shadow_datasets))
    target = rt.load_model("target_model", args.target_model)
    target_in, target_out = (ml_leak_features(args, rt, target, path) for path in both(args.target_datasets))
    classes = rt.num_classes(target, rt.load_dataset("", args.target_datasets.members))
    aucs = {}
    for model_type in model_types:
        p = art_black_box(shadow_in, shadow_out, np.r_[target_in, target_out], model_type, classes)
        aucs[model_type] = auc(p[: len(target_in)], p[len(target_in):])
    return aucs


# ------------------------------------------------------------------ the fake runtime's checks


class NoisyMemory(NearestNeighbourModel):
    """Memorises a noisy copy of its training records (seeded by their count), so that it is
    confident on its members without being certain: membership is learnable but not trivial."""

    def __init__(self, num_classes: int, temperature: float, noise: float):
        super().__init__(num_classes, temperature)
        self.noise = noise

    def fit(self, data: FakeDataset) -> None:
        rng = np.random.default_rng(len(data))
        noisy = data.samples + self.noise * rng.standard_normal(data.samples.shape).astype(np.float32)
        super().fit(FakeDataset(noisy, data.labels))

    def untrained(self) -> NoisyMemory:
        return NoisyMemory(self.num_classes, self.temperature, self.noise)


def baseline_args() -> BaselineArgs:
    return BaselineArgs(test_datasets=AUDIT_PATHS["target_datasets"], target_model=AUDIT_PATHS["target_model"])


@pytest.mark.parametrize("target", ["memorising", "noisy memory"])
def test_art_rule_based_equals_baseline_record_by_record_and_in_every_metric(target):
    rt = audit_runtime()
    if target == "noisy memory":  # some members wrong too, so both sides have both outcomes
        model = NoisyMemory(10, rt.models[AUDIT_PATHS["shadow_model"]].temperature, noise=3.0)
        model.fit(rt.datasets[AUDIT_PATHS["target_datasets"][0]])
        rt.models[AUDIT_PATHS["target_model"]] = model
    ours = baseline.run(baseline_args(), rt)
    model = rt.load_model("target_model", AUDIT_PATHS["target_model"])
    member_outputs, non_member_outputs = (rt.predict(model, rt.datasets[path], baseline.BATCH_SIZE)
                                          for path in AUDIT_PATHS["target_datasets"])

    art_members, art_non_members = art_rule_based(member_outputs, non_member_outputs)

    np.testing.assert_array_equal(art_members, ours.members)
    np.testing.assert_array_equal(art_non_members, ours.non_members)
    assert 0 < ours.non_members.mean() < 1
    ours_evaluated = metrics.evaluate(ours, seed=1)
    art_evaluated = metrics.evaluate(Scores(art_members.astype(np.float64), art_non_members.astype(np.float64),
                                            threshold=0.5), seed=1)
    for figure in ("accuracy", "precision", "recall", "auc", "advantage", "tpr_at_1pct_fpr"):
        assert getattr(art_evaluated, figure) == getattr(ours_evaluated, figure), figure
    # And the metrics of ART's decisions by scikit-learn (200 + 200 records: the balanced set is all of them).
    truth, called = np.r_[np.ones(200), np.zeros(200)], np.r_[art_members, art_non_members]
    assert ours_evaluated.accuracy == pytest.approx(accuracy_score(truth, called))
    assert ours_evaluated.precision == pytest.approx(precision_score(truth, called))
    assert ours_evaluated.recall == pytest.approx(recall_score(truth, called))
    assert ours_evaluated.auc == pytest.approx(roc_auc_score(truth, called))


@pytest.mark.parametrize("model_type", ART_MODEL_TYPES)
def test_art_black_box_on_the_same_shadow_and_features_lands_near_ml_leak(model_type):
    # Posteriors within about 1e-5 of 1 (the overfit case), target and shadow alike
    # trained on noisy copies: membership is learnable, not certain. The seed's unscaled
    # posteriors gave an AUC about 0.05 below both ART's and ours here.
    rt = audit_runtime()
    temperature = rt.models[AUDIT_PATHS["shadow_model"]].temperature / 100
    target = NoisyMemory(10, temperature, noise=2.5)
    target.fit(rt.datasets[AUDIT_PATHS["target_datasets"][0]])
    rt.models[AUDIT_PATHS["target_model"]] = target
    rt.models[AUDIT_PATHS["shadow_model"]] = NoisyMemory(10, temperature, noise=2.5)
    args = MlLeakArgs(**AUDIT_PATHS, classifier_epoch=500)

    scores, shadow = ml_leak_with_shadow(args, rt)
    art_auc = art_on_ml_leak_features(args, rt, shadow, (model_type,))[model_type]

    assert scores.warnings == ()
    assert 0.6 < membership_auc(scores) < 1.0
    assert abs(membership_auc(scores) - art_auc) <= AUC_TOLERANCE, (membership_auc(scores), art_auc)


# ------------------------------------------------------------------ the real example, with Paddle


def tpr_at_1pct_fpr(scores: Scores, seed: int) -> float | None:
    return metrics.evaluate(scores, seed).tpr_at_1pct_fpr


def example_figures(root: Path, task_file: Path, seed: int) -> dict[str, Any]:
    """BASELINE vs ART rule-based, ML-LEAK vs ART black-box and LOSS, LABEL-ONLY, with Paddle."""
    from privaudit.services.attack_worker.paddle_runtime import PaddleRuntime
    from privaudit.services.attack_worker.settings import WorkerSettings

    def runtime() -> Runtime:
        return PaddleRuntime(WorkerSettings(str(root)), seed, lambda *report: None)

    task = parse_yaml(task_file.read_text())
    by_name = {attack.name: attack for attack in task.attacks}
    figures: dict[str, Any] = {"seed": seed}

    rt = runtime()
    base = by_name["BASELINE"]
    ours = baseline.run(base, rt)
    model = rt.load_model("target_model", base.target_model)
    art_in, art_out = art_rule_based(*(rt.predict(model, rt.load_dataset("", path), baseline.BATCH_SIZE)
                                       for path in both(base.test_datasets)))
    figures["baseline_equals_art"] = bool(np.array_equal(art_in, ours.members)
                                          and np.array_equal(art_out, ours.non_members))
    figures["baseline_auc"] = auc(ours.members, ours.non_members)

    rt = runtime()
    args = by_name["ML-LEAK"]
    scores, shadow = ml_leak_with_shadow(args, rt)
    target = rt.load_model("target_model", args.target_model)
    outputs = [rt.predict(target, rt.load_dataset("", path), args.batch_size) for path in both(args.target_datasets)]
    loss_scores = np.concatenate([loss.true_label_log_probability(o.logits, o.labels) for o in outputs])
    figures["ml_leak_auc"] = auc(scores.members, scores.non_members)
    figures["ml_leak_tpr_at_1pct_fpr"] = tpr_at_1pct_fpr(scores, seed)
    figures["ml_leak_warnings"] = scores.warnings
    figures["spearman_ml_leak_vs_loss"] = float(spearmanr(np.r_[scores.members, scores.non_members],
                                                          loss_scores).statistic)
    figures["loss_auc"] = auc(loss_scores[: len(scores.members)], loss_scores[len(scores.members):])
    figures["art_black_box_auc"] = art_on_ml_leak_features(args, rt, shadow)

    rt = runtime()
    scores = label_only.run(by_name["LABEL-ONLY"], rt)
    figures["label_only_auc"] = auc(scores.members, scores.non_members)
    figures["label_only_tpr_at_1pct_fpr"] = tpr_at_1pct_fpr(scores, seed)
    figures["label_only_warnings"] = scores.warnings
    return figures


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    repository = Path(__file__).resolve().parents[1]
    parser.add_argument("seeds", nargs="*", type=int, default=[20190224])
    parser.add_argument("--root", type=Path, default=repository, help="storage root (default: the repository)")
    parser.add_argument("--task", type=Path, default=None, help="task file (default: example/tasks/mem_inf.yaml)")
    options = parser.parse_args(argv)
    task_file = options.task or options.root / "example" / "tasks" / "mem_inf.yaml"
    for seed in options.seeds:
        for name, value in example_figures(options.root.resolve(), task_file, seed).items():
            print(f"{name}: {value}")
        print()


if __name__ == "__main__":
    sys.path[:0] = [str(Path(__file__).resolve().parent)]
    main(sys.argv[1:])
