"""A target model deployed behind an Open Inference Protocol server, as an attack job queries it.

What the endpoint returns decides what an attack gets and whether it can run:
- logits: the outputs as they come;
- probabilities: their logarithms, as logits (softmax gives the probabilities back; a zero
  becomes the smallest float32 so that no score is infinite);
- labels (`output: labels`, or an integer output whatever `output` says): the predicted labels
  only. BASELINE and LABEL-ONLY need no more; any other attack fails before its first query,
  saying so.
Every record sent is a query (each augmented copy too); `max_queries` bounds an attack's
queries, checked before a pass over a dataset starts, so that no budget is overrun.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from privaudit.services.attack_worker.oip_client import DATATYPES, ModelInfo, OipClient
from privaudit.services.common.errors import TaskError
from privaudit.services.common.task_spec import BaselineArgs, LabelOnlyArgs, ModelEndpoint

# The attacks that need nothing but the target's predicted labels.
LABEL_ATTACKS = (BaselineArgs.name, LabelOnlyArgs.name)
_INTEGER_KINDS = "biu"
# Probabilities may miss summing to 1 by float32 rounding over many classes; this much more is refused.
_PROBABILITY_SUM_TOLERANCE = 1e-3


@dataclass(eq=False)
class RemoteModel:
    """A deployed target of one job: compared by identity, as the runtime's model handles are."""

    field: str  # the task field that named it, relative to the attack's args
    endpoint: ModelEndpoint
    client: OipClient
    info: ModelInfo
    queries: int = 0  # records sent so far
    digest: None = field(default=None, init=False)  # a live service's outputs are never cached across jobs

    @classmethod
    def connect(cls, endpoint: ModelEndpoint, root: str | os.PathLike[str], field: str, attack: str) -> RemoteModel:
        """Asks the server for the model's metadata (so that a wrong address, name or TLS setting
        fails at once, before any query), and refuses an attack that labels cannot serve."""
        if endpoint.output == "labels":
            _refuse_labels(endpoint, field, attack, "its output is declared as labels")
        client = OipClient(endpoint, root, field)
        try:
            model = cls(field, endpoint, client, client.model_info())
            if model.labels_only:
                _refuse_labels(endpoint, field, attack, f"its output {model.info.output.name} is of type "
                                                        f"{model.info.output.datatype}")
        except TaskError:
            client.close()
            raise
        return model

    @property
    def name(self) -> str:
        return self.endpoint.model

    @property
    def path(self) -> str:
        return str(self.endpoint)

    @property
    def labels_only(self) -> bool:
        datatype = self.info.output.datatype  # "" when the metadata does not say: the task's `output` decides
        return self.endpoint.output == "labels" or (bool(datatype) and DATATYPES[datatype].kind in _INTEGER_KINDS)

    def declared_classes(self) -> int | None:
        """The number of classes the metadata gives (a fixed last dimension of a score output)."""
        shape = self.info.output.shape
        return shape[-1] if not self.labels_only and len(shape) == 2 and shape[-1] > 0 else None

    def reserve(self, count: int, what: str) -> None:
        """Refuses, before anything is sent, `count` more queries (`what`: for the message) that
        would take the attack past max_queries."""
        limit = self.endpoint.max_queries
        if limit is not None and self.queries + count > limit:
            raise TaskError.at(f"{self.field}.max_queries",
                               f"the attack needs {count:,} more queries of {self.endpoint} ({what}) after the "
                               f"{self.queries:,} it sent, past max_queries = {limit:,}; raise max_queries or audit "
                               "fewer records")

    def scores(self, samples: np.ndarray) -> np.ndarray:
        """(n, classes) float32 logits of a batch of samples: the logits, or log-probabilities."""
        outputs = self._infer(samples)
        if outputs.ndim != 2 or outputs.shape[1] < 1:
            raise TaskError.at(self.field, f"{self.endpoint} answered output {self.info.output.name} of shape "
                                           f"{list(outputs.shape)} for {len(samples)} records; scores must have shape "
                                           "[batch, classes]")
        scores = outputs.astype(np.float32)
        if not np.isfinite(scores).all():
            raise TaskError.at(self.field, f"{self.endpoint} answered NaN or infinite {self.endpoint.output}")
        if self.endpoint.output == "logits":
            return scores
        sums = scores.sum(axis=1)
        if scores.min() < 0 or scores.max() > 1 or np.abs(sums - 1).max() > _PROBABILITY_SUM_TOLERANCE:
            raise TaskError.at(f"{self.field}.output", f"{self.endpoint} answered values that are not probabilities "
                                                       f"(each in [0, 1], summing to 1 per record: got "
                                                       f"{scores.min():g} to {scores.max():g}, sums up to "
                                                       f"{sums.max():g}); is its output logits?")
        return np.log(np.maximum(scores, np.finfo(np.float32).tiny))

    def labels(self, samples: np.ndarray) -> np.ndarray:
        """(n,) int64: the label the model gives each sample of a batch."""
        if not self.labels_only:
            return self.scores(samples).argmax(axis=1)
        outputs = self._infer(samples)
        if outputs.shape not in ((len(samples),), (len(samples), 1)):
            raise TaskError.at(self.field, f"{self.endpoint} answered labels of shape {list(outputs.shape)} for "
                                           f"{len(samples)} records; labels must have shape [batch] or [batch, 1]")
        labels = outputs.reshape(len(samples))
        if labels.dtype.kind not in _INTEGER_KINDS and not np.array_equal(labels, np.round(labels)):
            raise TaskError.at(f"{self.field}.output", f"{self.endpoint} answered non-integer labels")
        if labels.min(initial=0) < 0:
            raise TaskError.at(f"{self.field}.output", f"{self.endpoint} answered a negative label ({labels.min()})")
        return labels.astype(np.int64)

    def _infer(self, samples: np.ndarray) -> np.ndarray:
        self.reserve(len(samples), "this batch")
        outputs = self.client.infer(self.info, samples)
        self.queries += len(samples)
        if outputs.dtype.kind in _INTEGER_KINDS and not self.labels_only:
            raise TaskError.at(f"{self.field}.output", f"{self.endpoint} answered integers ({outputs.dtype}), labels, "
                                                       f"where output says {self.endpoint.output}: set output: labels "
                                                       f"(then only {' and '.join(LABEL_ATTACKS)} run)")
        if outputs.ndim == 0 or outputs.shape[0] != len(samples):
            raise TaskError.at(self.field, f"{self.endpoint} answered output {self.info.output.name} of shape "
                                           f"{list(outputs.shape)} for a batch of {len(samples)} records")
        return outputs


def _refuse_labels(endpoint: ModelEndpoint, field: str, attack: str, why: str) -> None:
    """TaskError unless `attack` runs on labels alone."""
    if attack not in LABEL_ATTACKS:
        raise TaskError.at(f"{field}.output", f"{endpoint} returns labels only ({why}); {attack} needs the model's "
                                              f"scores (logits or probabilities): only {' and '.join(LABEL_ATTACKS)} "
                                              "run on labels")


def one_hot(labels: np.ndarray, width: int) -> np.ndarray:
    """(n, width) float32 scores whose argmax is each label: how a labels-only target's outputs
    reach attacks that read the predicted label alone."""
    scores = np.zeros((len(labels), width), dtype=np.float32)
    scores[np.arange(len(labels)), labels] = 1.0
    return scores
