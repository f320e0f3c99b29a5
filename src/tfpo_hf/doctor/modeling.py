"""The doctor (`DoctorModel`): a causal LM plus a value head (`ValueHead`) that outputs log V(s_t) for every state, in
one forward; and `truncated_causal_lm`, the first layers of a model as a cheap doctor.

On disk a doctor is a plain causal-LM checkpoint (loadable alone by `AutoModelForCausalLM.from_pretrained`,
which is all decoding needs) plus two files of its own:

- `value_head.safetensors`: the value head's weights;
- `doctor_config.json`: the decoding defaults (alpha, beta), the face prompts and reward settings it was trained
  with, and the patient it was trained for.

With LoRA (PEFT) the LM part is saved as an adapter; the value head is always trained and saved in full.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers.utils import ModelOutput

from ..utils.adapters import has_adapter, save_adapter
from ..utils.constants import ADAPTER_CONFIG_NAME, VALUE_HEAD_WEIGHTS_NAME
from ..utils.hub import check_name_or_path, find_file, hub_kwargs_of, resolve_local_path, safe_loading_kwargs
from .config import DoctorConfig
from .model_card import write_model_card
from .saving import (
    STAGING_MARKER,
    check_adapter_base_reloadable,
    load_lm_weights,
    load_state_file,
    make_staging_folder,
    remove_stale_staging_folders,
)


LM_PREFIX = "pretrained_model."
VALUE_HEAD_PREFIX = "value_head."


def truncated_causal_lm(model: PreTrainedModel, num_layers: int) -> PreTrainedModel:
    """A copy of `model` keeping only its first `num_layers` decoder layers: a cheap doctor sharing the tokenizer.

    Works for decoder-only models whose decoder keeps its blocks in `.layers` (Llama, Qwen2, Mistral, Gemma, ...).
    """
    decoder = model.get_decoder()
    total_layers = len(decoder.layers)
    if not 1 <= num_layers <= total_layers:
        raise ValueError(f"num_layers must be between 1 and {total_layers} (the model's depth), got {num_layers}.")
    truncated = copy.deepcopy(model)
    truncated_decoder = truncated.get_decoder()
    truncated_decoder.layers = nn.ModuleList(list(truncated_decoder.layers)[:num_layers])
    truncated.config.num_hidden_layers = num_layers
    if getattr(truncated.config, "layer_types", None) is not None:
        truncated.config.layer_types = truncated.config.layer_types[:num_layers]
    return truncated


class ValueHead(nn.Module):
    """Maps a hidden state to log V(s): one linear layer, so V = exp(output) > 0 with no clamping.

    Initialised to zero, so every state starts with V = 1 and the flow starts as the prefix score Q.
    """

    def __init__(self, hidden_size: int):
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.summary.weight)
        nn.init.zeros_(self.summary.bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Hidden states of shape `(batch_size, sequence_length, hidden_size)` -> log V of shape
        `(batch_size, sequence_length)` (float32 whatever the LM's dtype)."""
        return self.summary(hidden_states.to(self.summary.weight.dtype)).squeeze(-1).float()


@dataclass
class DoctorOutput(ModelOutput):
    """Output of `DoctorModel.forward`.

    Attributes:
        logits (`torch.FloatTensor` of shape `(batch_size, logits_to_keep, vocab_size)`):
            Next-token logits of the last `logits_to_keep` positions (all `sequence_length` of them if 0).
        log_values (`torch.FloatTensor` of shape `(batch_size, logits_to_keep)`):
            log V of the states at the same positions (float32).
    """

    logits: torch.Tensor | None = None
    log_values: torch.Tensor | None = None


class DoctorModel(nn.Module):
    r"""
    The doctor of LLMdoctor: a causal LM (`pretrained_model`, optionally a PEFT model) and a [`ValueHead`] on its last
    hidden state, so one forward gives the next-token logits (the doctor's policy pi_d) and log V(s_t) of every state.
    [`TFPOTrainer`] trains it; decoding only needs its LM, which [`DoctorLogitsProcessor`] and [`GuidedModel`] load
    with `AutoModelForCausalLM.from_pretrained`.

    On disk a doctor is the LM's own checkpoint (a LoRA adapter for a LoRA doctor), `value_head.safetensors` and
    `doctor_config.json` (its [`DoctorConfig`]); `save_pretrained` also writes a model card when the folder has none.

    Args:
        pretrained_model (`PreTrainedModel`):
            The causal LM: any `AutoModelForCausalLM` model, or a `PeftModel` around one.
        value_head (`ValueHead`, *optional*):
            An existing value head. Defaults to a zero-initialised one (V = 1 at every state at the start).
        doctor_config (`DoctorConfig` or `dict[str, Any]`, *optional*):
            What the doctor records about itself: the patient it was trained for, the reward settings, its flow
            reference and its decoding defaults (see [`DoctorConfig`]). Defaults to an empty config.

    Raises:
        `ValueError`: `pretrained_model` is not a causal LM (`None`, a path: use [`~DoctorModel.from_pretrained`]).

    Construct one with [`~DoctorModel.from_patient`] (a copy of the patient, whole or truncated) or
    [`~DoctorModel.from_pretrained`] (a saved doctor, or any causal LM checkpoint); save it with
    [`~DoctorModel.save_pretrained`] or [`~DoctorModel.push_to_hub`].

    Examples:

    ```python
    >>> import os
    >>> import tempfile
    >>> import torch
    >>> from tfpo_hf import DoctorModel
    >>> from tfpo_hf.testing import tiny_causal_lm

    >>> patient = tiny_causal_lm()
    >>> doctor = DoctorModel.from_patient(patient)  # a whole copy; from_patient(patient, num_layers=1) truncates
    >>> doctor.doctor_config.copy_of_patient
    True
    >>> input_ids = torch.tensor([[1, 72, 105, 33]])  # (batch_size, sequence_length)
    >>> outputs = doctor(input_ids)
    >>> outputs.logits.shape  # (batch_size, sequence_length, vocab_size)
    torch.Size([1, 4, 259])
    >>> print(outputs.log_values)  # (batch_size, sequence_length); the value head starts at zero: V = 1
    tensor([[0., 0., 0., 0.]], grad_fn=<SqueezeBackward1>)
    >>> doctor(input_ids, logits_to_keep=1).logits.shape  # only the last position
    torch.Size([1, 1, 259])

    >>> with tempfile.TemporaryDirectory() as folder:
    ...     doctor.save_pretrained(folder)
    ...     saved = set(os.listdir(folder))
    ...     reloaded = DoctorModel.from_pretrained(folder)
    >>> {"model.safetensors", "value_head.safetensors", "doctor_config.json", "README.md"} <= saved
    True
    >>> torch.equal(reloaded(input_ids).logits, outputs.logits)
    True

    ```
    """

    def __init__(
        self,
        pretrained_model: PreTrainedModel,
        value_head: ValueHead | None = None,
        doctor_config: DoctorConfig | dict[str, Any] | None = None,
    ):
        if not isinstance(pretrained_model, nn.Module) or not hasattr(pretrained_model, "config"):
            given = "None" if pretrained_model is None else f"a {type(pretrained_model).__name__}"
            raise ValueError(
                "`pretrained_model` must be a causal LM (a transformers `PreTrainedModel`, or a `PeftModel` around "
                f"one), got {given}. "
                "Load one with `AutoModelForCausalLM.from_pretrained`, or load a saved doctor with "
                "`DoctorModel.from_pretrained(path)`."
            )
        super().__init__()
        self.pretrained_model = pretrained_model
        hidden_size = pretrained_model.config.get_text_config().hidden_size
        self.value_head = value_head if value_head is not None else ValueHead(hidden_size)
        self.value_head.to(device=next(pretrained_model.parameters()).device)
        self.doctor_config = DoctorConfig.from_dict(doctor_config)

    # Attributes `Trainer` and `generate` read from the model they are given.
    @property
    def config(self):
        return self.pretrained_model.config

    @property
    def device(self) -> torch.device:
        return self.pretrained_model.device

    @property
    def main_input_name(self) -> str:
        return "input_ids"

    def activation_checkpointing_enable(self, **kwargs) -> None:
        self.pretrained_model.activation_checkpointing_enable(**kwargs)

    def gradient_checkpointing_enable(self, **kwargs) -> None:  # the name Trainer calls before transformers 5.2x
        self.pretrained_model.gradient_checkpointing_enable(**kwargs)

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        return self.pretrained_model.num_parameters(only_trainable, exclude_embeddings) + sum(
            p.numel() for p in self.value_head.parameters() if p.requires_grad or not only_trainable
        )

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        logits_to_keep: int = 0,
        **kwargs,
    ) -> DoctorOutput:
        """One forward for both heads.

        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
                The token ids.
            attention_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`, *optional*):
                1 for real tokens, 0 for padding.
            position_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
                Positions of the tokens; pass them under left padding (`tfpo_hf.utils.logps.position_ids_from_mask`).
            logits_to_keep (`int`, *optional*, defaults to `0`):
                Keep only the last `logits_to_keep` positions of both outputs (0 keeps all of them).
            kwargs (`dict[str, Any]`, *optional*):
                Passed on to the LM's forward (`use_cache` defaults to `False`).

        Return:
            [`DoctorOutput`]: `logits` and `log_values`.
        """
        outputs = self.pretrained_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            logits_to_keep=logits_to_keep,
            output_hidden_states=True,
            use_cache=kwargs.pop("use_cache", False),
            **kwargs,
        )
        last_hidden = outputs.hidden_states[-1]
        if logits_to_keep:
            last_hidden = last_hidden[:, -logits_to_keep:]
        return DoctorOutput(logits=outputs.logits, log_values=self.value_head(last_hidden))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_patient(cls, patient: PreTrainedModel, num_layers: int | None = None) -> DoctorModel:
        """A doctor made of a copy of the patient's first `num_layers` layers (all of them when None): it shares the
        patient's tokenizer and vocabulary. A full copy (the usual base of a LoRA doctor) is recorded as
        `copy_of_patient`, so ratio guidance can use the patient's own log-probabilities as the reference."""
        depth = len(patient.get_decoder().layers)
        num_layers = depth if num_layers is None else num_layers
        config = DoctorConfig(patient_name_or_path=patient.config.name_or_path, copy_of_patient=num_layers == depth)
        return cls(truncated_causal_lm(patient, num_layers), doctor_config=config)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **model_kwargs) -> DoctorModel:
        """Load a saved doctor, or start a new one (fresh value head) from any causal LM checkpoint or Hub id.

        `model_kwargs` go to `AutoModelForCausalLM.from_pretrained` (`dtype`, `revision`, `token`, ...); with
        `subfolder`, the value head and `doctor_config.json` are read from that subfolder too. A directory holding a
        LoRA adapter loads its base model and the adapter (trainable).

        Pickled weights (`pytorch_model.bin`, `adapter_model.bin`, `*.pt`, those of the `variant` asked for) are
        refused unless `use_safetensors=False` is given; the value head is only ever read from
        `value_head.safetensors`.

        Raises:
            FileNotFoundError: a local path (see `tfpo_hf.utils.hub.looks_like_local_path`) that does not exist.
            ValueError: a name that is not a `str` or `os.PathLike`, a checkpoint holding pickled weights only, or a
                corrupted `value_head.safetensors` or `doctor_config.json` (the error names the file).
        """
        check_name_or_path("pretrained_model_name_or_path", pretrained_model_name_or_path)
        name = resolve_local_path(pretrained_model_name_or_path)
        if os.path.isfile(name):
            raise ValueError(f"{name} is a file: pass the folder that holds the doctor's files.")
        model_kwargs = safe_loading_kwargs(name, model_kwargs)
        hub_kwargs = hub_kwargs_of(model_kwargs)
        if find_file(name, ADAPTER_CONFIG_NAME, hub_kwargs):
            from peft import AutoPeftModelForCausalLM

            lm = AutoPeftModelForCausalLM.from_pretrained(name, is_trainable=True, **model_kwargs)
        else:
            lm = AutoModelForCausalLM.from_pretrained(name, **model_kwargs)
        doctor = cls(lm)
        head_file = find_file(name, VALUE_HEAD_WEIGHTS_NAME, hub_kwargs)
        if head_file:
            load_state_file(doctor.value_head, head_file, VALUE_HEAD_PREFIX)
        doctor.doctor_config = DoctorConfig.from_pretrained(name, **hub_kwargs)
        return doctor

    # ------------------------------------------------------------------ saving
    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        state_dict: dict[str, torch.Tensor] | None = None,
        is_main_process: bool = True,
        **kwargs,
    ) -> None:
        """Write the LM checkpoint (safetensors), `value_head.safetensors`, `doctor_config.json` and a model card.

        Files are first written to a staging folder `.<name>.tmp-*` beside `save_directory`, then moved in one by one
        with `os.replace`, so an interrupted save never leaves a half-written file; the staging folders an interrupted
        save left in the same parent are deleted first. `state_dict` (full doctor keys, as `Trainer` passes under
        FSDP/DeepSpeed) overrides the live weights.

        Raises:
            ValueError: before anything is written, for a LoRA doctor whose base could not be reloaded (an in-memory
                base, or a truncated copy of the patient): merge the adapter or save the base first.
        """
        if not is_main_process:
            return
        check_adapter_base_reloadable(self.pretrained_model, self.doctor_config)
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        remove_stale_staging_folders(save_directory.parent)
        if state_dict is None:
            state_dict = self.state_dict()
        lm_state = _strip_prefix(state_dict, LM_PREFIX)
        head_state = {
            VALUE_HEAD_PREFIX + k: v.contiguous() for k, v in _strip_prefix(state_dict, VALUE_HEAD_PREFIX).items()
        }
        staging = make_staging_folder(save_directory)
        try:
            if has_adapter(self.pretrained_model):
                save_adapter(self.pretrained_model, staging, **kwargs)  # PEFT picks its own adapter weights
            else:
                self.pretrained_model.save_pretrained(staging, state_dict=lm_state, **kwargs)
            save_file(head_state, str(staging / VALUE_HEAD_WEIGHTS_NAME), metadata={"format": "pt"})
            self.doctor_config.save_pretrained(staging)
            if not (save_directory / "README.md").exists():
                write_model_card(staging / "README.md", self.doctor_config, base_model=self.config.name_or_path)
            for item in staging.iterdir():
                if item.name != STAGING_MARKER:
                    os.replace(item, save_directory / item.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str = "Upload TFPO doctor",
        private: bool | None = None,
        token: str | None = None,
        revision: str | None = None,
        tokenizer=None,
    ) -> str:
        """Save to a temporary folder (with `tokenizer`, when given, so `DoctorLogitsProcessor` can check it against
        the patient's) and upload it as one commit; returns the commit URL."""
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder)
            if tokenizer is not None:
                tokenizer.save_pretrained(folder)
            commit = api.upload_folder(
                repo_id=repo_id, folder_path=folder, commit_message=commit_message, revision=revision
            )
        return str(commit)

    def load_doctor_weights(self, checkpoint_dir: str | os.PathLike) -> None:
        """Load weights saved by `save_pretrained` into this doctor in place (used to resume training and to load
        the best checkpoint at the end).

        Raises:
            FileNotFoundError: `checkpoint_dir` does not exist or lacks `value_head.safetensors`.
            ValueError: a weights file cannot be loaded (the error names it).
        """
        checkpoint_dir = Path(resolve_local_path(checkpoint_dir))
        head_file = checkpoint_dir / VALUE_HEAD_WEIGHTS_NAME
        if not head_file.is_file():
            raise FileNotFoundError(
                f"{head_file} does not exist: {checkpoint_dir} was not saved by `DoctorModel.save_pretrained`, or its "
                "save was interrupted. Load another checkpoint, or re-save this one."
            )
        load_lm_weights(self.pretrained_model, checkpoint_dir)
        load_state_file(self.value_head, head_file, VALUE_HEAD_PREFIX)


def _strip_prefix(state_dict: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
