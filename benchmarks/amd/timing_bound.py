"""What any detector that decides on timing can reach on the corpus: an upper bound.

The corpus rules (../shared/reference/amd.md) speak people and answering machines with the same
voices through the same telephone channel, so before the words are understood what tells them
apart is timing: how long the first utterance lasts, and what follows it (silence, another
sentence, a beep, music). The dead-air goal (p50 <= 600 ms, p90 <= 1,000 ms after a person's
first utterance) forces a decision soon after that first utterance. A machine whose first
utterance is as long as some person's and is followed by more silence than the decision may
wait is, at that moment, the same sound pattern as those people: a detector must call it HUMAN
or keep those people waiting too.

This script replays each item's draws (`corpus.build_item` without noise: the sentences, the
pauses and what follows, exact to the sample) and computes, for an ideal timing detector (a
perfect voice detector, no noise, the first utterance's length known to 50 ms, and the
hindsight-best choice, per length, of whether to keep such callers waiting, within the share of
people the goal leaves over; see accuracy_bound):

- the best accuracy it can reach while meeting the dead-air p90 goal, and the p50 goal;
- the earliest moment each machine's timing differs from every person's (a second sentence
  after a pause no person makes, talk longer than any person's, a beep or music), and the
  median of those moments counted from the greeting's start (the machine-decision goal).

    python -m benchmarks.amd.timing_bound --corpus benchmarks/corpus --split report

Writes benchmarks/results/amd_timing_bound.json. Every choice above favours the detector, so the
figures bound every timing detector from above, ours included.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.amd import corpus

RATE = corpus.RATE
BIN_S = 0.05


def machine_shapes(items: list[dict]) -> list[dict]:
    """Per machine: its sentences (start, end in s) and the first beep/music/tone start."""
    shapes = []
    for meta in items:
        track = corpus.build_item(meta["seed"], meta["index"], meta["split"], "MACHINE",
                                  with_noise=False)["track"]
        sentences = [(s / RATE, e / RATE) for s, e in track.speech]
        sounds = [(start / RATE, kind) for start, kind in track.sounds]
        shapes.append({"file": meta["file"], "category": meta["category"], "sentences": sentences,
                       "sounds": sounds})
    return shapes


def first_gap(shape: dict) -> tuple[float, float | None]:
    """Length of the first sentence, and the silence after it (None: nothing ever follows)."""
    (start, end), rest = shape["sentences"][0], shape["sentences"][1:]
    following = [s for s, _ in rest] + [s for s, _ in shape["sounds"] if s >= end]
    return end - start, (min(following) - end if following else None)


def accuracy_bound(shapes: list[dict], people_first: np.ndarray, n_people: int, wait_s: float,
                   wait_share: float) -> dict:
    """Fewest errors when at most `wait_share` of the people may wait more than `wait_s`.

    Machines told before the decision is due are right. The others sound, at that moment, like
    the people whose first utterance has the same length (to BIN_S). For each such length the
    detector may call them all HUMAN (the machines are wrong), or wait until the machines speak
    or beep again and then call the rest HUMAN (the people there use the waiting allowance) or
    NOTSURE (those people are wrong). Machines followed by nothing are wrong in every case. The
    allowance goes where it saves most (an exact knapsack over the lengths)."""
    longest_person = float(people_first.max())
    alike = []
    for shape in shapes:
        length, gap = first_gap(shape)
        if length > longest_person or (gap is not None and gap <= wait_s):
            continue        # told apart before the decision is due (optimistic: see the docstring)
        alike.append((length, gap))
    never = sum(1 for _, gap in alike if gap is None)
    edges = np.arange(0.0, longest_person + 2 * BIN_S, BIN_S)
    people_in = np.histogram(people_first, edges)[0]
    waitable = np.histogram([length for length, gap in alike if gap is not None], edges)[0]
    # errors per length without the allowance: the cheaper of "HUMAN at once" and "wait, NOTSURE"
    base = np.minimum(waitable, people_in)
    budget = int(wait_share * len(people_first))
    # best[c]: most errors saved by letting c people wait (0/1 knapsack, weights = people)
    best = np.zeros(budget + 1)
    for weight, saving in zip(people_in, base):
        if saving > 0 and weight <= budget:
            best[weight:] = np.maximum(best[weight:], best[:budget + 1 - weight] + saving)
    wrong = never + int(base.sum() - best[budget])
    machines_wrong = never + int(np.sum(np.where(waitable <= people_in, waitable, 0)))  # if none waited
    return {"wait_s": wait_s, "people_allowed_to_wait": budget,
            "machines_alike_at_decision": len(alike), "machines_never_followed_by_anything": never,
            "errors_at_least": wrong, "errors_with_no_waiting": machines_wrong,
            "accuracy_at_most": (n_people + len(shapes) - wrong) / (n_people + len(shapes))}


def earliest_machine_evidence(shape: dict, longest_person: float) -> float | None:
    """Seconds from the greeting's start until its timing differs from every person's."""
    sentences = shape["sentences"]
    start = sentences[0][0]
    moments = []
    if sentences[-1][1] - start > longest_person:
        # talk longer than any person's answer (pauses included: optimistic)
        moments.append(longest_person + 0.02)
    (s1, e1) = sentences[0]
    if len(sentences) > 1:
        pause = sentences[1][0] - e1
        # a person resumes only with a second short hello (first one <= 1 s, pause >= 0.5 s)
        if e1 - s1 > 1.0 or pause < 0.5:
            moments.append(sentences[1][0] + 0.1 - start)
        elif len(sentences) > 2:
            moments.append(sentences[2][0] + 0.1 - start)
    for at, kind in shape["sounds"]:
        # the beep detector needs 200 ms of tone, the music rule 400 ms of music
        moments.append(at + (0.4 if kind == "music" else 0.2) - start)
    return min(moments) if moments else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default="benchmarks/corpus")
    parser.add_argument("--split", default="report")
    parser.add_argument("--out", default="benchmarks/results/amd_timing_bound.json")
    args = parser.parse_args(argv)
    rows = [json.loads(line) for line in (Path(args.corpus) / "manifest.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["split"] == args.split]
    people = [r for r in rows if r["label"] == "HUMAN"]
    people_first = np.array([(r["first_utterance_end_ms"] - r["speech_start_ms"]) / 1000
                             for r in people if r["first_utterance_end_ms"] is not None])
    shapes = machine_shapes([r for r in rows if r["label"] == "MACHINE"])
    bounds = [accuracy_bound(shapes, people_first, len(people), 1.0, 0.10),
              accuracy_bound(shapes, people_first, len(people), 0.6, 0.50)]
    moments = [earliest_machine_evidence(s, float(people_first.max())) for s in shapes]
    known = np.array([m for m in moments if m is not None])
    result = {"corpus": args.corpus, "split": args.split, "people": len(people), "machines": len(shapes),
              "accuracy_bounds": bounds,
              "accuracy_at_most": min(b["accuracy_at_most"] for b in bounds),
              "machine_evidence_after_greeting_start_p50_s": float(np.median(known)),
              "machines_with_evidence_by_2s": float(np.mean(known <= 2.0)),
              "machines_never_differing": sum(m is None for m in moments),
              "command": f"python -m benchmarks.amd.timing_bound --corpus {args.corpus} --split {args.split}"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for b in bounds:
        print(f"dead air <= {b['wait_s']:.1f} s for all but {b['people_allowed_to_wait']} people: "
              f"{b['machines_alike_at_decision']} machines sound like people then "
              f"({b['machines_never_followed_by_anything']} never say or play anything more); at least "
              f"{b['errors_at_least']} errors; accuracy <= {b['accuracy_at_most']:.1%}")
    print(f"accuracy <= {result['accuracy_at_most']:.1%} for any timing detector meeting the dead-air goals")
    print(f"machine timing differs from people's at p50 {result['machine_evidence_after_greeting_start_p50_s']:.2f} s "
          f"after the greeting starts; by 2.0 s for {result['machines_with_evidence_by_2s']:.1%} of machines "
          f"({result['machines_never_differing']} never)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
