"""What each attack is: the one place that describes attacks to the reader.

`reads_scores` says whether the attack needs the model's confidence scores (True) or
only its predicted labels (False), None when unknown; advice depends on it, since
hiding scores cannot stop an attack that never reads them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AttackInfo:
    description: str
    reads_scores: bool | None


ATTACKS: dict[str, AttackInfo] = {
    "BASELINE": AttackInfo(
        "Calls a record a member when the model predicts its label correctly. It needs nothing but "
        "predicted labels and true labels, and its membership advantage equals the model's train/test "
        "accuracy gap, so it measures plain overfitting.",
        reads_scores=False,
    ),
    "ML-LEAK": AttackInfo(
        "Trains a shadow model on auxiliary data to imitate the target, fits a classifier that tells the "
        "shadow's training records from unseen ones by their top-k sorted confidence scores, then applies "
        "that classifier to the target's scores (Salem et al., NDSS 2019).",
        reads_scores=True,
    ),
    "LABEL-ONLY": AttackInfo(
        "Queries the model with slightly rotated or shifted copies of each record and uses how many copies "
        "it still labels correctly: training records tend to stay correct under such changes. The rule is "
        "fitted on a shadow model and reads predicted labels only (Choquette-Choo et al., ICML 2021).",
        reads_scores=False,
    ),
    "LOSS": AttackInfo(
        "Scores each record by the target model's loss on it: models fit their training records more "
        "closely than unseen ones, so a low loss points to a member. It reads the model's confidence in "
        "the true label and needs no shadow model (Yeom et al., CSF 2018).",
        reads_scores=True,
    ),
    "LIRA": AttackInfo(
        "Trains shadow models of the target's architecture, each on a random half of the data, so that "
        "every record has models trained with it and without it; fits a Gaussian to the record's scaled "
        "confidence in each group and asks under which the target's confidence is likelier. The offline "
        "variant uses only the models trained without it (Carlini et al., IEEE S&P 2022).",
        reads_scores=True,
    ),
    "RMIA": AttackInfo(
        "Measures how much more likely the target model finds a record than reference models do, and "
        "compares that ratio with the same ratio for records drawn from population data: a record that "
        "beats most population records is called a member. It stays strong with few reference models "
        "(Zarifzadeh, Liu and Shokri, ICML 2024).",
        reads_scores=True,
    ),
}

_UNKNOWN = AttackInfo("No description on file for this attack.", reads_scores=None)


def attack_info(name: str) -> AttackInfo:
    """The attack's entry; an attack this reporter does not know gets a neutral one that
    claims nothing about what it reads."""
    return ATTACKS.get(name, _UNKNOWN)
