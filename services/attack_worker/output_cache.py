"""The output cache: a stored model's outputs on a dataset, computed once and shared by every job
of the worker (and by every worker sharing its `--cache-dir`), so that no attack of a task queries
the target model again for outputs another attack already has.

The key is a SHA-256 digest of contents, never of paths: the model's (its code, its weights and
the layer structure `get_model()` built, see `storage.model_digest`) and the dataset's (its records as read, see
`LoadedDataset.digest`), with the batch size of the pass, since a batched forward pass need not
give bit-identical logits for every batch size. Only models loaded with their weights from storage
and datasets read into memory have digests; other outputs stay within their job.
"""

from __future__ import annotations

import hashlib

from privaudit.services.attack_worker.attacks.base import Outputs
from privaudit.services.attack_worker.npz_store import WorkerCache

# Part of every key: a change to how outputs are computed or stored must change it.
FORMAT = "privaudit model outputs v1: eval mode, no gradients, float32 logits (records, classes)"


def output_key(model_digest: str, dataset_digest: str, batch_size: int) -> str:
    """The cache key of a model's outputs on a dataset in batches of `batch_size`."""
    text = f"{FORMAT}\0{model_digest}\0{dataset_digest}\0{batch_size}"
    return hashlib.sha256(text.encode()).hexdigest()


class OutputCache(WorkerCache):
    """Model outputs in the `outputs` folder of a worker's cache folder."""

    FOLDER = "outputs"

    def load(self, key: str, length: int) -> Outputs | None:
        """The outputs stored under `key`, or None when there is no usable entry (absent, unreadable,
        or not `length` records long)."""
        entry = self._store.load(key)
        if entry is None or not {"logits", "labels"} <= entry.keys():
            return None
        outputs = Outputs(logits=entry["logits"], labels=entry["labels"])
        if outputs.logits.ndim != 2 or len(outputs.logits) != length or outputs.labels.shape != (length,):
            return None
        return outputs

    def store(self, key: str, outputs: Outputs) -> None:
        """Keeps the entry; a failure to write is logged, not raised."""
        self._store.store(key, logits=outputs.logits, labels=outputs.labels)
