"""What an empirical epsilon estimate is stated in: its confidence, its assumption and the DP
inequality it comes from. Shared by the estimator (epsilon.py, which needs numpy and scipy) and by
the report model and renderers, which the client imports to read a report and must stay light."""

from enum import StrEnum

CONFIDENCE = 0.95
ASSUMPTION = ("each evaluated record's membership was decided at random, independently of the record, "
              "as in differential-privacy auditing experiments")


class Inequality(StrEnum):
    """The DP inequality an estimate comes from; values are how reports write them."""

    TPR = "TPR <= e^epsilon * FPR + delta"
    TNR = "1 - FPR <= e^epsilon * (1 - TPR) + delta"
