"""`TFPOTrainer`: trains a doctor with token-level flow-guided preference optimization (a `transformers.Trainer`)."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from datasets import Dataset
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
)

from ..doctor.model_card import write_model_card
from ..doctor.modeling import DoctorModel
from ..rewards.preference_data import SCORED_COLUMNS
from ..utils.logps import completion_forward
from .checkpoints import DoctorCheckpointMixin
from .collator import REF_COLUMNS, TokenRewardCollator
from .config import TFPOConfig
from .doctor_setup import (
    check_doctor,
    check_model_argument,
    make_doctor,
    record_training_settings,
    resolve_processing_class,
)
from .losses import prefix_scores, subtrajectory_balance_loss, value_discrimination_loss
from .reference_logps import ReferenceLogpsMixin
from .scored_dataset import prepare_datasets


# the training settings a doctor's model card lists
CARD_HYPERPARAMETERS = (
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "lambda_value",
    "gamma",
    "theta",
    "tau",
    "max_length",
)


def padding_id(processing_class: PreTrainedTokenizerBase) -> int:
    """The id batches are padded with (never attended): the pad token, else EOS, else 0."""
    for token_id in (processing_class.pad_token_id, processing_class.eos_token_id):
        if token_id is not None:
            return token_id
    return 0


class TFPOTrainer(DoctorCheckpointMixin, ReferenceLogpsMixin, Trainer):
    r"""
    Trainer for a TFPO doctor (LLMdoctor, stage 2), a [`~transformers.Trainer`]: the doctor (a causal LM with a value
    head) learns from the token rewards of preference pairs with the loss

        L = L_SubTB(chosen and rejected rows) + lambda_value * L_value(chosen against rejected states)

    where the subtrajectory-balance flow has the prefix score log Q(s_t) = sum_{k<=t} [r_k + log pi_ref(y_k | s_{k-1})].
    The reference pi_ref is the doctor's initial weights (`args.flow_reference="initial"`: a LoRA doctor's base, a
    full-weight doctor as it is when the trainer is built), or nothing (`"none"`, the paper's literal flow, kept as an
    ablation). Reference log-probabilities carry no grad: they are computed once into dataset columns
    (`args.precompute_ref_log_probs`) or per batch (LoRA: adapter disabled; full weights: a frozen copy,
    `.ref_model`). The trainer records in the doctor's `doctor_config.json` what it was trained with and how to decode
    it (ratio guidance at `args.guidance_beta`), and writes a model card on save.

    Args:
        model (`DoctorModel`, `PreTrainedModel` or `str`):
            The doctor: a [`DoctorModel`], a causal LM (a zero-initialised value head is added), or a model id / path
            (loaded with `DoctorModel.from_pretrained(model, **args.model_init_kwargs)`).
        patient_model (`PreTrainedModel`, *optional*):
            The frozen patient. Needed only when a dataset has no token rewards yet: stage 1 then runs once, here, in
            the constructor (cached by the dataset fingerprint), and the trainer keeps no reference to the patient.
        args ([`TFPOConfig`], *optional*):
            The training arguments. Defaults to `TFPOConfig("<model name>-TFPO")`.
        data_collator (`Callable`, *optional*):
            Defaults to [`TokenRewardCollator`], padding with the tokenizer's pad token (else EOS).
        train_dataset (`datasets.Dataset`, `pandas.DataFrame`, `dict[str, list]` or `list[dict]`, *optional*):
            A preference dataset in one of TRL's formats (`prompt` / `chosen` / `rejected`, standard or
            conversational, or implicit-prompt `chosen` / `rejected`), or an already scored one holding `prompt_ids`,
            `chosen_ids`, `chosen_token_rewards`, `rejected_ids` and `rejected_token_rewards`. A `pandas.DataFrame`,
            a dict of column lists or a list of row dicts is converted to a `datasets.Dataset`; a streaming
            `IterableDataset` is refused (every row is checked, and scored, before training: materialise it first).
        eval_dataset (same kinds as `train_dataset`, or a `dict` of them, *optional*):
            Same formats as `train_dataset`; a dict of named datasets (a `DatasetDict` too) is evaluated per name.
        processing_class (`PreTrainedTokenizerBase`, *optional*):
            The doctor's tokenizer, shared with the patient unless `patient_processing_class` is given. Defaults to
            the tokenizer saved with the doctor's checkpoint; required for a doctor built in memory.
        compute_metrics (`Callable`, *optional*):
            As in [`~transformers.Trainer`]; its predictions are the doctor's summed log-probabilities of shape
            `(num_examples, 2)` (chosen, rejected) and its labels 0 (the chosen column).
        callbacks (`list[TrainerCallback]`, *optional*):
            Extra callbacks.
        optimizers (`tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]`, *optional*, defaults to `(None, None)`):
            As in [`~transformers.Trainer`]. By default the value head gets its own parameter group when
            `args.value_head_learning_rate` is set.
        peft_config (`peft.PeftConfig`, *optional*):
            A PEFT config (such as `LoraConfig`): the adapter goes on the doctor's LM; the value head is trained in
            full. Refused for a doctor that already holds an adapter, and for LoRA on a truncated copy of the patient.
        patient_processing_class (`PreTrainedTokenizerBase`, *optional*):
            The patient's tokenizer, for a doctor of another family (another tokenizer; both byte-level BPE or
            SentencePiece with byte fallback). Stage 1 scores each response in the patient's tokens, then the
            rewards move onto the doctor's tokens by byte offsets, each response's total kept
            ([`~tfpo_hf.cross_tokenizer.reward_transfer.transfer_token_rewards`]); the doctor reads the prompt in
            its own chat template. Defaults to `processing_class`.

    Override [`~TFPOTrainer.loss_terms`] to train the doctor with another loss on the same batches (as the GenARM-style
    `TrajectoryBTTrainer` does). Logged, per step: `loss/subtb`, `loss/value`, `flow/log_v_mean`,
    `token_rewards/nonzero_fraction`, `logps/chosen`, `logps/rejected`, `logps/accuracies`, `logps/margins`,
    `num_tokens` and, with a reference, `rewards/chosen`, `rewards/rejected`, `rewards/accuracies`, `rewards/margins`.

    Examples:

    ```python
    >>> import tempfile
    >>> from datasets import Dataset
    >>> from transformers import PrinterCallback
    >>> from tfpo_hf import DoctorConfig, DoctorModel, TFPOConfig, TFPOTrainer
    >>> from tfpo_hf.testing import tiny_causal_lm, tiny_tokenizer

    >>> # An already scored dataset (what TokenRewardScorer.score_dataset adds); pass patient_model= to score one
    >>> scored = Dataset.from_list([
    ...     {"prompt_ids": [1, 75, 108], "chosen_ids": [75, 104, 2], "chosen_token_rewards": [0.9, 0.0, 0.0],
    ...      "rejected_ids": [81, 2], "rejected_token_rewards": [-0.8, 0.0]},
    ... ] * 4)
    >>> output_dir = tempfile.TemporaryDirectory()
    >>> args = TFPOConfig(output_dir.name, max_steps=2, per_device_train_batch_size=2, logging_steps=1,
    ...                   save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True)
    >>> trainer = TFPOTrainer(DoctorModel(tiny_causal_lm()), args=args, train_dataset=scored,
    ...                       processing_class=tiny_tokenizer())
    >>> trainer.remove_callback(PrinterCallback)  # the logs stay in trainer.state.log_history
    >>> trainer.train().global_step
    2
    >>> sorted(name for name in trainer.state.log_history[0] if name.startswith(("loss/", "rewards/")))
    ['loss/subtb', 'loss/value', 'rewards/accuracies', 'rewards/chosen', 'rewards/margins', 'rewards/rejected']
    >>> trainer.save_model()  # the LM, value_head.safetensors, doctor_config.json, a model card, the tokenizer
    >>> saved = DoctorConfig.from_pretrained(output_dir.name)
    >>> saved.flow_reference, saved.guidance, saved.beta
    ('initial', 'ratio', 2.0)
    >>> output_dir.cleanup()

    ```
    """

    _tag_names = ["trl", "tfpo", "llmdoctor"]

    def __init__(
        self,
        model: DoctorModel | PreTrainedModel | str,
        patient_model: PreTrainedModel | None = None,
        args: TFPOConfig | None = None,
        data_collator: Callable | None = None,
        train_dataset: Dataset | pd.DataFrame | dict[str, list] | list[dict] | None = None,
        eval_dataset: Dataset | pd.DataFrame | dict[str, Any] | list[dict] | None = None,
        processing_class: PreTrainedTokenizerBase | None = None,
        compute_metrics: Callable | None = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple[torch.optim.Optimizer | None, torch.optim.lr_scheduler.LambdaLR | None] = (None, None),
        peft_config: Any | None = None,
        patient_processing_class: PreTrainedTokenizerBase | None = None,
    ):
        check_model_argument(model)  # before the default `args` read its name
        if args is None:
            name = model if isinstance(model, str) else model.config.name_or_path
            args = TFPOConfig(f"{str(name).split('/')[-1]}-TFPO")
        doctor = make_doctor(model, args, peft_config)
        processing_class = resolve_processing_class(processing_class, doctor)
        check_doctor(
            doctor,
            processing_class,
            patient_model,
            args,
            model if isinstance(model, str) else None,
            patient_processing_class,
        )
        vocab_size = doctor.pretrained_model.get_input_embeddings().num_embeddings
        self._reference_collator = TokenRewardCollator(padding_id(processing_class), args.pad_to_multiple_of)
        if data_collator is None:
            data_collator = self._reference_collator

        # Stage 1 (when a dataset has no token rewards yet) needs the patient only here: the caller may free it after.
        train_dataset, eval_dataset = prepare_datasets(
            train_dataset, eval_dataset, patient_model, processing_class, args, vocab_size, patient_processing_class
        )

        super().__init__(
            model=doctor,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            compute_metrics=compute_metrics,
            callbacks=callbacks,
            optimizers=optimizers,
        )
        # Our losses are per-batch means: let Trainer divide by the gradient-accumulation steps itself.
        self.model_accepts_loss_kwargs = False
        self._metrics: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}
        record_training_settings(doctor, args, self.uses_reference, patient_model)
        if self.uses_reference:
            self._set_up_reference()

    @property
    def uses_reference(self) -> bool:
        """Whether the flow's prefix score holds the reference log-probabilities (`flow_reference="initial"`)."""
        return self.args.flow_reference == "initial"

    def create_optimizer(self, model=None):
        """Trainer's optimizer, with the value head in a group of its own when `value_head_learning_rate` is set."""
        optimizer = super().create_optimizer(model)
        if self.args.value_head_learning_rate is not None:
            doctor = self.accelerator.unwrap_model(self.model)
            head = {id(p) for p in doctor.value_head.parameters()}
            for group in optimizer.param_groups:
                group["params"] = [p for p in group["params"] if id(p) not in head]
            optimizer.add_param_group(
                {
                    "params": list(doctor.value_head.parameters()),
                    "lr": self.args.value_head_learning_rate,
                    "weight_decay": 0.0,
                }
            )
        return optimizer

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = list(SCORED_COLUMNS) + list(REF_COLUMNS)

    # ------------------------------------------------------------------ loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """One forward of the doctor over the chosen and rejected rows (`2 * batch_size` of them), the loss of
        `loss_terms` and its metrics."""
        mode = "train" if self.model.training else "eval"
        logps, outputs = completion_forward(model, inputs)
        ref_logps = self.compute_ref_logps(inputs) if self.uses_reference else None
        loss, terms = self.loss_terms(inputs, logps, outputs.log_values, ref_logps)
        self._record_metrics(mode, terms, inputs, logps, outputs.log_values, ref_logps)
        return (loss, outputs) if return_outputs else loss

    def loss_terms(
        self,
        inputs: dict[str, torch.Tensor],
        logps: torch.Tensor,
        log_values: torch.Tensor,
        ref_logps: torch.Tensor | None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss and its named terms (logged as `loss/<name>`): override this to train the doctor another way.

        TFPO: L_SubTB over the chosen and rejected rows plus lambda_value * L_value over the aligned chosen/rejected
        states.

        Args:
            inputs (`dict[str, torch.Tensor]`):
                The [`TokenRewardCollator`] batch: `completion_mask` and `token_rewards` of shape
                `(2 * batch_size, completion_length)`, the `batch_size` chosen rows first.
            logps (`torch.Tensor` of shape `(2 * batch_size, completion_length)`):
                The doctor's log pi(y_{t+1} | s_t) of each completion token.
            log_values (`torch.Tensor` of shape `(2 * batch_size, completion_length + 1)`):
                log V(s_t) of the states s_0..s_T.
            ref_logps (`torch.Tensor` of shape `(2 * batch_size, completion_length)`, *optional*):
                The reference's log-probabilities of the same tokens; `None` when the flow has no reference.

        Return:
            `tuple[torch.Tensor, dict[str, torch.Tensor]]`: the scalar loss and its named terms.
        """
        completion_mask = inputs["completion_mask"]
        rewards = inputs["token_rewards"] * completion_mask
        log_q = prefix_scores(rewards, completion_mask, ref_logps)
        subtb = subtrajectory_balance_loss(
            logps, log_q + log_values, completion_mask, max_span=self.args.subtb_max_span
        )
        pairs = completion_mask.shape[0] // 2
        aligned_mask = completion_mask[:pairs] * completion_mask[pairs:]
        value = value_discrimination_loss(
            log_values[:pairs, 1:], log_values[pairs:, 1:], aligned_mask, gamma=self.args.gamma
        )
        return subtb + self.args.lambda_value * value, {"subtb": subtb, "value": value}

    @torch.no_grad()
    def _record_metrics(self, mode, terms, inputs, logps, log_values, ref_logps=None) -> None:
        """Append this batch's loss terms, flow statistics, reward sparsity, the doctor's summed log-probabilities
        (`logps/*`) and, with a reference, the implicit rewards log pi_d - log pi_ref (`rewards/*`, as TRL logs)."""
        mask = inputs["completion_mask"].bool()
        pairs = mask.shape[0] // 2
        sequence_logps = torch.where(mask, logps, 0.0).sum(-1)
        margin = sequence_logps[:pairs] - sequence_logps[pairs:]
        state_mask = torch.nn.functional.pad(mask, (1, 0), value=True)
        metrics = {
            **{f"loss/{name}": term.detach() for name, term in terms.items()},
            "flow/log_v_mean": log_values[state_mask].mean(),
            "token_rewards/nonzero_fraction": (inputs["token_rewards"][mask] != 0).float().mean(),
            "logps/chosen": sequence_logps[:pairs].mean(),
            "logps/rejected": sequence_logps[pairs:].mean(),
            "logps/accuracies": (margin > 0).float().mean(),
            "logps/margins": margin.mean(),
            "num_tokens": mask.sum().float(),
        }
        if ref_logps is not None:
            log_ratios = torch.where(mask, logps - ref_logps, 0.0)
            summed = log_ratios.sum(-1)
            metrics |= {
                "rewards/chosen": log_ratios[:pairs].sum() / mask[:pairs].sum().clamp(min=1),
                "rewards/rejected": log_ratios[pairs:].sum() / mask[pairs:].sum().clamp(min=1),
                "rewards/accuracies": (summed[:pairs] > summed[pairs:]).float().mean(),
                "rewards/margins": (summed[:pairs] - summed[pairs:]).mean(),
            }
        gather = self.accelerator.gather_for_metrics
        for name, metric in metrics.items():
            self._metrics[mode][name].append(gather(metric).float().mean().item())

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """The loss and, for `compute_metrics`, the doctor's summed log-probabilities of shape `(batch_size, 2)`
        (chosen, rejected), with labels 0 (the chosen column), as TRL's DPO returns its chosen/rejected rewards."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
            if prediction_loss_only:
                return loss.detach(), None, None
            logps, _ = completion_forward(model, inputs)
        sequence_logps = torch.where(inputs["completion_mask"].bool(), logps, 0.0).sum(-1)
        logits = torch.stack(sequence_logps.chunk(2), dim=1)
        return loss.detach(), logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        metrics = {key: sum(values) / len(values) for key, values in self._metrics[mode].items() if values}
        if mode == "eval":
            metrics = {f"eval_{key}": value for key, value in metrics.items()}
        logs.update(metrics)
        super().log(logs, start_time)
        self._metrics[mode].clear()

    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None, **kwargs) -> None:
        """Write `README.md` in `output_dir`: method, citation, dataset, hyperparameters, last metrics, usage."""
        if not self.is_world_process_zero():
            return
        os.makedirs(self.args.output_dir, exist_ok=True)
        last_metrics = next((entry for entry in reversed(self.state.log_history) if "num_tokens" in entry), {})
        hyperparameters = {name: getattr(self.args, name) for name in CARD_HYPERPARAMETERS}
        doctor = self.accelerator.unwrap_model(self.model)
        write_model_card(
            Path(self.args.output_dir) / "README.md",
            doctor.doctor_config,
            base_model=doctor.config.name_or_path or None,
            dataset_name=dataset_name,
            hyperparameters=hyperparameters,
            metrics={k: v for k, v in last_metrics.items() if isinstance(v, (int, float)) and k != "step"},
        )
