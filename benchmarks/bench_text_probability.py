"""How far the beam of `TextPrefixModel` is from the exact text probability, on real text across two tokenizers.

Cross-tokenizer guidance needs the doctor's log-probability of the text of each patient token, marginalised over the
doctor's tokenizations. `TextPrefixModel` computes it exactly (every token path that can still spell what follows)
or with a beam of the most probable paths. Here the doctor (the embedded SmolLM2-135M-Instruct) reads responses
written by another family's patient (Qwen2.5-Coder-1.5B's samples from `make pair-demo`), cut at the patient's token
boundaries: at each boundary within the first `--max-bytes` bytes of a response, the doctor's log-probability of the
patient's next token's text, exact and with each beam size, is the error measured (nats); so is the aligned reading
that `DoctorLogitsProcessor` uses by default (`AlignedTextModel`: one doctor path, a piece that is one doctor token
scored as that token), whose difference to the exact marginal is part of its definition, not only an approximation.
The doctor reads the prompt through its own chat template.

    python benchmarks/bench_text_probability.py --records results/text_probability/records.jsonl  # resumable
    python benchmarks/bench_text_probability.py --responses 20 --max-bytes 16
    python benchmarks/bench_text_probability.py --smoke            # tiny random model, tiny tokenizers: seconds
    python benchmarks/bench_text_probability.py --responses 12 --doctor results/pair_demo/cross_family_doctor \
        --records results/text_probability/doctor_records.jsonl --ratio-to results/text_probability/records.jsonl

The exact value needs a forward at every token path that can still spell what follows (about 87 per context at 12
bytes on this pair, 130 at 16); each response's record is appended to `--records` as soon as it is measured, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from tfpo_hf.cross_tokenizer import AlignedTextModel, PromptedPaths, TextPrefixModel, TokenBytes


PAIR_SAMPLES = Path("results/pair_demo/progress/generations/evaluation/patient_sampling_.json")
BEAM_SIZES = (1, 2, 4, 8, 16)


def boundaries(text: str, patient_tokenizer, patient_bytes: TokenBytes, max_bytes: int) -> list[bytes]:
    """The response's first `max_bytes` bytes cut into the patient's tokens (their bytes, in order)."""
    pieces, length = [], 0
    for index in patient_tokenizer.encode(text, add_special_tokens=False):
        piece = patient_bytes.by_id[index]
        if length + len(piece) > max_bytes:
            break
        pieces.append(piece)
        length += len(piece)
    return pieces


def prompt_ids_of(doctor_tokenizer, prompt) -> list[int]:
    prompt_text = doctor_tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return doctor_tokenizer(prompt_text, add_special_tokens=False)["input_ids"]


class CountedForwards:
    """Counts the paths `PromptedPaths` runs (tokens past the committed path) and the tokens it commits."""

    def __init__(self) -> None:
        self.paths = self.committed = 0

    def __enter__(self):
        counter, call, commit = self, PromptedPaths.__call__, PromptedPaths.commit

        def counted_call(paths_model, paths):
            counter.paths += sum(len(path) > len(paths_model.committed) for path in paths)
            return call(paths_model, paths)

        def counted_commit(paths_model, path):
            counter.committed += len(path) - len(paths_model.committed)
            return commit(paths_model, path)

        self._patches = (call, commit)
        PromptedPaths.__call__, PromptedPaths.commit = counted_call, counted_commit
        return self

    def __exit__(self, *exc) -> None:
        PromptedPaths.__call__, PromptedPaths.commit = self._patches


def measure_aligned(doctor, doctor_bytes, doctor_tokenizer, pieces, prompt) -> dict:
    """The aligned reading (`DoctorLogitsProcessor`'s default, beam 4 for split pieces): the log-probability of each
    piece, forwards and seconds."""
    model = AlignedTextModel(doctor_bytes, PromptedPaths(doctor, prompt_ids_of(doctor_tokenizer, prompt)), beam_size=4)
    started, values = time.perf_counter(), []
    with CountedForwards() as counted:
        for piece in pieces:
            values.append(float(model.log_probs([piece])[0]))
            model.advance(piece)
    forwards = counted.paths + counted.committed
    return {"log_probs": values, "forwards": forwards, "seconds": time.perf_counter() - started}


def measure_response(doctor, doctor_bytes, doctor_tokenizer, pieces, prompt, beam_sizes) -> dict:
    """One response: per beam size (and exact, "exact"), the log-probability of each piece, forwards and seconds;
    the same for the aligned reading ("aligned")."""
    prompt_ids = prompt_ids_of(doctor_tokenizer, prompt)
    record = {"aligned": measure_aligned(doctor, doctor_bytes, doctor_tokenizer, pieces, prompt)}
    for beam in (None, *beam_sizes):
        forward = PromptedPaths(doctor, prompt_ids)
        forwards = 0

        def counted(paths, forward=forward):
            nonlocal forwards
            forwards += len(paths)
            return forward(paths)

        model = TextPrefixModel(doctor_bytes, counted, beam_size=beam)
        started, values = time.perf_counter(), []
        for piece in pieces:
            values.append(float(model.log_probs([piece])[0]))
            model.advance(piece)
        record["exact" if beam is None else str(beam)] = {
            "log_probs": values,
            "forwards": forwards,
            "seconds": time.perf_counter() - started,
        }
    return record


def measure(doctor, doctor_tokenizer, patient_tokenizer, samples, max_bytes, beam_sizes, records_path=None) -> list:
    """A record per response (`measure_response`); with `records_path`, each is appended there as soon as it exists
    and responses already there are not measured again."""
    doctor_bytes = TokenBytes.from_tokenizer(doctor_tokenizer, doctor.config.vocab_size)
    patient_bytes = TokenBytes.from_tokenizer(patient_tokenizer)
    records = []
    if records_path is not None and records_path.exists():
        records = [json.loads(line) for line in records_path.read_text().splitlines() if line.strip()]
    for record in records:  # responses measured before the aligned reading existed
        if "aligned" not in record:
            prompt = samples[record["index"]][0]
            pieces = [bytes.fromhex(piece) for piece in record["pieces"]]
            record["aligned"] = measure_aligned(doctor, doctor_bytes, doctor_tokenizer, pieces, prompt)
    if records_path is not None and records:  # atomically: the records are the run's results
        staging = records_path.with_suffix(".tmp")
        staging.write_text("".join(json.dumps(record) + "\n" for record in records))
        staging.replace(records_path)
    done = {record["index"] for record in records}
    for index, (prompt, response) in enumerate(samples):
        if index in done:
            continue
        pieces = boundaries(response, patient_tokenizer, patient_bytes, max_bytes)
        record = {"index": index, "max_bytes": max_bytes, "pieces": [piece.hex() for piece in pieces]}
        record |= measure_response(doctor, doctor_bytes, doctor_tokenizer, pieces, prompt, beam_sizes)
        records.append(record)
        if records_path is not None:
            with records_path.open("a") as file:
                file.write(json.dumps(record) + "\n")
        print(f"  response {index + 1}/{len(samples)}: {len(pieces)} contexts", flush=True)
    return records


def report(records: list, beam_sizes) -> None:
    exact = [value for record in records for value in record["exact"]["log_probs"]]
    contexts = len(exact)
    print(f"{contexts} contexts; mean exact log p(next patient token's text) = {statistics.fmean(exact):.3f} nats")
    print(f"{'beam':>6} {'mean |err|':>11} {'p95 |err|':>10} {'max |err|':>10} {'forwards/ctx':>13} {'s/ctx':>8}")
    for beam in ("exact", *map(str, beam_sizes), "aligned"):
        errors = sorted(
            abs(value - reference)
            for record in records
            for value, reference in zip(record[beam]["log_probs"], record["exact"]["log_probs"])
        )
        p95 = errors[min(len(errors) - 1, int(0.95 * len(errors)))]
        forwards = sum(record[beam]["forwards"] for record in records) / contexts
        seconds = sum(record[beam]["seconds"] for record in records) / contexts
        print(
            f"{beam:>6} {statistics.fmean(errors):>11.2e} {p95:>10.2e} {errors[-1]:>10.2e} "
            f"{forwards:>13.1f} {seconds:>8.3f}"
        )


def ratio_records(records: list, reference: dict) -> list:
    """Records of log p_doctor - log p_reference per context, for the responses both hold (same pieces)."""
    ratios = []
    for record in records:
        other = reference.get(record["index"])
        if other is None or other["pieces"] != record["pieces"]:
            continue
        ratio = {"index": record["index"]}
        for reading in ("exact", *map(str, BEAM_SIZES), "aligned"):
            values = [a - b for a, b in zip(record[reading]["log_probs"], other[reading]["log_probs"])]
            ratio[reading] = {key: record[reading][key] + other[reading][key] for key in ("forwards", "seconds")}
            ratio[reading]["log_probs"] = values
        ratios.append(ratio)
    return ratios


def smoke_setup():
    """A tiny random doctor on the BPE of `tfpo_hf.testing`, the byte tokenizer as the patient's, two texts."""
    from tfpo_hf.testing import tiny_bpe_tokenizer, tiny_causal_lm, tiny_tokenizer

    doctor_tokenizer = tiny_bpe_tokenizer()
    doctor = tiny_causal_lm(vocab_size=len(doctor_tokenizer), logit_scale=3.0)
    prompt = [{"role": "user", "content": "Say something"}]
    samples = [(prompt, "the cats sat on the mat"), (prompt, "café: 日本語")]
    return doctor, doctor_tokenizer, tiny_tokenizer(), samples


def real_setup(args):
    from transformers import AutoTokenizer

    from tfpo_hf import load_default_patient
    from tfpo_hf.utils.coder_pair import PATIENT, packaged_checkpoint

    doctor, doctor_tokenizer = load_default_patient()
    if args.doctor is not None:  # a trained doctor of SmolLM2 (its adapter merged)
        from tfpo_hf import DoctorModel

        doctor = DoctorModel.from_pretrained(args.doctor).pretrained_model.merge_and_unload()
    patient_tokenizer = AutoTokenizer.from_pretrained(packaged_checkpoint(PATIENT))  # make pair
    record = json.loads(Path(args.samples).read_text())
    samples = [  # every seed's samples, seed after seed (a record's index stays its sample's)
        (prompt, text)
        for texts in record["texts_by_seed"]
        for prompt, text in zip(record["key"]["prompts"], texts)
        if text.strip()
    ]
    return doctor.eval(), doctor_tokenizer, patient_tokenizer, samples[: args.responses]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny random model and tokenizers (seconds)")
    parser.add_argument("--samples", default=str(PAIR_SAMPLES), help="the patient's samples (a demo generation file)")
    parser.add_argument("--responses", type=int, default=128)
    parser.add_argument(
        "--max-bytes", type=int, default=12, help="bytes of each response read (exact cost grows fast)"
    )
    parser.add_argument(
        "--records", default=None, help="a JSON-lines file: one record per response, appended as measured (resumes)"
    )
    parser.add_argument("--doctor", default=None, help="a trained LoRA doctor of SmolLM2 read instead of SmolLM2")
    parser.add_argument(
        "--ratio-to",
        default=None,
        help="the records of the doctor's reference (SmolLM2): also report the errors of the log-ratio (guidance)",
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    doctor, doctor_tokenizer, patient_tokenizer, samples = smoke_setup() if args.smoke else real_setup(args)
    records_path = Path(args.records) if args.records else None
    if records_path is not None:
        records_path.parent.mkdir(parents=True, exist_ok=True)
    records = measure(
        doctor, doctor_tokenizer, patient_tokenizer, samples, args.max_bytes, BEAM_SIZES, records_path=records_path
    )
    report(records, BEAM_SIZES)
    if args.ratio_to:
        print("\nthe log-ratio to the reference's records (what ratio guidance adds), against its exact value:")
        reference = {
            json.loads(line)["index"]: json.loads(line) for line in Path(args.ratio_to).read_text().splitlines()
        }
        report(ratio_records(records, reference), BEAM_SIZES)


if __name__ == "__main__":
    main()
