"""The text report: the seed's sections in order, readable numbers, failed attacks and the summary."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
from test_reporter_fixtures import class_metrics, failed, make_report, succeeded

from privaudit.services.common.task_spec import ATTACKS as TASK_ATTACKS
from privaudit.services.reporter import catalog, render_json, render_text
from privaudit.services.reporter.compare import compare
from privaudit.v1 import results_pb2


def _text(*results) -> str:
    return render_text.render(make_report(*results)).decode()


def _section(text: str, name: str) -> list[str]:
    """The lines under `name:` up to the next top-level line."""
    lines = text.splitlines()
    start = lines.index(f"{name}:") + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("\t") and lines[i]), len(lines))
    return lines[start:end]


def test_sections_in_the_seed_order_then_provenance() -> None:
    text = _text(succeeded(0, auc=0.6), failed(1))
    top_level = [line for line in text.splitlines() if line and not line.startswith("\t")]
    assert top_level == [render_text.TITLE, "Task: task-1", "Models:", "Datasets:", "Attacks:", "Summary:",
                         "Provenance:"]


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


def _exposed_line(text: str) -> str:
    return next(line for line in _section(text, "Attacks") if line.startswith("\t  most exposed members"))


def test_a_negated_loss_near_zero_never_prints_as_minus_zero() -> None:
    """LOSS's scores are -loss: its most exposed members score -9e-09, -1e-06, ..., and a loss of 0 is -0.0."""
    attack = succeeded(0, "LOSS", exposed=0)
    attack.most_exposed.extend(results_pb2.ExposedRecord(index=i, score=s)
                               for i, s in enumerate([-0.0, -9.072707e-09, -1.0645e-06, -3.5e-05]))
    line = _exposed_line(_text(attack))
    assert "-0.0000" not in line and "(-0)" not in line
    assert line.endswith("#0 (0), #1 (-9.073e-09), #2 (-1.064e-06), #3 (-3.5e-05)")


def test_scores_that_differ_print_differently_and_equal_ones_alike() -> None:
    attack = succeeded(0, "RMIA", exposed=0)
    attack.most_exposed.extend(results_pb2.ExposedRecord(index=i, score=s)
                               for i, s in enumerate([0.9969193415886549, 0.9969193314127615, 0.99691907]))
    assert _exposed_line(_text(attack)).endswith("#0 (0.99691934), #1 (0.99691933), #2 (0.99691907)")


def test_tied_most_exposed_members_are_said_to_be_tied_with_how_many_share_the_score() -> None:
    """BASELINE: every member labelled correctly scores 1, so its list is the first 20 by index."""
    attack = succeeded(0, exposed=0)
    members = np.asarray(attack.record_scores.members)
    members[:] = 0.0
    members[[3, 5, 8, 9, 12, 30, 31]] = 1.0
    members[40] = 0.5
    attack.record_scores.members[:] = members
    attack.most_exposed.extend(results_pb2.ExposedRecord(index=i, score=members[i]) for i in (3, 5, 8, 9, 12, 30))
    assert _exposed_line(_text(attack)) == ("\t  most exposed members (record #, score): 7 members share the score 1 "
                                            "(#3, #5, #8, #9, #12, ...); 6 in the JSON and HTML reports")


def test_a_tie_the_result_cannot_count_says_at_least() -> None:
    attack = succeeded(0, separation=None, exposed=0)
    attack.most_exposed.extend(results_pb2.ExposedRecord(index=i, score=0.25 if i < 2 else 0.1) for i in range(3))
    assert _exposed_line(_text(attack)).endswith("2 or more members share the score 0.25 (#0, #1), #2 (0.1)")


def test_a_dataset_in_two_roles_is_listed_once_with_both() -> None:
    """CIFAR's task: the target's members are also LABEL-ONLY's shadow data."""
    shadow = succeeded(1, "LABEL-ONLY")
    shadow.datasets.append(results_pb2.DatasetSummary(name="digits_train", path="datasets/digits_train",
                                                      is_member_dataset=False, length=900, role="shadow",
                                                      digest="train-digest"))
    assert _section(_text(succeeded(0), shadow), "Datasets") == [
        "\t- name: digits_train, is_member_dataset: true, length: 900, roles: target, shadow",
        "\t- name: digits_test, is_member_dataset: false, length: 897, role: target",
    ]


def test_provenance_names_version_date_seed_digests_and_devices() -> None:
    attack = succeeded(0)
    attack.target_model.digest = "a" * 64
    attack.datasets[0].digest = "b" * 64
    attack.datasets[1].digest = ""
    attack.device = "cpu"
    lines = _section(_text(attack), "Provenance")
    assert lines[1:] == [
        "\tgenerated at: 2026-11-30T00:53:20Z",
        "\tseed: 7",
        f"\ttask digest: {'5' * 64}",
        "\tworker devices: cpu",
        f"\t- model digits_mlp (models/digits_mlp): {'a' * 64}",
        f"\t- dataset digits_train (datasets/digits_train): {'b' * 64}",
        "\t- dataset digits_test (datasets/digits_test): not known",
    ]
    assert lines[0].startswith("\tprivaudit version: ")


def test_a_comparison_gives_each_attacks_change_its_risk_and_the_verdict() -> None:
    old = make_report(succeeded(0, auc=0.7), succeeded(1, "ML-LEAK", auc=0.6, tpr_1=0.02), task_id="old")
    new = make_report(succeeded(0, auc=0.52), succeeded(1, "ML-LEAK", auc=0.75, tpr_1=None), task_id="new")
    compared = replace(new, comparison=compare(render_json.audit_report(old), render_json.audit_report(new)))
    lines = _section(render_text.render(compared).decode(), "Comparison")
    assert lines[:4] == [
        "\tbaseline: task old, built 2026-11-30T00:53:20Z",
        "\t- BASELINE (attacks[0]): AUC 0.7000 -> 0.5200 (-0.1800, better), TPR@1%FPR 0.0100 -> 0.0100 "
        "(+0.0000, unchanged), risk HIGH -> LOW",
        "\t- ML-LEAK (attacks[1]): AUC 0.6000 -> 0.7500 (+0.1500, worse), TPR@1%FPR 0.0200 -> n/a (unchanged), "
        "risk MIDDLE -> HIGH; REGRESSED",
        "\tverdict: REGRESSED",
    ]
    assert lines[4].startswith("\tbeyond noise: z = ")
