"""LLMdoctor guidance inside vLLM: a logits processor of vLLM's V1 interface that runs the doctors in the engine.

The doctors are configured engine-wide, in the environment variable `TFPO_HF_DOCTORS` (JSON), never by a
request; a request asks for guidance with `extra_args={"doctor_betas": ...}` (`vllm_xargs` in the OpenAI-compatible
server). See docs/guides/serving.md.

```python
>>> import json, os  # doctest: +SKIP
>>> os.environ["TFPO_HF_DOCTORS"] = json.dumps({"doctors": ["path/to/doctor"]})
>>> from vllm import LLM, SamplingParams
>>> llm = LLM("path/to/patient", logits_processors=["tfpo_hf.serving.vllm:DoctorGuidanceLogitsProcessor"])
>>> llm.generate(["Hi!"], SamplingParams(max_tokens=32, extra_args={"doctor_betas": 2.0}))
```
"""

from __future__ import annotations

import itertools

import torch
from transformers import AutoTokenizer
from vllm.logger import init_logger
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

from .guided_requests import GuidedRequests, request_betas
from .settings import REQUEST_ARG, engine_settings, from_pretrained_kwargs, place_models


logger = init_logger(__name__)


class DoctorGuidanceLogitsProcessor(LogitsProcessor):
    """vLLM logits processor (V1 interface) guiding each request that asks for it with the engine's doctors:
    `log_softmax(patient) + sum_i beta_i (log p_doctor_i - log p_ref_i)`, the betas of the request.

    - Per request: `extra_args={"doctor_betas": b}` with `b` a number (every doctor), a list (one per doctor), `0`
      (no guidance) or `"default"` (the betas the doctors record). Without it a request is not guided and costs no
      doctor work. Bad values are refused by `validate_params` (HTTP 400 in the server).
    - The doctors run in the engine-core process, on its device, once per step over the guided requests
      ([`GuidedRequests`]); a preempted request is prefilled again when it resumes (counted in `core.resumed`).
    - Model Runner V2 (vLLM's default on CUDA) takes another processor interface: run with
      `VLLM_USE_V2_MODEL_RUNNER=0`.
    """

    @classmethod
    def validate_params(cls, sampling_params) -> None:
        value = (sampling_params.extra_args or {}).get(REQUEST_ARG)
        if value is not None:
            request_betas(value, len(engine_settings()["doctors"]))

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        settings = engine_settings()
        model_config = vllm_config.model_config
        tokenizer = AutoTokenizer.from_pretrained(
            model_config.tokenizer, trust_remote_code=model_config.trust_remote_code
        )
        self.core = GuidedRequests(
            settings["doctors"],
            alpha=settings.get("alpha"),
            tokenizer=tokenizer,
            references=settings.get("references"),
            **from_pretrained_kwargs(settings),
        )
        place_models(self.core.doctors, self.core.references, device)
        self._request_ids = itertools.count()
        self._by_index: dict[int, int] = {}  # batch index -> id of a guided request

    def is_argmax_invariant(self) -> bool:
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        """Follow the persistent batch: removed, then added, then moved requests (vLLM's order)."""
        if batch_update is None:
            return
        for index in batch_update.removed:
            self._drop(index)
        for index, params, prompt_ids, output_ids in batch_update.added:
            self._drop(index)
            betas = (params.extra_args or {}).get(REQUEST_ARG)
            if betas is None:
                continue
            if prompt_ids is None:
                logger.warning("tfpo_hf: a request without prompt token ids (prompt embeddings) is not guided.")
                continue
            request = next(self._request_ids)
            self.core.add(request, prompt_ids, output_ids, betas)
            if request in self.core.requests:
                self._by_index[index] = request
        for first, second, direction in batch_update.moved:
            moving, other = self._by_index.pop(first, None), self._by_index.pop(second, None)
            if moving is not None:
                self._by_index[second] = moving
            if other is not None and direction == MoveDirectionality.SWAP:
                self._by_index[first] = other
            elif other is not None:
                self.core.remove(other)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        return self.core.apply(logits, self._by_index)

    def _drop(self, index: int) -> None:
        request = self._by_index.pop(index, None)
        if request is not None:
            self.core.remove(request)
