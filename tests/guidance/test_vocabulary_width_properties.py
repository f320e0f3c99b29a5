"""Property tests (hypothesis) of `DoctorLogitsProcessor(..., tokenizer=tokenizer)` when LM heads are wider than the
tokenizer: the padding rows of one family's models (Qwen2.5-7B's head has 152,064 rows, -3B's 151,936, for 151,665
tokens), with random widths for every model, weak-to-strong pairs included.

Hypothesis draws a tiny Llama patient (1-2 layers, hidden size 32 or 48) whose head has 0-40 padding rows beyond the
tokenizer's `TOKENS` ids; one or two doctors, each a full-weight tiny Llama of another seed, depth and hidden size (so
smaller or larger than the patient: weak-to-strong over one tokenizer) or a LoRA adapter on the patient or on such a
Llama, every one with a head width of its own; a reference per doctor (`None`, `"none"`, `"patient"`, `"initial"` for
a LoRA doctor, or a separate padded Llama of yet another width); betas (the first one non-zero, so the scores are
never passed through untouched) and alpha; and 1-3 left-padded prompts, with or without their attention mask.

The padding rows are 3x copies of real rows, so they would take most of the probability mass and win greedy steps
if they were not masked. What the processor must give, whatever the widths: on the tokenizer's ids, the same-width
computation (the cache-free loop of `tests/helpers/reference_guidance.py`, guiding the same patient without its
padding rows, whose `mix` cuts every doctor and reference to the tokenizer's ids); on the padding columns, `-inf`; so
no generated token is ever a padding id. Models are built once per spec under a forked, fixed torch RNG, and the
properties run derandomized without a database: the examples are the same on every run.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LogitsProcessorList

from tfpo_hf import DoctorLogitsProcessor
from tfpo_hf.testing import tiny_causal_lm, tiny_lora_doctor, tiny_tokenizer

from ..helpers.generation import ATOL
from ..helpers.property_inputs import PAD, PROPERTY_SETTINGS, left_padded, prompt_strategy, prompt_tokens
from ..helpers.reference_guidance import ReferenceGuidanceProcessor


TOKENS = 259  # len(tiny_tokenizer()): every id from TOKENS on is LM-head padding
MAX_PADDING = 40
TOKENIZER = tiny_tokenizer()


# --- Models: hashable specs, each built once -------------------------------------------------------------------------


@functools.cache
def build(spec: tuple) -> torch.nn.Module:
    """The model of a spec, built under a forked RNG seeded from the spec:

    - `("llama", seed, layers, hidden, width)`: a `tiny_causal_lm` over the tokenizer's ids whose head is widened to
      `width` rows, the padding rows 3x copies of the first real rows (the input embeddings are widened too: their
      padding rows are never read);
    - `("lora", base_spec, seed)`: a `tiny_lora_doctor` on the base (PEFT's `all-linear` leaves the head alone), with
      random `lora_B`."""
    with torch.random.fork_rng():
        if spec[0] == "lora":
            _, base, seed = spec
            torch.manual_seed(1000 + seed)  # PEFT's random `lora_A` init
            return tiny_lora_doctor(build(base), seed=seed)
        _, seed, layers, hidden, width = spec
        model = tiny_causal_lm(hidden_size=hidden, num_hidden_layers=layers, seed=seed)
        if width > TOKENS:
            model.resize_token_embeddings(width, mean_resizing=False)
            with torch.no_grad():
                head = model.get_output_embeddings().weight
                head[TOKENS:] = 3 * head[: width - TOKENS]
        return model.eval()


def unpadded(spec: tuple) -> tuple:
    """The spec of the same Llama without padding rows (its logits on the tokenizer's ids are the same)."""
    return (*spec[:-1], TOKENS)


widths = st.integers(TOKENS, TOKENS + MAX_PADDING)
sizes = st.tuples(st.integers(1, 2), st.sampled_from([32, 48]))  # (layers, hidden): a doctor may be smaller or larger
patient_specs = st.builds(lambda seed, size, width: ("llama", seed, *size, width), st.integers(0, 1), sizes, widths)
llama_specs = st.builds(lambda seed, size, width: ("llama", seed, *size, width), st.integers(2, 5), sizes, widths)
weights = st.one_of(
    st.sampled_from([0.0, 1.0, -1.0, 0.5, 2.5]),
    st.floats(-3, 3, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=32),
)
nonzero_weights = weights.filter(lambda weight: weight != 0)


@dataclass(frozen=True)
class Setup:
    """One drawn problem: the padded patient, doctors and references the processor gets (with the tokenizer)."""

    patient: tuple
    doctors: tuple[tuple, ...]
    references: tuple
    betas: tuple[float, ...]
    alpha: float
    prompts: tuple[tuple[int, ...], ...]
    give_mask: bool

    def inputs(self) -> tuple[torch.LongTensor, torch.LongTensor]:
        """The prompts left padded with `PAD`, and their attention mask."""
        return left_padded(self.prompts)

    def loop_reference(self, index: int):
        reference = self.references[index]
        if reference in (None, "none"):
            return None
        if reference == "initial":
            return build(self.doctors[index][1])  # the LoRA doctor's (padded) base, a separate model
        return "patient" if reference == "patient" else build(reference)

    def processors(self, normalize: bool = False) -> tuple[DoctorLogitsProcessor, ReferenceGuidanceProcessor]:
        """The processor under test, over the padded models with the tokenizer, and the cache-free loop, which cuts
        every model to the width of the scores it gets (the unpadded patient's: the tokenizer's ids)."""
        mask = self.inputs()[1] if self.give_mask else None
        doctors = [build(spec) for spec in self.doctors]
        fast = DoctorLogitsProcessor(
            doctors,
            betas=list(self.betas),
            alpha=self.alpha,
            tokenizer=TOKENIZER,
            attention_mask=mask,
            normalize=normalize,
            references=[build(r) if isinstance(r, tuple) else r for r in self.references],
        )
        loop_references = [self.loop_reference(i) for i in range(len(self.doctors))]
        loop = ReferenceGuidanceProcessor(
            doctors, list(self.betas), self.alpha, mask, pad_token_id=PAD, references=loop_references
        )
        return fast, loop


@st.composite
def doctor_and_reference(draw, patient):
    """A full-weight padded Llama or a LoRA doctor (on the patient or another padded Llama), and its reference."""
    if draw(st.booleans()):
        doctor, choices = draw(llama_specs), [None, "none", "patient", "model"]
    else:
        base = draw(st.one_of(st.just(patient), llama_specs))
        doctor, choices = ("lora", base, draw(st.integers(7, 8))), [None, "none", "patient", "initial", "model"]
    reference = draw(st.sampled_from(choices))
    return doctor, draw(llama_specs) if reference == "model" else reference


@st.composite
def setups(draw):
    """A `Setup`: a padded patient, 1-2 doctors with their references and betas, alpha, 1-3 prompts of 1-6 ids.
    Without a mask, a prompt of nothing but `PAD` gets a real last token (a leading run of `PAD` is padding)."""
    patient = draw(patient_specs)
    pairs = draw(st.lists(doctor_and_reference(patient), min_size=1, max_size=2))
    betas = (draw(nonzero_weights), *draw(st.lists(weights, min_size=len(pairs) - 1, max_size=len(pairs) - 1)))
    give_mask = draw(st.booleans())
    prompt = prompt_strategy(give_mask, TOKENS, max_size=6)
    return Setup(
        patient=patient,
        doctors=tuple(doctor for doctor, _ in pairs),
        references=tuple(reference for _, reference in pairs),
        betas=betas,
        alpha=draw(weights),
        prompts=tuple(draw(st.lists(prompt, min_size=1, max_size=3))),
        give_mask=give_mask,
    )


# --- Properties -------------------------------------------------------------------------------------------------------


def guided_generate(patient_spec: tuple, setup: Setup, processor, **kwargs):
    input_ids, mask = setup.inputs()
    return build(patient_spec).generate(
        input_ids=input_ids,
        attention_mask=mask,
        logits_processor=LogitsProcessorList([processor]),
        pad_token_id=PAD,
        output_scores=True,
        return_dict_in_generate=True,
        do_sample=False,
        **kwargs,
    )


@settings(max_examples=60, **PROPERTY_SETTINGS)
@given(setup=setups(), max_new_tokens=st.integers(1, 4), num_beams=st.sampled_from([1, 1, 2]))
def test_padded_heads_generate_as_the_same_width_computation(setup, max_new_tokens, num_beams):
    """Greedy or beam search on the padded patient with the padded doctors and references gives the tokens and, on
    the tokenizer's ids, the scores of the same-width loop on the unpadded patient; every padding column is `-inf`,
    so no token is ever a padding id."""
    fast_processor, loop_processor = setup.processors()
    kwargs = {"max_new_tokens": max_new_tokens, "num_beams": num_beams}
    fast = guided_generate(setup.patient, setup, fast_processor, **kwargs)
    loop = guided_generate(unpadded(setup.patient), setup, loop_processor, **kwargs)
    fast_scores, loop_scores = torch.stack(fast.scores, dim=1), torch.stack(loop.scores, dim=1)
    assert fast_scores.shape[-1] == setup.patient[-1]
    assert torch.isneginf(fast_scores[..., TOKENS:]).all()
    torch.testing.assert_close(fast_scores[..., :TOKENS], loop_scores, atol=ATOL, rtol=0)
    assert fast.sequences.max() < TOKENS
    assert torch.equal(fast.sequences, loop.sequences), (fast.sequences, loop.sequences)


@settings(max_examples=80, **PROPERTY_SETTINGS)
@given(
    data=st.data(),
    setup=setups(),
    normalize=st.booleans(),
    steps=st.integers(1, 3),
    score_seed=st.integers(0, 2**16),
)
def test_direct_calls_mask_padding_and_equal_the_same_width_computation(data, setup, normalize, steps, score_seed):
    """Called step by step with arbitrary patient scores whose padding columns are the largest of their row, the
    processor returns on the tokenizer's ids what the loop returns for the scores cut to those ids (as log-
    probabilities there with `normalize`), `-inf` on the padding columns, and a row maximum on a real id."""
    fast, loop = setup.processors(normalize)
    input_ids, _ = setup.inputs()
    generator = torch.Generator().manual_seed(score_seed)
    for step in range(steps):
        scores = 3 * torch.randn(len(input_ids), setup.patient[-1], generator=generator)
        scores[:, TOKENS:] = scores.max() + 10.0  # would win every row if it were not masked
        mixed, expected = fast(input_ids, scores.clone()), loop(input_ids, scores[:, :TOKENS])
        if normalize:
            expected = expected.log_softmax(-1)
        assert torch.isneginf(mixed[:, TOKENS:]).all(), step
        torch.testing.assert_close(
            mixed[:, :TOKENS], expected, atol=ATOL, rtol=0, msg=lambda m, step=step: f"step {step}: {m}"
        )
        assert (mixed.argmax(-1) < TOKENS).all()
        tokens = data.draw(
            st.lists(prompt_tokens(TOKENS), min_size=len(input_ids), max_size=len(input_ids)), label="tokens"
        )
        input_ids = torch.cat([input_ids, torch.tensor(tokens)[:, None]], dim=-1)
