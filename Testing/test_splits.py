"""Seeded splits: reproducible, disjoint, complete, test held fixed, saved and reused safely."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from ContrastSegLib.data.discovery import Case, Dataset
from ContrastSegLib.data.splits import (
    SPLIT_GROUPS,
    Split,
    cases_in,
    check_not_test,
    dataset_fingerprint,
    load_or_make_split,
    load_split,
    make_split,
    save_split,
)
from ContrastSegLib.errors import ContrastSegError


def make_dataset(n_labeled: int = 10, n_unlabeled: int = 4, root: Path = Path("/data")) -> Dataset:
    labeled = [Case(f"case_{i:02d}", root / f"case_{i:02d}.nii.gz", root / f"case_{i:02d}_seg.nii.gz")
               for i in range(n_labeled)]
    unlabeled = [Case(f"extra_{i:02d}", root / f"extra_{i:02d}.nii.gz", None) for i in range(n_unlabeled)]
    return Dataset(root, "pairs", tuple(sorted(labeled + unlabeled, key=lambda case: case.id)))


@pytest.fixture
def dataset() -> Dataset:
    return make_dataset()


def test_same_seed_same_split_and_other_seed_differs(dataset):
    first = make_split(dataset, n_labeled=3, n_validation=2, seed=7)
    assert first == make_split(dataset, n_labeled=3, n_validation=2, seed=7)
    assert first.groups != make_split(dataset, n_labeled=3, n_validation=2, seed=8).groups


def test_split_is_pinned_across_machines(dataset):
    split = make_split(dataset, n_labeled=3, n_validation=1, seed=0)
    assert split.groups["test"] == ("case_04", "case_06")
    assert split.groups["validation"] == ("case_02",)
    assert split.groups["train_labeled"] == ("case_03", "case_05", "case_07")


def test_groups_are_disjoint_sorted_and_cover_every_case(dataset):
    split = make_split(dataset, n_labeled=3, n_validation=2, seed=1)
    assert set(split.groups) == set(SPLIT_GROUPS)
    every = [case_id for ids in split.groups.values() for case_id in ids]
    assert sorted(every) == sorted(dataset.ids) and len(every) == len(set(every))
    assert all(list(ids) == sorted(ids) for ids in split.groups.values())
    assert [len(split.groups[g]) for g in ("test", "validation", "train_labeled")] == [2, 2, 3]
    assert len(split.groups["train_unlabeled"]) == 3 + 4
    unlabeled = {case.id for case in dataset.unlabeled}
    assert unlabeled <= set(split.groups["train_unlabeled"])
    assert split.group_of("extra_00") == "train_unlabeled"


def test_test_and_validation_stay_fixed_as_n_labeled_grows(dataset):
    splits = [make_split(dataset, n_labeled=n, n_validation=2, seed=3) for n in range(0, 7)]
    assert len({split.groups["test"] for split in splits}) == 1
    assert len({split.groups["validation"] for split in splits}) == 1
    for smaller, larger in zip(splits, splits[1:]):
        assert set(smaller.groups["train_labeled"]) < set(larger.groups["train_labeled"])


@pytest.mark.parametrize("labeled, fraction, n_test, expected", [
    (10, 0.2, None, 2), (10, 0.25, None, 3), (2, 0.1, None, 1), (1, 0.2, None, 0), (10, 0.0, None, 0),
    (10, 0.2, 4, 4), (10, 0.2, 0, 0),
])
def test_test_size(labeled, fraction, n_test, expected):
    split = make_split(make_dataset(labeled), n_labeled=0, test_fraction=fraction, n_test=n_test)
    assert len(split.groups["test"]) == expected
    assert all(case_id.startswith("case_") for case_id in split.groups["test"])


def test_too_few_labeled_cases_says_how_many(dataset):
    with pytest.raises(ContrastSegError, match=r"10 labeled case\(s\), but the split asks for 2 test \+ 3 "
                                               r"validation \+ 6 labeled training = 11"):
        make_split(dataset, n_labeled=6, n_validation=3)


@pytest.mark.parametrize("kwargs, name", [
    ({"n_labeled": -1}, "n_labeled"), ({"n_labeled": 1.5}, "n_labeled"), ({"n_labeled": 1, "seed": -2}, "seed"),
    ({"n_labeled": 1, "test_fraction": 1.0}, "test_fraction"), ({"n_labeled": 1, "n_test": True}, "n_test"),
])
def test_invalid_split_options(dataset, kwargs, name):
    with pytest.raises(ContrastSegError, match=name):
        make_split(dataset, **kwargs)


def test_fingerprint_depends_on_ids_and_labels_only(dataset):
    moved = replace(dataset, root=Path("/elsewhere"),
                    cases=tuple(replace(case, image=Path("/elsewhere/x.nii.gz")) for case in dataset.cases))
    assert dataset_fingerprint(moved) == dataset_fingerprint(dataset)
    unlabeled_one = replace(dataset, cases=(replace(dataset.cases[0], label=None),) + dataset.cases[1:])
    assert dataset_fingerprint(unlabeled_one) != dataset_fingerprint(dataset)
    assert dataset_fingerprint(dataset.subset(dataset.ids[1:])) != dataset_fingerprint(dataset)


def test_save_and_load_round_trip_and_refuse_overwrite(dataset, tmp_path):
    split = make_split(dataset, n_labeled=2, n_validation=1, seed=5)
    path = save_split(split, tmp_path / "split.json")
    assert load_split(path) == split
    assert json.loads(path.read_text())["groups"]["test"] == list(split.groups["test"])
    with pytest.raises(ContrastSegError, match="already exists"):
        save_split(split, path)
    other = make_split(dataset, n_labeled=2, seed=6)
    save_split(other, path, overwrite=True)
    assert load_split(path) == other
    assert sorted(p.name for p in tmp_path.iterdir()) == ["split.json"]


def test_load_or_make_split_saves_then_reuses_the_file(dataset, tmp_path):
    path = tmp_path / "splits" / "split.json"
    made = load_or_make_split(path, dataset, n_labeled=2, seed=4)
    assert load_split(path) == made
    edited = made.to_json()
    moved = edited["groups"]["train_labeled"][0]
    edited["groups"]["train_labeled"][0] = edited["groups"]["train_unlabeled"].pop(0)
    edited["groups"]["train_unlabeled"].append(moved)
    path.write_text(json.dumps(edited))
    reused = load_or_make_split(path, dataset, n_labeled=2, seed=4)
    assert reused == Split.from_json(edited, path) and reused != made
    assert load_or_make_split(path, dataset) == reused


def test_load_or_make_split_refuses_another_dataset(dataset, tmp_path):
    path = tmp_path / "split.json"
    load_or_make_split(path, dataset, n_labeled=2)
    with pytest.raises(ContrastSegError, match=r"split\.json: split was made for another dataset.*delete the file"):
        load_or_make_split(path, make_dataset(n_labeled=11), n_labeled=2)


def test_load_or_make_split_refuses_other_sizes_or_seed(dataset, tmp_path):
    path = tmp_path / "split.json"
    load_or_make_split(path, dataset, n_labeled=2, seed=1)
    with pytest.raises(ContrastSegError, match=r"train_labeled 2 \(asked 5\)"):
        load_or_make_split(path, dataset, n_labeled=5, seed=1)
    with pytest.raises(ContrastSegError, match=r"seed 1 \(asked 2\)"):
        load_or_make_split(path, dataset, n_labeled=2, seed=2)


@pytest.mark.parametrize("content, problem", [
    ("{not json", "malformed split file"),
    ("[]", "not a ContrastSeg split file"),
    (json.dumps({"format": "contrastseg-split", "version": 9}), "version 9 is not supported"),
    (json.dumps({"format": "contrastseg-split", "version": 1, "seed": 0, "fingerprint": "0" * 64,
                 "groups": {"test": []}}), "must hold exactly"),
    (json.dumps({"format": "contrastseg-split", "version": 1, "seed": 0, "fingerprint": "0" * 64,
                 "groups": {"train_labeled": ["a"], "train_unlabeled": [], "validation": [], "test": ["a"]}}),
     "case 'a' is in both \"train_labeled\" and \"test\""),
])
def test_malformed_split_files(tmp_path, content, problem):
    path = tmp_path / "split.json"
    path.write_text(content)
    with pytest.raises(ContrastSegError, match=problem):
        load_split(path)


def test_missing_split_file(tmp_path):
    with pytest.raises(ContrastSegError, match=r"split\.json: no split file there"):
        load_split(tmp_path / "split.json")


def test_check_not_test_names_the_case_and_stage(dataset):
    split = make_split(dataset, n_labeled=3, seed=2)
    check_not_test(split, split.groups["train_labeled"] + split.groups["train_unlabeled"], "fine-tuning")
    leaked = split.groups["test"][0]
    with pytest.raises(ContrastSegError, match=rf"fine-tuning: refusing test case\(s\) {leaked};"):
        check_not_test(split, [split.groups["train_labeled"][0], leaked], "fine-tuning")
    with pytest.raises(ContrastSegError, match=r"pre-training: refusing case\(s\) stranger that are not in the split"):
        check_not_test(split, ["stranger"], "pre-training")
    with pytest.raises(ContrastSegError, match=leaked):
        check_not_test(split, [dataset.subset([leaked]).cases[0]], "fine-tuning")


def test_cases_in_restricts_and_hides_unused_labels(dataset):
    split = make_split(dataset, n_labeled=3, n_validation=1, seed=2)
    training = cases_in(dataset, split, "train_labeled")
    assert training.ids == split.groups["train_labeled"] and len(training.labeled) == 3
    unlabeled = cases_in(dataset, split, "train_unlabeled")
    assert unlabeled.ids == split.groups["train_unlabeled"] and unlabeled.labeled == ()
    assert cases_in(dataset, split, "test").ids == split.groups["test"]
    with pytest.raises(ContrastSegError, match="unknown split group 'training'"):
        cases_in(dataset, split, "training")
    with pytest.raises(ContrastSegError, match="made for another dataset"):
        cases_in(make_dataset(n_unlabeled=5), split, "test")


def test_group_of_unknown_case(dataset):
    with pytest.raises(ContrastSegError, match="'nobody' is not in the split"):
        make_split(dataset, n_labeled=1).group_of("nobody")
