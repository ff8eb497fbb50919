"""The text report: the seed's sections in order, readable numbers, failed attacks and the summary."""

from __future__ import annotations

import re

from test_reporter_fixtures import failed, make_report, succeeded

from services.common.task_spec import ATTACKS as TASK_ATTACKS
from services.reporter import catalog, render_text


def _text(*results) -> str:
    return render_text.render(make_report(*results)).decode()


def _section(text: str, name: str) -> list[str]:
    """The lines under `name:` up to the next top-level line."""
    lines = text.splitlines()
    start = lines.index(f"{name}:") + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("\t") and lines[i]), len(lines))
    return lines[start:end]


def test_sections_in_the_seed_order() -> None:
    text = _text(succeeded(0, auc=0.6), failed(1))
    top_level = [line for line in text.splitlines() if line and not line.startswith("\t")]
    assert top_level == [render_text.TITLE, "Task: task-1", "Models:", "Datasets:", "Attacks:", "Summary:"]


def test_models_and_datasets_once_per_distinct_entry() -> None:
    text = _text(succeeded(0, train_acc=0.987654321, test_acc=0.9), succeeded(1, "ML-LEAK", train_acc=0.987654321,
                 test_acc=0.9), succeeded(2, "LABEL-ONLY", model="other"), failed(3))
    assert _section(text, "Models") == [
        "\t- name: digits_mlp, train_acc: 0.9877, test_acc: 0.9000",
        "\t- name: other, train_acc: 0.9500, test_acc: 0.9300",
    ]
    assert _section(text, "Datasets") == [
        "\t- name: digits_train, is_member_dataset: true, length: 900, role: target",
        "\t- name: digits_test, is_member_dataset: false, length: 897, role: target",
    ]


def test_attack_entry_shows_description_results_and_low_fpr_figures() -> None:
    attack = succeeded(0, "ML-LEAK", auc=0.5949353236670549, tpr_1=0.0312, tpr_01=None, non_members=500)
    attack.metrics.accuracy = 0.7540833333333333
    assert _section(_text(attack), "Attacks") == [
        "\t- name: ML-LEAK (attacks[0])",
        f"\t  attack description: {catalog.ATTACKS['ML-LEAK'].description}",
        "\t  attack results: acc = 0.7541, auc = 0.5949, precision = 0.5500, recall = 0.6000",
        "\t  advantage = 0.0949, TPR@1%FPR = 0.0312, TPR@0.1%FPR = n/a (needs >= 1000 non-members, had 500)",
        "\t  evaluation set: 500 members, 500 non-members",
        "\t  risk: MIDDLE, AUC 0.5949 >= 0.55; TPR@0.1%FPR not measurable (needs >= 1000 non-members, had 500), "
        "so low FPR is judged by TPR@1%FPR",
        "\t  privacy bound: epsilon >= 0.1456 at delta = 1e-05 (from FPR 0.5000 and TPR 0.6500, 95% Clopper-Pearson "
        "intervals)",
        "\t  most exposed members (record #, score): #0 (1.0000), #7 (0.9844), #14 (0.9688), #21 (0.9531), "
        "#28 (0.9375); 20 in the JSON and HTML reports",
    ]


def test_a_chance_level_attack_bounds_nothing_and_a_short_list_is_shown_whole() -> None:
    attack = succeeded(0, exposed=2)
    del attack.roc[1]  # (0, 0) -> (1, 1): the diagonal
    lines = _section(_text(attack), "Attacks")
    assert lines[-2:] == [
        "\t  privacy bound: epsilon >= 0 at delta = 1e-05 (no point of the ROC curve rules out any epsilon with "
        "95% Clopper-Pearson intervals)",
        "\t  most exposed members (record #, score): #0 (1.0000), #7 (0.9844)",
    ]


def test_no_raw_floats_anywhere() -> None:
    text = _text(succeeded(0, auc=2 / 3, tpr_1=1 / 7, tpr_01=1 / 9, train_acc=1 / 3, test_acc=1 / 6))
    assert not re.search(r"\d\.\d{5,}", text)


def test_failed_attack_shows_failed_with_field_and_message_on_one_line() -> None:
    text = _text(succeeded(0), failed(1, message="the folder has no .py file;\n  add one defining get_model()"))
    assert "\t  FAILED: (INVALID_ARGUMENT) attacks[1].args.shadow_model: the folder has no .py file; add one " \
           "defining get_model()" in _section(text, "Attacks")


def test_summary_warns_lists_failed_apart_and_numbers_the_advice() -> None:
    summary = _section(_text(succeeded(0, auc=0.5), succeeded(1, "ML-LEAK", auc=0.7), failed(2, "LABEL-ONLY")),
                       "Summary")
    assert summary[:5] == [
        "\tOverall risk: HIGH",
        "\tWARNING! The model leaks membership to these attacks:",
        "\t1, ML-LEAK (attacks[1]): HIGH risk, AUC 0.7000 >= 0.65",
        "\tFailed attacks (not rated, not counted in the overall risk):",
        "\t- LABEL-ONLY (attacks[2]): (INVALID_ARGUMENT) attacks[1].args.shadow_model: the folder has no .py file; "
        "add one defining get_model()",
    ]
    advice = summary[summary.index("\tRecommended defences, in this order:") + 1:]
    titles = [match.groups() for line in advice if (match := re.match(r"\t(\d), ([^.]+)\. ", line))]
    assert titles == [("1", "Differential privacy (DP-SGD)"), ("2", "Confidence masking"),
                      ("3", "Knowledge distillation")]
    assert sum(line.startswith("\t   Why here: ") for line in advice) == 3


def test_all_low_summary_is_a_clear_statement() -> None:
    summary = _section(_text(succeeded(0, auc=0.5)), "Summary")
    assert summary[0] == "\tOverall risk: LOW"
    assert not any("WARNING" in line or "Recommended" in line for line in summary)
    assert any(line.startswith("\tNote: The audit found no measurable membership leakage") for line in summary)


def test_only_failed_attacks() -> None:
    text = _text(failed(0), failed(1, "LABEL-ONLY"))
    assert _section(text, "Models") == ["\t(none: no attack completed)"]
    assert _section(text, "Summary")[0] == "\tOverall risk: not rated"
    assert "\tNote: No attack completed" in text


def test_every_task_attack_has_its_description() -> None:
    assert set(TASK_ATTACKS) <= set(catalog.ATTACKS)
    assert catalog.attack_info("NEW").description == "No description on file for this attack."
