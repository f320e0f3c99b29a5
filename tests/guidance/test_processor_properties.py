"""Property tests (hypothesis) of `DoctorLogitsProcessor` against the cache-free `ReferenceGuidanceProcessor`.

Hypothesis draws the whole guidance setup: a tiny Llama patient; one or two doctors, each a full-weight tiny Llama
(other seeds, depths, widths, padded vocabularies), a tiny GPT-2 (learned absolute positions, so a wrong position id
shows) or a LoRA adapter on the patient or on another tiny Llama; for each doctor a reference (`None`, `"none"`,
`"patient"`, `"base"` / `"initial"` for a LoRA doctor, or a separate tiny Llama or GPT-2); betas (0, negative,
fractional) and alpha; a batch of 1-4 prompts of 1-7 token ids, left padded (tokens drawn often from a three-token
alphabet that includes the pad token, so rows collide and prompts may start with a real pad token); and whether the
processor gets the prompts' attention mask (`generate()` always gets the true one).

The processor runs each doctor with a KV cache that it must keep aligned with `generate`'s rows (prefill, one token per
step, beam reorders, expansion to beams / returned sequences, left padding, restarts between calls); the loop re-runs
every model over the whole prefix at every step. Any wrong cache row, mask, position id, reorder or weight changes the
scores by far more than `ATOL`. Models are built once per spec (`functools.cache`, i.e. an unbounded `lru_cache`)
under a forked, fixed torch RNG, and every property runs derandomized without a database: the examples are the same on
every run.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import GPT2Config, GPT2LMHeadModel, LogitsProcessorList

from tfpo_hf import DoctorLogitsProcessor
from tfpo_hf.testing import tiny_causal_lm, tiny_lora_doctor

from ..helpers.generation import ATOL
from ..helpers.property_inputs import PAD, PROPERTY_SETTINGS, left_padded, prompt_strategy
from ..helpers.reference_guidance import ReferenceGuidanceProcessor


VOCAB = 259  # the patient's vocabulary; doctors and reference models may have more (padded) ids


# --- Models: hashable specs, each built once -------------------------------------------------------------------------


@functools.cache
def build(spec: tuple) -> torch.nn.Module:
    """The model of a spec, built under a forked RNG seeded from the spec (so it does not depend on what ran before,
    and the global RNG is left as it was):

    - `("llama", seed, layers, hidden, vocab)`: a `tiny_causal_lm`;
    - `("gpt2", seed, layers, vocab)`: a tiny GPT-2, whose learned absolute position embeddings make a wrong position
      id visible (a rotary Llama only sees relative positions, so it hides a constant offset);
    - `("lora", base_spec, seed)`: a `tiny_lora_doctor` on the base, with random `lora_B`."""
    with torch.random.fork_rng():
        if spec[0] == "lora":
            _, base, seed = spec
            torch.manual_seed(1000 + seed)  # PEFT's random `lora_A` init
            return tiny_lora_doctor(build(base), seed=seed)
        if spec[0] == "gpt2":
            _, seed, layers, vocab = spec
            config = GPT2Config(
                vocab_size=vocab, n_positions=64, n_embd=32, n_layer=layers, n_head=4, tie_word_embeddings=False,
                bos_token_id=PAD, eos_token_id=PAD, pad_token_id=PAD,
            )  # fmt: skip
            torch.manual_seed(seed)
            model = GPT2LMHeadModel(config).eval()
            with torch.no_grad():
                model.lm_head.weight.mul_(20.0)  # sharp next-token distributions, as `tiny_causal_lm` makes them
            return model
        _, seed, layers, hidden, vocab = spec
        return tiny_causal_lm(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, seed=seed)


patient_specs = st.tuples(st.just("llama"), st.integers(0, 1), st.integers(1, 2), st.just(32), st.just(VOCAB))
# Seeds 2-5 never equal a patient's seed: a doctor that is the patient itself with reference "patient" would mix pure
# float noise (cached minus uncached logits of one model), whose argmax is arbitrary.
llama_specs = st.tuples(
    st.just("llama"),
    st.integers(2, 5),
    st.integers(1, 2),
    st.sampled_from([32, 48]),
    st.sampled_from([VOCAB, VOCAB + 8]),
)
gpt2_specs = st.tuples(st.just("gpt2"), st.integers(2, 5), st.integers(1, 2), st.sampled_from([VOCAB, VOCAB + 8]))
full_specs = st.one_of(llama_specs, gpt2_specs)  # full-weight doctors and separate reference models
weights = st.one_of(
    st.sampled_from([0.0, 1.0, -1.0, 0.5, -0.5, 2.5]),
    st.floats(-3, 3, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=32),
)


@dataclass(frozen=True)
class Setup:
    """One drawn guidance problem. `references[i]` is what the processor gets; the loop gets `loop_reference(i)`."""

    patient: tuple
    doctors: tuple[tuple, ...]
    references: tuple
    betas: tuple[float, ...]
    scalar_beta: bool  # pass the single doctor's beta as a number rather than a list
    alpha: float
    prompts: tuple[tuple[int, ...], ...]
    give_mask: bool  # give the processor (and the loop) the prompts' attention mask

    def loop_reference(self, index: int):
        reference = self.references[index]
        if reference in (None, "none"):
            return None
        if reference == "patient":
            return "patient"
        if reference in ("base", "initial"):
            return build(self.doctors[index][1])  # the LoRA doctor's base, a separate model: no adapter switching
        return build(reference)

    def inputs(self, width: int = 0) -> tuple[torch.LongTensor, torch.LongTensor]:
        """The prompts left padded with `PAD` (to `width` at least), and their attention mask."""
        return left_padded(self.prompts, width)

    def processors(self, prompt_mask: torch.Tensor) -> tuple[DoctorLogitsProcessor, ReferenceGuidanceProcessor]:
        """The cached processor under test and the cache-free loop, for the same doctors, weights and mask."""
        mask = prompt_mask if self.give_mask else None
        doctors = [build(spec) for spec in self.doctors]
        references = [build(r) if isinstance(r, tuple) else r for r in self.references]
        fast = DoctorLogitsProcessor(
            doctors,
            betas=self.betas[0] if self.scalar_beta else list(self.betas),
            alpha=self.alpha,
            references=references,
            attention_mask=mask,
        )
        loop = ReferenceGuidanceProcessor(
            doctors,
            list(self.betas),
            alpha=self.alpha,
            attention_mask=mask,
            pad_token_id=PAD,
            references=[self.loop_reference(i) for i in range(len(self.doctors))],
        )
        return fast, loop

    @property
    def passthrough(self) -> bool:
        """Every beta 0 and alpha 1: the processor returns the scores untouched, the loop their log-softmax."""
        return self.alpha == 1 and all(beta == 0 for beta in self.betas)


@st.composite
def doctor_and_reference(draw, patient):
    """A full-weight doctor (Llama or GPT-2) or a LoRA doctor (on the patient or another tiny Llama), and a reference
    for it."""
    if draw(st.booleans()):
        doctor = draw(full_specs)
        reference_choices = [None, "none", "patient", "model"]
    else:
        base = draw(st.one_of(st.just(patient), llama_specs))
        doctor = ("lora", base, draw(st.integers(7, 8)))
        reference_choices = [None, "none", "patient", "base", "initial", "model"]
    reference = draw(st.sampled_from(reference_choices))
    if reference == "model":
        reference = draw(full_specs)
    return doctor, reference


@st.composite
def setups(draw, max_batch: int = 4):
    """A `Setup`: a patient, 1-2 doctors with their references and betas, alpha, 1-`max_batch` prompts, and whether
    the processor gets the attention mask."""
    patient = draw(patient_specs)
    pairs = draw(st.lists(doctor_and_reference(patient), min_size=1, max_size=2))
    betas = tuple(draw(st.lists(weights, min_size=len(pairs), max_size=len(pairs))))
    give_mask = draw(st.booleans())
    prompt = prompt_strategy(give_mask, VOCAB, max_size=7)
    return Setup(
        patient=patient,
        doctors=tuple(doctor for doctor, _ in pairs),
        references=tuple(reference for _, reference in pairs),
        betas=betas,
        scalar_beta=len(betas) == 1 and draw(st.booleans()),
        alpha=draw(weights),
        prompts=tuple(draw(st.lists(prompt, min_size=1, max_size=max_batch))),
        give_mask=give_mask,
    )


# --- Comparison -------------------------------------------------------------------------------------------------------


def guided_generate(setup: Setup, processor, seed: int | None = None, width: int = 0, **kwargs):
    """`patient.generate` with `processor` on the setup's prompts, padded to `width` at least (always with their true
    attention mask)."""
    input_ids, mask = setup.inputs(width)
    if seed is not None:
        torch.manual_seed(seed)
    return build(setup.patient).generate(
        input_ids=input_ids,
        attention_mask=mask,
        logits_processor=LogitsProcessorList([processor]),
        pad_token_id=PAD,
        output_scores=True,
        return_dict_in_generate=True,
        **kwargs,
    )


def assert_same_generate(setup: Setup, seed: int | None = None, fast_processor=None, width: int = 0, **kwargs):
    """Guided `generate` with the cached processor (`fast_processor`, else a new one) and with the loop: the same
    sequences, the same scores at every step (as distributions when the processor passes the scores through), and for
    beam search the same sequence scores. Returns the processor's output."""
    new_processor, loop_processor = setup.processors(setup.inputs(width)[1])
    fast_processor = fast_processor or new_processor
    fast = guided_generate(setup, fast_processor, seed, width, **kwargs)
    loop = guided_generate(setup, loop_processor, seed, width, **kwargs)
    fast_scores, loop_scores = torch.stack(fast.scores, dim=1), torch.stack(loop.scores, dim=1)
    if setup.passthrough:
        fast_scores, loop_scores = fast_scores.log_softmax(-1), loop_scores.log_softmax(-1)
    torch.testing.assert_close(fast_scores, loop_scores, atol=ATOL, rtol=0)
    assert torch.equal(fast.sequences, loop.sequences), (fast.sequences, loop.sequences)
    if kwargs.get("num_beams", 1) > 1:
        torch.testing.assert_close(fast.sequences_scores, loop.sequences_scores, atol=ATOL, rtol=0)
    return fast


# --- Properties -------------------------------------------------------------------------------------------------------


@settings(max_examples=200, **PROPERTY_SETTINGS)
@given(setup=setups(), max_new_tokens=st.integers(1, 5))
def test_greedy_equals_cache_free_reference(setup, max_new_tokens):
    """Greedy guided decoding with the cached processor is token-identical to the cache-free loop, and its mixed
    scores agree within `ATOL` at every step, for any drawn models, references, weights, padding and mask."""
    assert_same_generate(setup, max_new_tokens=max_new_tokens, do_sample=False)


@settings(max_examples=120, **PROPERTY_SETTINGS)
@given(
    setup=setups(),
    max_new_tokens=st.integers(1, 5),
    num_return_sequences=st.integers(1, 2),
    temperature=st.sampled_from([1.0, 0.7]),
    top_k=st.sampled_from([0, 20]),
    seed=st.integers(0, 2**16),
)
def test_sampling_equals_cache_free_reference(setup, max_new_tokens, num_return_sequences, temperature, top_k, seed):
    """Sampling under one torch seed draws the same tokens with the cached processor as with the loop (the rows
    expanded for `num_return_sequences` included), and the warped scores agree within `ATOL` at every step."""
    assert_same_generate(
        setup,
        seed,
        max_new_tokens=max_new_tokens,
        do_sample=True,
        num_return_sequences=num_return_sequences,
        temperature=temperature,
        top_k=top_k,
    )


@st.composite
def beam_settings(draw):
    """2-3 beams and 1 to `num_beams` returned sequences."""
    num_beams = draw(st.integers(2, 3))
    return {"num_beams": num_beams, "num_return_sequences": draw(st.integers(1, num_beams))}


@settings(max_examples=120, **PROPERTY_SETTINGS)
@given(setup=setups(), max_new_tokens=st.integers(1, 5), beams=beam_settings())
def test_beam_search_equals_cache_free_reference(setup, max_new_tokens, beams):
    """Beam search (2-3 beams, 1 to `num_beams` returned sequences) gives the same sequences, per-step beam scores and
    sequence scores with the cached processor, whose caches follow every beam reorder, as with the loop."""
    assert_same_generate(setup, max_new_tokens=max_new_tokens, do_sample=False, **beams)


@st.composite
def reorder_schedules(draw, batch_size: int, give_mask: bool):
    """Group size (rows per prompt), then per step each row's parent and new token. With a mask, parents stay in their
    prompt's group, as `generate` keeps them; without one, a row may take any row's place (padding follows tokens)."""
    group_size = draw(st.integers(1, 3))
    rows = batch_size * group_size
    steps = []
    for _ in range(draw(st.integers(1, 4))):
        if give_mask:
            parents = [row - row % group_size + draw(st.integers(0, group_size - 1)) for row in range(rows)]
        else:
            parents = draw(st.lists(st.integers(0, rows - 1), min_size=rows, max_size=rows))
        tokens = draw(st.lists(st.sampled_from([PAD, 40, 41, 100]), min_size=rows, max_size=rows))
        steps.append((parents, tokens))
    return group_size, steps


@settings(max_examples=150, **PROPERTY_SETTINGS)
@given(data=st.data(), setup=setups(max_batch=3), score_seed=st.integers(0, 2**16))
def test_direct_calls_with_row_reorders_equal_reference(data, setup, score_seed):
    """Called directly, step by step, on rows that are reordered and duplicated between calls as beams are (rows that
    collide in tokens included), with arbitrary patient scores, the processor returns the loop's scores within
    `ATOL` at every call."""
    prompts, mask = setup.inputs()
    group_size, steps = data.draw(reorder_schedules(len(prompts), setup.give_mask), label="group size, steps")
    fast, loop = setup.processors(mask)
    generator = torch.Generator().manual_seed(score_seed)
    input_ids = prompts.repeat_interleave(group_size, dim=0)
    for step, (parents, tokens) in enumerate([*steps, (None, None)]):
        scores = 3 * torch.randn(len(input_ids), VOCAB, generator=generator)
        mixed, expected = fast(input_ids, scores), loop(input_ids, scores)
        if setup.passthrough:
            mixed, expected = mixed.log_softmax(-1), expected.log_softmax(-1)
        torch.testing.assert_close(mixed, expected, atol=ATOL, rtol=0, msg=lambda m, step=step: f"step {step}: {m}")
        if parents is not None:
            input_ids = torch.cat([input_ids[parents], torch.tensor(tokens)[:, None]], dim=-1)


@settings(max_examples=120, **PROPERTY_SETTINGS)
@given(
    data=st.data(),
    setup=setups(),
    max_new_tokens=st.lists(st.integers(1, 5), min_size=2, max_size=2),
    abut=st.booleans(),
    change_betas=st.booleans(),
)
def test_reused_processor_equals_reference_on_every_call(data, setup, max_new_tokens, abut, change_betas):
    """One processor serves consecutive greedy `generate` calls: on a second batch of as many prompts (padded, with
    `abut`, to exactly one token more than the first call's last `input_ids`, so only its rows tell it apart from a
    continuation), after `set_attention_mask` when it uses masks and optionally `set_betas`, it still equals the loop."""
    fast_processor, _ = setup.processors(setup.inputs()[1])
    first = assert_same_generate(setup, fast_processor=fast_processor, max_new_tokens=max_new_tokens[0])
    size = len(setup.prompts)
    prompts = data.draw(
        st.lists(prompt_strategy(setup.give_mask, VOCAB, max_size=7), min_size=size, max_size=size), label="prompts"
    )
    second = replace(setup, prompts=tuple(prompts))
    if change_betas:
        betas = tuple(data.draw(st.lists(weights, min_size=len(setup.betas), max_size=len(setup.betas))))
        second = replace(second, betas=betas)
        fast_processor.set_betas(list(betas))
    width = first.sequences.shape[1] if abut else 0
    if setup.give_mask:
        fast_processor.set_attention_mask(second.inputs(width)[1])
    assert_same_generate(second, fast_processor=fast_processor, width=width, max_new_tokens=max_new_tokens[1])
