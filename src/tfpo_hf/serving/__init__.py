"""Doctor guidance inside serving engines: `GuidedRequests`, the engine-independent core (requests with betas of
their own, joining and leaving a batch at any step), the vLLM logits processor in `tfpo_hf.serving.vllm` (imported
only with vLLM installed), and the `transformers serve` recipe in `tfpo_hf.serving.transformers_serve`."""

from .guided_requests import GuidedRequests
from .request_rows import RequestRows


__all__ = ["GuidedRequests", "RequestRows"]
