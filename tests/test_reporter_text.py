"""The text report: the seed's sections in order, readable numbers, failed attacks and the summary."""

from __future__ import annotations

import re

from test_reporter_fixtures import class_metrics, failed, make_report, succeeded

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


def test_attack_entry_shows_description_results_intervals_evidence_and_the_estimate() -> None:
    attack = succeeded(0, "ML-LEAK", auc=0.5949353236670549, tpr_1=0.0312, tpr_01=None, non_members=500,
                       auc_p=2.5e-7, tpr_1_p=0.0412, separation=1.0,
                       warnings=("the attack classifier stopped\n  before it converged",),
                       per_class=(class_metrics(3, 48, 52, 0.71), class_metrics(12, 400, 410, 0.5512, 0.02)))
    attack.metrics.accuracy = 0.7540833333333333
    attack.metrics.decision_threshold = 0.58731234
    lines = _section(_text(attack), "Attacks")
    epsilon_line = next(line for line in lines if line.startswith("\t  empirical epsilon estimate: "))
    assert [line for line in lines if line is not epsilon_line] == [
        "\t- name: ML-LEAK (attacks[0])",
        f"\t  attack description: {catalog.ATTACKS['ML-LEAK'].description}",
        "\t  attack results: acc = 0.7541, auc = 0.5949 [0.5549, 0.6349], precision = 0.5500, recall = 0.6000",
        "\t  advantage = 0.0949, TPR@1%FPR = 0.0312 [0.0000, 0.0712], TPR@0.1%FPR = n/a (needs >= 1000 non-members, "
        "had 500)",
        "\t  evaluation set: 500 members, 500 non-members",
        "\t  decision threshold: 0.5873 (shadow model's members and non-members)",
        "\t  warning: the attack classifier stopped before it converged",
        "\t  chance p-values: AUC p = 2.5e-07, TPR@1%FPR p = 0.0412 (beyond chance at p <= 0.025)",
        "\t  risk: MIDDLE, AUC 0.5949 [0.5549, 0.6349] >= 0.55, beyond chance (p = 2.5e-07); TPR@0.1%FPR not "
        "measurable (needs >= 1000 non-members, had 500), so low FPR is judged by TPR@1%FPR",
        "\t  per class:",
        "\t    label  members  non-members  AUC [95% interval]       TPR@1%FPR",
        "\t    3           48           52  0.7100 [0.6700, 0.7500]  n/a",
        "\t    12         400          410  0.5512 [0.5112, 0.5912]  0.0200",
        "\t  most exposed members (record #, score): #0 (1), #7 (0.9844), #14 (0.9688), #21 (0.9531), "
        "#28 (0.9375); 20 in the JSON and HTML reports",
    ]
    assert lines.index(epsilon_line) == lines.index("\t  per class:") - 1
    assert re.fullmatch(r"\t  empirical epsilon estimate: epsilon >= \d\.\d{4} at delta = 1e-05, 95% confidence "
                        r"\(threshold -?[\d.]+ with (TPR <= e\^epsilon \* FPR|1 - FPR <= e\^epsilon \* \(1 - TPR\)) "
                        r"\+ delta, chosen on 250 \+ 250 records; on the other 250 \+ 250: TPR \d\.\d{4} >= \d\.\d{4}, "
                        r"FPR \d\.\d{4} <= \d\.\d{4}\)", epsilon_line), epsilon_line


def test_a_guessing_attack_estimates_nothing_and_a_short_list_is_shown_whole() -> None:
    """Identical member and non-member scores: no operating point rules out anything."""
    attack = succeeded(0, exposed=2)
    attack.record_scores.members[:] = [0.5] * len(attack.record_scores.members)
    attack.record_scores.non_members[:] = [0.5] * len(attack.record_scores.non_members)
    lines = _section(_text(attack), "Attacks")
    assert lines[-2:] == [
        "\t  empirical epsilon estimate: epsilon >= 0 at delta = 1e-05, 95% confidence (no operating point on the "
        "500 + 500 records that choose it rules out any epsilon)",
        "\t  most exposed members (record #, score): #0 (1), #7 (0.9844)",
    ]


def test_without_record_scores_there_is_no_estimate_and_the_report_says_why() -> None:
    lines = _section(_text(succeeded(0, separation=None)), "Attacks")
    assert "\t  empirical epsilon estimate: none: the result carries no record scores (it comes from a worker older " \
           "than that field), so the operating point cannot be chosen on records other than those that measure " \
           "it" in lines


def test_a_result_without_the_new_fields_still_reads_plainly() -> None:
    """An older worker's result: no intervals, p-values, threshold source or classes."""
    text = _text(succeeded(0, auc=0.7, intervals=False, auc_p=None, tpr_1_p=None, tpr_01_p=None, threshold_source="",
                           separation=None))
    lines = _section(text, "Attacks")
    assert "\t  attack results: acc = 0.6000, auc = 0.7000, precision = 0.5500, recall = 0.6000" in lines
    assert "\t  decision threshold: 0.5 (the worker did not say where it comes from)" in lines
    assert "\t  chance p-values: AUC n/a, TPR@1%FPR n/a, TPR@0.1%FPR n/a (beyond chance at p <= 0.0167)" in lines
    assert not any("per class" in line for line in lines)


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
        "\t1, ML-LEAK (attacks[1]): HIGH risk, AUC 0.7000 [0.6600, 0.7400] >= 0.65, beyond chance (p = 1e-06)",
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
