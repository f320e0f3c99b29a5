"""The reference policy of the reference-anchored flow: log pi_ref of every completion token, precomputed into
dataset columns before training (as TRL's DPO does) or computed per batch (a LoRA doctor with its adapter disabled,
a full-weight doctor's frozen copy). Reference log-probabilities never carry a gradient."""

from __future__ import annotations

import copy

import torch
from datasets import Dataset
from datasets.fingerprint import Hasher

from ..rewards.preference_data import SCORED_COLUMNS
from ..rewards.scorer import weights_probe
from ..utils.adapters import adapter_disabled, has_adapter
from ..utils.logps import completion_forward
from .collator import REF_COLUMNS


class ReferenceLogpsMixin:
    """Reference log-probabilities for a `Trainer` whose model is a `DoctorModel` (mixed into `TFPOTrainer`)."""

    ref_model: torch.nn.Module | None = None

    def _set_up_reference(self) -> None:
        """Precompute the reference columns of every dataset, or, per batch, keep a frozen copy of a full-weight
        doctor (a LoRA doctor's reference is its base: the adapter is disabled, nothing is copied)."""
        if self.args.precompute_ref_log_probs:
            if self.train_dataset is not None:
                self.train_dataset = self._add_reference_logps(self.train_dataset, "train")
            if isinstance(self.eval_dataset, dict):
                self.eval_dataset = {k: self._add_reference_logps(v, k) for k, v in self.eval_dataset.items()}
            elif self.eval_dataset is not None:
                self.eval_dataset = self._add_reference_logps(self.eval_dataset, "eval")
        elif not has_adapter(self.accelerator.unwrap_model(self.model).pretrained_model):
            reference = copy.deepcopy(self.accelerator.unwrap_model(self.model).pretrained_model)
            self.ref_model = self.accelerator.prepare_model(
                reference.eval().requires_grad_(False), evaluation_mode=True
            )

    def _add_reference_logps(self, dataset: Dataset, dataset_name: str) -> Dataset:
        """Add `ref_chosen_token_logps` and `ref_rejected_token_logps`: log pi_ref of every completion token.

        The main process computes them first; the others load its cached result (same fingerprint).
        """
        doctor = self.accelerator.unwrap_model(self.model)
        fingerprint = Hasher.hash(
            (dataset._fingerprint, "ref_token_logps", has_adapter(doctor.pretrained_model), weights_probe(doctor))
        )
        was_training = doctor.training
        doctor.eval()
        try:
            with self.accelerator.main_process_first():
                return dataset.map(
                    self._reference_logps_batch,
                    batched=True,
                    batch_size=self.args.per_device_eval_batch_size,
                    new_fingerprint=fingerprint,
                    desc=f"Reference log-probabilities of the {dataset_name} dataset",
                )
        finally:
            doctor.train(was_training)

    def _reference_logps_batch(self, batch: dict[str, list]) -> dict[str, list[list[float]]]:
        features = [{name: batch[name][i] for name in SCORED_COLUMNS} for i in range(len(batch["prompt_ids"]))]
        inputs = self._prepare_inputs(self._reference_collator(features))
        logps = self.compute_ref_logps(inputs, precomputing=True).cpu()
        lengths = inputs["completion_mask"].sum(-1).tolist()
        rows = [row[:length].tolist() for row, length in zip(logps, lengths)]
        return {REF_COLUMNS[0]: rows[: len(features)], REF_COLUMNS[1]: rows[len(features) :]}

    @torch.no_grad()
    def compute_ref_logps(self, inputs: dict[str, torch.Tensor], precomputing: bool = False) -> torch.Tensor:
        """log pi_ref(y_{t+1} | s_t) `(2B, T)` of a batch: its precomputed column, the doctor's base with the adapter
        disabled, or the frozen copy; `precomputing` runs the doctor as it is (its initial weights, before training)."""
        if "ref_token_logps" in inputs:
            return inputs["ref_token_logps"]
        lm = self.accelerator.unwrap_model(self.model).pretrained_model
        if self.ref_model is not None:
            return completion_forward(self.ref_model, inputs)[0]
        if has_adapter(lm):
            with adapter_disabled(lm):
                return completion_forward(lm, inputs)[0]
        if precomputing:
            return completion_forward(lm, inputs)[0]
        raise ValueError(
            "This batch has no precomputed reference log-probabilities (`ref_chosen_token_logps`): pass the dataset "
            "to TFPOTrainer (train_dataset / eval_dataset) so it adds them, or set precompute_ref_log_probs=False."
        )
