"""ART's default black-box membership attack on ML-LEAK's features, beside ML-LEAK's own AUC.

    PYTHON tests/fidelity/art_reference.py FEATURES.npz [...]

FEATURES.npz come from ml_leak_features.py. PYTHON is an interpreter with
adversarial-robustness-toolbox 1.20.1 and PyTorch (ART's default attack model, "nn", is a PyTorch
MLP; the project's own environment has no PyTorch, so its tests use ART's scikit-learn models):

    python3 -m venv /tmp/art && /tmp/art/bin/pip install torch==2.13.0 \
        adversarial-robustness-toolbox==1.20.1 scikit-learn packaging

Prints, per file, ML-LEAK's AUC and ART's with its "nn" and "lr" attack models, fitted on the
same shadow features and applied to the same target features.
"""

import sys
import warnings

import numpy as np
from sklearn.metrics import roc_auc_score

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import torch
    from art.attacks.inference.membership_inference import MembershipInferenceBlackBox
    from art.estimators.classification import BlackBoxClassifier


def auc(members: np.ndarray, non_members: np.ndarray) -> float:
    return float(roc_auc_score(np.r_[np.ones(len(members)), np.zeros(len(non_members))], np.r_[members, non_members]))


def art_auc(saved: np.lib.npyio.NpzFile, model_type: str) -> float:
    def unused(x: np.ndarray) -> np.ndarray:
        raise AssertionError("ART queried the estimator although the features were given")

    width = saved["shadow_in"].shape[1]  # ART reads the features' width as its class count
    attack = MembershipInferenceBlackBox(BlackBoxClassifier(unused, input_shape=(1,), nb_classes=width),
                                         input_type="prediction", attack_model_type=model_type)
    attack.fit(pred=saved["shadow_in"].astype(np.float32), test_pred=saved["shadow_out"].astype(np.float32))
    target = np.r_[saved["target_in"], saved["target_out"]].astype(np.float32)
    p = attack.infer(None, pred=target, probabilities=True).ravel()
    return auc(p[: len(saved["target_in"])], p[len(saved["target_in"]):])


def main(paths: list[str]) -> int:
    torch.manual_seed(0)
    for path in paths:
        saved = np.load(path)
        print(f"{path}: ML-LEAK {auc(saved['members'], saved['non_members']):.3f}, "
              f"ART nn {art_auc(saved, 'nn'):.3f}, ART lr {art_auc(saved, 'lr'):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
