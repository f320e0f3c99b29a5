"""`TFPOTrainer`: trains a doctor with token-level flow-guided preference optimization (a `transformers.Trainer`)."""

from __future__ import annotations

import copy
import logging
import os
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import torch
from datasets import Dataset
from datasets.fingerprint import Hasher
from torch import nn
from transformers import (
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
)

from .adapters import adapter_disabled, base_model_name_or_path, has_adapter
from .collator import REF_COLUMNS, TokenRewardCollator
from .config import TFPOConfig
from .data import SCORED_COLUMNS, preference_format, truncate_pair
from .fingerprint import weights_probe
from .losses import prefix_scores, subtrajectory_balance_loss, value_discrimination_loss
from .model_card import write_model_card
from .modeling import DoctorModel
from .rewards import TokenRewardScorer

logger = logging.getLogger(__name__)


def completion_logprobs(logits: torch.Tensor, completion_ids: torch.Tensor) -> torch.Tensor:
    """log pi(y_{t+1} | s_t) [N, T] from logits [N, T, V] of states s_0..s_{T-1} and the tokens [N, T] they chose.

    Computed as gathered logit minus logsumexp, one row at a time, so no [N, T, V] log-softmax is materialised.
    """
    return torch.stack(
        [
            row_logits.float().gather(-1, row_ids[:, None]).squeeze(-1) - row_logits.float().logsumexp(-1)
            for row_logits, row_ids in zip(logits, completion_ids)
        ]
    )


def completion_forward(model: nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Any]:
    """Run `model` (a `DoctorModel` or a plain causal LM) over a `TokenRewardCollator` batch.

    Only the last T+1 columns (states s_0..s_T) go through the heads; the logits of s_0..s_{T-1} score the response
    tokens y_1..y_T. Returns (log pi(y_{t+1} | s_t) [2B, T], the model's raw outputs).
    """
    completion_width = inputs["completion_mask"].shape[1]
    prompt_width = inputs["input_ids"].shape[1] - completion_width
    position_ids = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    outputs = model(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        position_ids=position_ids,
        logits_to_keep=completion_width + 1,
        use_cache=False,
    )
    return completion_logprobs(outputs.logits[:, :-1], inputs["input_ids"][:, prompt_width:]), outputs


def _validate_scored_example(example: dict[str, Any], index: int, args: TFPOConfig) -> dict[str, Any]:
    """Check one scored example (lengths, empty prompt, finite rewards) and apply `max_length` to ids and rewards."""
    for side in ("chosen", "rejected"):
        ids, rewards = example[f"{side}_ids"], example[f"{side}_token_rewards"]
        if len(ids) != len(rewards):
            raise ValueError(
                f"Example {index}: `{side}_ids` has {len(ids)} tokens but `{side}_token_rewards` has {len(rewards)} "
                "values; each rewards list must be as long as its ids list (re-run TokenRewardScorer.score_dataset)."
            )
        if not all(map(lambda r: r == r and abs(r) != float("inf"), rewards)):
            raise ValueError(f"Example {index}: `{side}_token_rewards` holds NaN or inf values.")
    if not example["prompt_ids"]:
        raise ValueError(
            f"Example {index} has an empty prompt: the doctor needs at least one prompt token for the state s_0. "
            "Give the example a prompt (or use a tokenizer that adds a BOS token)."
        )
    prompt_ids, chosen_ids, rejected_ids, _ = truncate_pair(
        example["prompt_ids"], example["chosen_ids"], example["rejected_ids"],
        args.max_length, args.max_prompt_length, args.truncation_mode,
    )
    return {
        "prompt_ids": prompt_ids,
        "chosen_ids": chosen_ids,
        "rejected_ids": rejected_ids,
        "chosen_token_rewards": example["chosen_token_rewards"][: len(chosen_ids)],
        "rejected_token_rewards": example["rejected_token_rewards"][: len(rejected_ids)],
    }


class TFPOTrainer(Trainer):
    """Trainer for a TFPO doctor: L = L_SubTB(chosen and rejected rows) + lambda_value * L_value.

    The flow's prefix score is log Q(s_t) = sum_{k<=t} [r_k + log pi_ref(y_k | s_{k-1})] with pi_ref the doctor's
    initial weights (`args.flow_reference="initial"`: a LoRA doctor's base, a full-weight doctor as it is when the
    trainer is built), or the cumulative reward alone (`"none"`, the paper's literal form). Reference
    log-probabilities carry no grad; they are computed once into dataset columns (`precompute_ref_log_probs`) or per
    batch (LoRA: adapter disabled; full weights: a frozen copy).

    Args:
        model: a `DoctorModel`, a causal LM (a value head is added), or a model id / path.
        patient_model: the frozen patient; needed only when `train_dataset` has no token rewards yet, in which
            case stage 1 runs once before training (cached by the dataset fingerprint) and the patient is dropped.
        args: a `TFPOConfig`.
        data_collator: defaults to `TokenRewardCollator`.
        train_dataset, eval_dataset: preference datasets in TRL's formats, or already scored ones.
        processing_class: the tokenizer shared by patient and doctor (loaded from `model` when omitted).
        peft_config: a PEFT config; LoRA goes on the LM, the value head is trained in full.
        callbacks: extra `TrainerCallback`s.
    """

    _tag_names = ["trl", "tfpo", "llmdoctor"]

    def __init__(
        self,
        model: DoctorModel | PreTrainedModel | str,
        patient_model: PreTrainedModel | None = None,
        args: TFPOConfig | None = None,
        data_collator: Callable | None = None,
        train_dataset: Dataset | None = None,
        eval_dataset: Dataset | dict[str, Dataset] | None = None,
        processing_class: PreTrainedTokenizerBase | None = None,
        peft_config: Any | None = None,
        callbacks: list[TrainerCallback] | None = None,
    ):
        if args is None:
            name = model if isinstance(model, str) else model.config.name_or_path
            args = TFPOConfig(f"{str(name).split('/')[-1]}-TFPO")
        doctor = self._make_doctor(model, args, peft_config)
        if processing_class is None:
            processing_class = AutoTokenizer.from_pretrained(doctor.config.name_or_path)
        if patient_model is not None:
            self._check_vocabularies(doctor, patient_model)
        pad_token_id = processing_class.pad_token_id
        if pad_token_id is None:
            pad_token_id = processing_class.eos_token_id if processing_class.eos_token_id is not None else 0
        self._reference_collator = TokenRewardCollator(pad_token_id, args.pad_to_multiple_of)
        if data_collator is None:
            data_collator = self._reference_collator

        self.patient_model = patient_model
        if train_dataset is not None:
            train_dataset = self._prepare_dataset(train_dataset, processing_class, args, "train")
        if isinstance(eval_dataset, dict):
            eval_dataset = {k: self._prepare_dataset(v, processing_class, args, k) for k, v in eval_dataset.items()}
        elif eval_dataset is not None:
            eval_dataset = self._prepare_dataset(eval_dataset, processing_class, args, "eval")
        self.patient_model = None  # stage 1 is done: let the caller free the patient

        super().__init__(
            model=doctor,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
        )
        # Our losses are per-batch means: let Trainer divide by the gradient-accumulation steps itself.
        self.model_accepts_loss_kwargs = False
        self._metrics: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}
        self._record_doctor_settings(doctor, patient_model)
        self.ref_model = None
        if self.uses_reference:
            self._set_up_reference()

    @property
    def uses_reference(self) -> bool:
        """Whether the flow's prefix score holds the reference log-probabilities (`flow_reference="initial"`)."""
        return self.args.flow_reference == "initial"

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _make_doctor(model: DoctorModel | PreTrainedModel | str, args: TFPOConfig, peft_config: Any | None) -> DoctorModel:
        if isinstance(model, str):
            doctor = DoctorModel.from_pretrained(model, **(args.model_init_kwargs or {}))
        elif isinstance(model, DoctorModel):
            doctor = model
        elif isinstance(model, nn.Module) and hasattr(model, "get_output_embeddings"):
            doctor = DoctorModel(model)
        else:
            raise TypeError(f"`model` must be a DoctorModel, a causal LM or a model id, got {type(model).__name__}.")
        if peft_config is not None:
            from peft import get_peft_model

            if hasattr(doctor.pretrained_model, "peft_config"):
                raise ValueError("The doctor already holds a PEFT adapter; do not pass `peft_config` as well.")
            doctor.pretrained_model = get_peft_model(doctor.pretrained_model, peft_config)
        return doctor

    def _record_doctor_settings(self, doctor: DoctorModel, patient: PreTrainedModel | None) -> None:
        """Write into `doctor.tfpo_config` (saved as tfpo_config.json) the reward settings, the flow reference and the
        decoding defaults: ratio guidance against the reference for a reference-anchored doctor, else the mix."""
        reference_name = base_model_name_or_path(doctor.pretrained_model)
        if patient is not None:
            doctor.tfpo_config["patient_name_or_path"] = patient.config.name_or_path
            depth = doctor.config.get_text_config().num_hidden_layers
            if reference_name == patient.config.name_or_path and depth == patient.config.get_text_config().num_hidden_layers:
                doctor.tfpo_config["copy_of_patient"] = True
        args = self.args
        doctor.tfpo_config.update(
            theta=args.theta,
            tau=args.tau,
            positive_system_prompt=args.positive_system_prompt,
            negative_system_prompt=args.negative_system_prompt,
            flow_reference="initial" if self.uses_reference else "none",
            reference_name_or_path=reference_name,
            reference_num_layers=doctor.config.get_text_config().num_hidden_layers,
            alpha=args.guidance_alpha,
            beta=args.guidance_beta,
            guidance="ratio" if self.uses_reference else "mix",
        )
        if self.uses_reference:  # a copy of the patient decodes against the patient's own scores: no extra forward
            doctor.tfpo_config["guidance_reference"] = (
                "patient" if doctor.tfpo_config.get("copy_of_patient") else "initial"
            )
        else:
            doctor.tfpo_config.pop("guidance_reference", None)

    @staticmethod
    def _check_vocabularies(doctor: DoctorModel, patient: PreTrainedModel) -> None:
        doctor_vocab = doctor.pretrained_model.get_output_embeddings().weight.shape[0]
        patient_vocab = patient.get_output_embeddings().weight.shape[0]
        if doctor_vocab != patient_vocab:
            raise ValueError(
                f"The doctor's vocabulary has {doctor_vocab} tokens but the patient's has {patient_vocab}: token "
                "rewards are indexed by the patient's tokens, so both must share one tokenizer. Pick a doctor from "
                "the patient's family, or `DoctorModel.from_patient(patient, num_layers)`."
            )

    def _prepare_dataset(
        self, dataset: Dataset, processing_class: PreTrainedTokenizerBase, args: TFPOConfig, dataset_name: str
    ) -> Dataset:
        """Score the dataset with the patient if it has no token rewards, then validate and truncate it."""
        if preference_format(dataset.column_names) != "scored":
            if self.patient_model is None:
                raise ValueError(
                    f"The {dataset_name} dataset has no token rewards ({list(SCORED_COLUMNS)}). Either pass "
                    "`patient_model=` to TFPOTrainer so it scores the dataset before training, or score it yourself "
                    "with `TokenRewardScorer(patient, tokenizer).score_dataset(dataset)`."
                )
            scorer = TokenRewardScorer(self.patient_model, processing_class, args.to_token_reward_config())
            dataset = scorer.score_dataset(dataset, num_proc=args.dataset_num_proc)
        dataset = dataset.map(
            _validate_scored_example,
            with_indices=True,
            fn_kwargs={"args": args},
            num_proc=args.dataset_num_proc,
            desc=f"Checking the {dataset_name} dataset",
        )
        if all(
            not any(rewards) for column in ("chosen_token_rewards", "rejected_token_rewards") for rewards in dataset[column]
        ):
            warnings.warn(
                f"Every token reward of the {dataset_name} dataset is zero: the flow loss then only shapes the value "
                "head and the doctor will not learn a preference. Lower theta or check the face prompts.",
                stacklevel=3,
            )
        return dataset

    def create_optimizer(self, model=None):
        """Trainer's optimizer, with the value head in a group of its own when `value_head_learning_rate` is set."""
        optimizer = super().create_optimizer(model)
        if self.args.value_head_learning_rate is not None:
            doctor = self.accelerator.unwrap_model(self.model)
            head = {id(p) for p in doctor.value_head.parameters()}
            for group in optimizer.param_groups:
                group["params"] = [p for p in group["params"] if id(p) not in head]
            optimizer.add_param_group(
                {"params": list(doctor.value_head.parameters()), "lr": self.args.value_head_learning_rate,
                 "weight_decay": 0.0}
            )
        return optimizer

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = list(SCORED_COLUMNS) + list(REF_COLUMNS)

    # ------------------------------------------------------------------ reference policy
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
            self.ref_model = self.accelerator.prepare_model(reference.eval().requires_grad_(False), evaluation_mode=True)

    def _add_reference_logps(self, dataset: Dataset, dataset_name: str) -> Dataset:
        """Add `ref_chosen_token_logps` and `ref_rejected_token_logps`: log pi_ref of every response token.

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
        logps = self.compute_ref_logprobs(inputs, precomputing=True).cpu()
        lengths = inputs["completion_mask"].sum(-1).tolist()
        rows = [row[:length].tolist() for row, length in zip(logps, lengths)]
        return {REF_COLUMNS[0]: rows[: len(features)], REF_COLUMNS[1]: rows[len(features) :]}

    @torch.no_grad()
    def compute_ref_logprobs(self, inputs: dict[str, torch.Tensor], precomputing: bool = False) -> torch.Tensor:
        """log pi_ref(y_{t+1} | s_t) [2B, T] of a batch: its precomputed column, the doctor's base with the adapter
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

    # ------------------------------------------------------------------ loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """L_SubTB over the 2B chosen+rejected rows plus lambda_value * L_value over aligned chosen/rejected states."""
        mode = "train" if self.model.training else "eval"
        completion_mask = inputs["completion_mask"]
        logprobs, outputs = completion_forward(model, inputs)
        log_values = outputs.log_values
        ref_logprobs = self.compute_ref_logprobs(inputs) if self.uses_reference else None
        rewards = inputs["token_rewards"] * completion_mask
        log_q = prefix_scores(rewards, completion_mask, ref_logprobs)
        subtb = subtrajectory_balance_loss(
            logprobs, log_q + log_values, completion_mask, max_span=self.args.subtb_max_span
        )
        pairs = completion_mask.shape[0] // 2
        aligned_mask = completion_mask[:pairs] * completion_mask[pairs:]
        value = value_discrimination_loss(
            log_values[:pairs, 1:], log_values[pairs:, 1:], aligned_mask, gamma=self.args.gamma
        )
        loss = subtb + self.args.lambda_value * value
        self._record_metrics(
            mode, {"loss/subtb": subtb, "loss/value": value}, logprobs, log_values, rewards, completion_mask,
            ref_logprobs,
        )
        return (loss, outputs) if return_outputs else loss

    @torch.no_grad()
    def _record_metrics(
        self, mode, losses, logprobs, log_values, rewards, completion_mask, ref_logprobs=None
    ) -> None:
        """Append this batch's losses, flow statistics, reward sparsity, doctor preference accuracy/margin and, with
        a reference, the implicit token rewards log pi_d - log pi_ref (as TRL's `rewards/*`)."""
        pairs = completion_mask.shape[0] // 2
        mask = completion_mask.bool()
        sequence_logps = torch.where(mask, logprobs, 0.0).sum(-1)
        margin = sequence_logps[:pairs] - sequence_logps[pairs:]
        state_mask = torch.nn.functional.pad(mask, (1, 0), value=True)
        metrics = {
            **{name: loss.detach() for name, loss in losses.items()},
            "flow/log_v_mean": log_values[state_mask].mean().detach(),
            "token_rewards/nonzero_fraction": (rewards[mask] != 0).float().mean(),
            "doctor/accuracy": (margin > 0).float().mean(),
            "doctor/margin": margin.mean(),
            "num_tokens": mask.sum().float(),
        }
        if ref_logprobs is not None:
            log_ratios = torch.where(mask, logprobs - ref_logprobs, 0.0)
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
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        metrics = {key: sum(values) / len(values) for key, values in self._metrics[mode].items() if values}
        if mode == "eval":
            metrics = {f"eval_{key}": value for key, value in metrics.items()}
        logs.update(metrics)
        super().log(logs, start_time)
        self._metrics[mode].clear()

    # ------------------------------------------------------------------ saving and resuming
    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Save the doctor with `DoctorModel.save_pretrained` (LM checkpoint + value head + tfpo_config.json)."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        doctor = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        doctor.save_pretrained(output_dir, state_dict=state_dict)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        doctor = self.accelerator.unwrap_model(model if model is not None else self.model, keep_torch_compile=False)
        doctor.load_doctor_weights(resume_from_checkpoint)

    def _save_checkpoint(self, model, trial):
        model_name = Path(self.args.output_dir).name if self.args.hub_model_id is None else self.args.hub_model_id.split("/")[-1]
        self.create_model_card(model_name=model_name)
        super()._save_checkpoint(model, trial)

    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None, **kwargs) -> None:
        """Write `README.md` in `output_dir`: method, citation, dataset, hyperparameters, last metrics, usage."""
        if not self.is_world_process_zero():
            return
        os.makedirs(self.args.output_dir, exist_ok=True)
        last_metrics = next((entry for entry in reversed(self.state.log_history) if "loss/subtb" in entry), {})
        hyperparameters = {
            name: getattr(self.args, name)
            for name in ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
                         "gradient_accumulation_steps", "lambda_value", "gamma", "theta", "tau", "max_length")
        }
        doctor = self.accelerator.unwrap_model(self.model)
        write_model_card(
            Path(self.args.output_dir) / "README.md",
            doctor.tfpo_config,
            base_model=doctor.config.name_or_path or None,
            dataset_name=dataset_name,
            hyperparameters=hyperparameters,
            metrics={k: v for k, v in last_metrics.items() if isinstance(v, (int, float)) and k != "step"},
        )
