"""``contrastseg suggest``: which candidate volumes to annotate next, from a checkpoint's view of the cohort.

Rule: every slice of every candidate (and of the already-labeled volumes) is embedded with the checkpoint's encoder
(``embedding``); greedy k-center coverage of all candidate slices picks the volumes (``k_center``). With a
fine-tuned model the picks are limited to the most uncertain ``uncertain_share`` of the candidates (at least
``count``), so the suggestions are scans the model is unsure of *and* that differ from each other and from what is
labeled. The suggestions come in pick order: annotating the first ``n`` is the best choice of ``n`` the rule knows
(the 2 contain the 1).

CSV columns: rank, case, image, score (share of the candidate slices the pick became the nearest annotated volume
for), distance (how far its worst-covered slice lay from everything labeled or picked before, in embedding units,
0..2), uncertainty (fine-tuned model; else empty), reason (one readable sentence).
Nothing is written unless every input was read and checked.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np

from ..data.discovery import Case, discover
from ..data.pools import unlabeled_cases
from ..errors import ContrastSegError
from ..evaluation.report import format_table, read_rows, write_rows
from ..io import check_output_path, read_image
from ..preprocess import preprocess_volume
from ..runtime.progress import ProgressReporter
from ..settings import SuggestConfig
from .embedding import SliceEmbedder, VolumeEmbedding
from .k_center import Pick, greedy_k_center

SUGGESTION_COLUMNS = ["rank", "case", "score", "distance", "uncertainty", "reason"]  # printed; the CSV adds image
MIN_FIELD_OF_VIEW = 0.25  # refused: a plane smaller than this share of the crop side on both sides (mostly padding)


def read_suggestions(path: str | os.PathLike) -> list[dict]:
    """The rows of a suggestions.csv: rank (int), case, image, reason as text, score/distance/uncertainty floats
    (NaN where empty)."""
    return read_rows(path, {"case", "image", "reason"}, {"rank", "case", "image"}, "run contrastseg suggest again")


def candidate_cases(unlabeled: Sequence[str | os.PathLike], labeled: str | os.PathLike | None,
                    count: int, channel: int | None = None) -> tuple[list[Case], list[Case]]:
    """(candidates, already-labeled cases): every volume of ``unlabeled`` that is not also in ``labeled`` (same case
    name or same image file); ``channel`` picks the modality of 4-D images (else each dataset's own). Refuses too
    few candidates before anything is read."""
    known = list(discover(labeled, channel=channel).cases) if labeled else []
    names, images = {c.id for c in known}, {c.image.resolve() for c in known}
    found = unlabeled_cases(unlabeled, channel=channel)
    candidates = [c for c in found if c.id not in names and c.image.resolve() not in images]
    sources = ", ".join(map(str, unlabeled))
    if not candidates:
        raise ContrastSegError(f"{sources}: all {len(found)} volume(s) are already labeled in {labeled}; add "
                               "unlabeled volumes to choose from")
    if count > len(candidates):
        unlabeled_note = " not yet labeled" if known else ""
        raise ContrastSegError(f"--count {count}: {sources} has only {len(candidates)} candidate volume(s)"
                               f"{unlabeled_note}; ask for at most {len(candidates)}")
    return candidates, known


def run_suggest(model: str | os.PathLike, unlabeled: Sequence[str | os.PathLike], out: str | os.PathLike | None,
                config: SuggestConfig = SuggestConfig(), labeled: str | os.PathLike | None = None,
                overwrite: bool = False, reporter: ProgressReporter | None = None,
                channel: int | None = None) -> list[dict]:
    """Suggest ``config.count`` volumes of ``unlabeled`` to annotate (``labeled``: volumes annotated already, whose
    slices count as covered) and write the table to ``out`` (.csv or .json; None: not written). Returns its rows."""
    config.check()
    if out is not None:
        out = check_output_path(out, overwrite, kind="file")
        if out.suffix.lower() not in (".csv", ".json"):
            raise ContrastSegError(f"--out {out}: suggestions are written as .csv or .json; choose such a file name")
    candidates, known = candidate_cases(unlabeled, labeled, config.count, channel)
    embedder = SliceEmbedder.from_file(model, config.device, config.precision, config.channels_last)
    reporter = reporter or ProgressReporter("suggest", len(candidates) + len(known))
    reporter.started(device=embedder.plan.describe(), volumes=len(candidates), labeled=len(known))
    picks, chosen = suggest_among(embedder, candidates, known, config, reporter)
    places = {volume: place for place, volume in enumerate(uncertainty_order(chosen), start=1)}
    rows = [_row(rank, candidates[p.volume], p, chosen[p.volume].uncertainty, places[p.volume], bool(known),
                 len(candidates)) for rank, p in enumerate(picks, start=1)]
    print(format_table(rows, SUGGESTION_COLUMNS, title=f"suggested for annotation "
                       f"({embedder.describes} of {model})"))
    if out is not None:
        write_rows(rows, out, overwrite=overwrite)
        print(f"wrote {out}")
    reporter.finished(suggestions=str(out) if out else None, cases=[r["case"] for r in rows])
    return rows


def suggest_among(embedder: SliceEmbedder, candidates: Sequence[Case], known: Sequence[Case] = (),
                  config: SuggestConfig = SuggestConfig(), reporter: ProgressReporter | None = None
                  ) -> tuple[list[Pick], list[VolumeEmbedding]]:
    """(the picks among ``candidates``, their embeddings): every case of ``known`` (labeled) and ``candidates`` is
    read, checked and embedded, then :func:`choose` picks ``config.count``."""
    embedded = []
    for done, case in enumerate(list(known) + list(candidates), start=1):
        embedded.append(_embed_case(embedder, case))
        if reporter is not None:
            reporter.update(done)
    chosen = embedded[len(known):]
    return choose(chosen, config, embedded[:len(known)]), chosen


def choose(volumes: Sequence[VolumeEmbedding], config: SuggestConfig,
           labeled: Sequence[VolumeEmbedding] = ()) -> list[Pick]:
    """The k-center picks among ``volumes`` (restricted to the most uncertain share when they carry uncertainty)."""
    slices = np.concatenate([v.slices for v in volumes])
    owners = np.concatenate([np.full(v.slices.shape[0], i) for i, v in enumerate(volumes)])
    centres = np.concatenate([v.slices for v in labeled]) if labeled else None
    eligible = None
    if all(v.uncertainty is not None for v in volumes):
        keep = max(config.count, math.ceil(config.uncertain_share * len(volumes)))
        eligible = uncertainty_order(volumes)[:keep]
    return greedy_k_center(slices, owners, config.count, centres, eligible)


def uncertainty_order(volumes: Sequence[VolumeEmbedding]) -> list[int]:
    """Volume indices, most uncertain first (a volume with nothing predicted first of all; ties by index)."""
    def key(index: int):
        value = volumes[index].uncertainty
        return (-math.inf if value is None or math.isnan(value) else -value, index)
    return sorted(range(len(volumes)), key=key)


def _embed_case(embedder: SliceEmbedder, case: Case) -> VolumeEmbedding:
    prepared = preprocess_volume(read_image(case.image, channel=case.channel), embedder.preprocess_config)
    crop, plane = embedder.preprocess_config.crop_size, prepared.record.resampled_shape
    if max(plane) < MIN_FIELD_OF_VIEW * crop:
        raise ContrastSegError(
            f"{case.image}: its plane resamples to {plane[0]}×{plane[1]} px, less than {MIN_FIELD_OF_VIEW:.0%} of the "
            f"model's {crop} px slice side, so its embedding would describe padding; leave it out, or use a model "
            "trained at a finer --spacing")
    return embedder.embed(prepared)


def _row(rank: int, case: Case, pick: Pick, uncertainty: float | None, place: int, labeled: bool,
         total: int) -> dict:
    """One suggestion with its reason; ``place``: its rank by uncertainty among the ``total`` candidates."""
    share = f"nearest annotated volume for {pick.covered_share:.0%} of the candidate slices"
    if math.isnan(pick.distance):
        reason = f"the most representative scan (the cohort's slices lie nearest to its slices on average); {share}"
    else:
        against = "the labeled volumes" + (" and the earlier suggestions" if rank > 1 else "") if labeled else \
            "the earlier suggestions"
        reason = f"holds the slice farthest from {against} (distance {pick.distance:.2f}); {share}"
    if uncertainty is not None:
        reason += ("; the model predicts nothing in it" if math.isnan(uncertainty) else
                   f"; uncertainty {uncertainty:.3f} (rank {place} of {total})")
    return {"rank": rank, "case": case.id, "image": str(case.image.absolute()), "score": round(pick.covered_share, 4),
            "distance": None if math.isnan(pick.distance) else round(pick.distance, 4),
            "uncertainty": None if uncertainty is None or math.isnan(uncertainty) else round(uncertainty, 4),
            "reason": reason}
