"""Annotation suggestion: greedy k-center on hand-made embeddings gives the textbook answer, already-labeled volumes
are never suggested and pull the picks away from themselves, the uncertainty rule limits the picks, and
``contrastseg suggest`` runs through the real CLI on real checkpoints (deterministic; bad input refused, nothing
written)."""

import csv

import numpy as np
import pytest

from cli_helpers import assert_nothing_written, assert_refused, blob_arrays, run_cli, write_image
from ContrastSegLib.cli import main
from ContrastSegLib.runtime.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ContrastSegLib.selection import SuggestConfig, VolumeEmbedding, choose, greedy_k_center

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PRETRAIN = ["--channels", "8,16,32", "--crop-size", "32", "--spacing", "4", "--iterations", "30", "--partitions", "2",
            "--volumes-per-batch", "3", "--precision", "fp32", "--device", "cpu"]
CLUSTERS = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])


def clustered_volumes(rng, per_cluster=3, slices=4):
    """Volumes of ``slices`` points each, all of one volume near one of three cluster centres (volume v in cluster
    v % 3). Returns (embeddings (N, 2), owners (N,), cluster of each volume)."""
    points, owners, cluster = [], [], []
    for volume in range(3 * per_cluster):
        centre = CLUSTERS[volume % 3]
        points.append(centre + rng.normal(0, 0.3, size=(slices, 2)))
        owners += [volume] * slices
        cluster.append(volume % 3)
    return np.concatenate(points), np.array(owners), cluster


def test_k_center_picks_one_volume_per_cluster(rng):
    embeddings, owners, cluster = clustered_volumes(rng)
    picks = greedy_k_center(embeddings, owners, count=3)
    assert sorted(cluster[p.volume] for p in picks) == [0, 1, 2]
    assert np.isnan(picks[0].distance) and picks[1].distance > 5 and picks[2].distance > 5
    assert picks[-1].radius_after < 2  # every slice now lies near a picked volume
    assert all(0 < p.covered_share <= 1 for p in picks)


def test_labeled_volumes_are_covered_already_so_the_picks_go_elsewhere(rng):
    embeddings, owners, cluster = clustered_volumes(rng)
    labeled = CLUSTERS[0] + rng.normal(0, 0.3, size=(4, 2))  # an annotated volume in cluster 0
    picks = greedy_k_center(embeddings, owners, count=2, labeled=labeled)
    assert sorted(cluster[p.volume] for p in picks) == [1, 2]
    assert all(p.distance > 5 for p in picks)


def test_with_nothing_labeled_the_first_pick_is_one_of_the_majority():
    # six volumes at 0, three at 10 and one far out at 30: the mean (6) lies nearer the minority, the 1-median not
    points = np.array([[0.0]] * 6 + [[10.0]] * 3 + [[30.0]])
    picks = greedy_k_center(points, np.arange(10), count=2)
    assert picks[0].volume == 0 and picks[1].volume == 9  # then the slice farthest from it


def test_only_eligible_volumes_are_picked_and_ties_go_to_the_lower_index():
    embeddings = np.array([[0.0], [1.0], [1.0], [5.0]])
    picks = greedy_k_center(embeddings, np.arange(4), count=2, labeled=np.array([[0.0]]), eligible=[0, 1, 2])
    assert [p.volume for p in picks] == [1, 0]  # 3 is farther but not eligible; 1 and 2 tie, 1 first
    with pytest.raises(ValueError):
        greedy_k_center(embeddings, np.arange(4), count=5)


def test_a_fine_tuned_model_chooses_among_its_most_uncertain_half(rng):
    embeddings, owners, cluster = clustered_volumes(rng, per_cluster=2)
    volumes = [VolumeEmbedding(embeddings[owners == v], uncertainty=u)
               for v, u in enumerate([0.9, 0.1, 0.8, 0.2, 0.7, 0.3])]  # volumes 0, 2, 4: clusters 0, 2, 1
    picks = choose(volumes, SuggestConfig(count=2, uncertain_share=0.5))
    assert {p.volume for p in picks} <= {0, 2, 4}
    assert len({cluster[p.volume] for p in picks}) == 2  # still spread over clusters


@pytest.fixture(scope="module")
def cohort(workspace):
    """Six unlabeled volumes: three bright-disc scans and three with the contrast inverted (a dark disc)."""
    folder = workspace / "cohort"
    for index in range(6):
        image, _ = blob_arrays(seed=10 + index)
        if index % 2:
            image = (image.max() - image).astype(np.float32)
        write_image(folder / f"scan{index}.nii.gz", image)
    return folder


@pytest.fixture(scope="module")
def global_model(workspace, cohort):
    path = workspace / "gd.pt"
    assert main(["pretrain", "--unlabeled", str(cohort), "--out", str(path), "--stage", "global", *PRETRAIN]) == 0
    return path


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_suggest_writes_ranked_rows_with_reasons_and_is_deterministic(capsys, workspace, cohort, global_model):
    first, second = workspace / "s1.csv", workspace / "s2.csv"
    for out in (first, second):
        code, stdout, _ = run_cli(capsys, "suggest", "--model", global_model, "--unlabeled", cohort, "--count", 3,
                                  "--out", out, "--device", "cpu", "--precision", "fp32")
        assert code == 0
    assert "the g1 head" in stdout  # a global-stage checkpoint embeds through its projection head
    rows = read_rows(first)
    assert [r["rank"] for r in rows] == ["1", "2", "3"] and len({r["case"] for r in rows}) == 3
    assert "most representative" in rows[0]["reason"] and "farthest" in rows[1]["reason"] and rows[0]["uncertainty"] == ""
    assert first.read_text() == second.read_text()
    picked = [int(r["case"][-1]) % 2 for r in rows[:2]]
    assert sorted(picked) == [0, 1]  # the first two picks: one of each contrast


def test_a_fine_tuned_model_adds_uncertainty_and_labeled_volumes_are_never_suggested(capsys, workspace, cohort,
                                                                                   pairs, model):
    both = workspace / "with_labeled"
    both.mkdir()
    for source in list(cohort.iterdir()) + list(pairs.iterdir()):
        (both / source.name).symlink_to(source)
    out = workspace / "s_ft.csv"
    code, _, _ = run_cli(capsys, "suggest", "--model", model, "--unlabeled", both, "--labeled", pairs, "--count", 2,
                         "--out", out, "--device", "cpu", "--precision", "fp32")
    assert code == 0
    rows = read_rows(out)
    assert {r["case"] for r in rows}.isdisjoint({"alpha", "beta"})
    for row in rows:  # the 5-step model may predict no structure at all: said so instead of a number
        assert "labeled volumes" in row["reason"]
        assert (0 <= float(row["uncertainty"]) <= 1) if row["uncertainty"] else "predicts nothing" in row["reason"]


def test_bad_input_is_refused_in_one_line_and_nothing_is_written(capsys, workspace, cohort, pairs, model,
                                                                  global_model):
    out = workspace / "refused" / "s.csv"
    common = ["--out", out, "--device", "cpu"]
    trained = load_checkpoint(global_model)
    partial = workspace / "no_encoder.pt"  # e.g. a file cut down to its heads
    save_checkpoint(Checkpoint({k: v for k, v in trained.model.items() if not k.startswith("encoder.0.")},
                               trained.metadata), partial)
    assert_refused(*run_cli(capsys, "suggest", "--model", partial, "--unlabeled", cohort, *common), str(partial),
                   "no complete encoder")
    untrained = workspace / "local_only.pt"  # a local stage whose lineage never trained the encoder
    save_checkpoint(Checkpoint(trained.model, {**trained.metadata, "stage": "pretrain-local", "lineage": []}),
                    untrained)
    assert_refused(*run_cli(capsys, "suggest", "--model", untrained, "--unlabeled", cohort, *common),
                   str(untrained), "never trained")
    assert_refused(*run_cli(capsys, "suggest", "--model", model, "--unlabeled", cohort, "--count", 7, *common),
                   "--count 7", "at most 6")
    assert_refused(*run_cli(capsys, "suggest", "--model", model, "--unlabeled", pairs, "--labeled", pairs,
                            *common), "already labeled")
    tiny = workspace / "tiny"
    write_image(tiny / "small.nii.gz", blob_arrays(shape=(3, 6, 6))[0], spacing=(4.0, 4.0, 4.0))
    write_image(tiny / "fine.nii.gz", blob_arrays()[0])
    assert_refused(*run_cli(capsys, "suggest", "--model", model, "--unlabeled", tiny, "--count", 1, *common),
                   "small.nii.gz", "less than 25% of the model")
    assert_refused(*run_cli(capsys, "suggest", "--model", model, "--unlabeled", cohort, "--out",
                            workspace / "s.txt"), ".csv or .json")
    assert_nothing_written(out, workspace)
