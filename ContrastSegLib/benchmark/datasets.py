"""Benchmark datasets: the papers' conventions (in-plane spacing, crop, structures) and adapters that find the cases
of the user's copy (or generate the data), apply the fixed split and write one manifest that every stage reads.

Every adapter ends in ``OUT/data/manifest.json`` (a JSON manifest of the test and pool cases, with case ids as the
split files name them: ACDC end-diastole frames become ``patientNNN``), so that pre-training, fine-tuning and
prediction all see the same case ids, whatever the layout of the copy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..data.discovery import Case, Dataset, discover
from ..data.phantom import LABEL_COLORS as PHANTOM_COLORS
from ..data.phantom import write_phantom_dataset
from ..data.splits import make_split
from ..errors import ContrastSegError
from ..io import atomic_path, read_image, read_label
from ..preprocess import canonical_spacing, median_plane_spacing
from ..settings import MAX_AUTO_CROP as PAPERS_CROP, PreprocessConfig
from .profiles import Profile
from .split_files import FixedSplit, load_split_file, packaged_split_path, resolve_split, save_split_file

BRAIN_OFFLINE_ROOT = Path("~/.cache/contrastseg/brain-offline")
FOLDER_PREFIX = "folder:"


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset's conventions: the paper's in-plane spacing (mm) and crop (pixels), and ``roi_mm``: the side
    of the centred square that holds the structures, kept in view when a profile's crop is smaller (the spacing
    then grows). ``labels`` None: the names the copy declares. ``data``: "required" (the user's copy), "optional"
    (a folder to build it in) or "none"."""

    name: str
    description: str
    spacing_mm: float
    crop: int
    roi_mm: float
    labels: dict[int, str] | None
    data: str
    fix: str = "restore the missing cases from the official release and pass its folder with --data"

    def spacing_for(self, crop: int) -> float:
        """The paper's spacing, or coarser when ``crop`` pixels of it would not cover ``roi_mm``."""
        return round(max(self.spacing_mm, self.roi_mm / crop), 4)


SPECS = {
    "acdc": DatasetSpec("acdc", "ACDC cine MR, end-diastole frames (RV, myocardium, LV)", 1.367, 192, 160.0,
                        {0: "background", 1: "RV", 2: "myocardium", 3: "LV"}, "required"),
    "msd-prostate": DatasetSpec("msd-prostate", "MSD Task05 Prostate, T2 (peripheral and transition zone)", 0.625,
                                192, 100.0, None, "required"),
    "mmwhs": DatasetSpec("mmwhs", "MM-WHS 2017 MR, seven whole-heart structures", 1.5, 160, 200.0,
                         {0: "background", 205: "myocardium", 420: "LA", 500: "LV", 550: "RA", 600: "RV", 820: "AA",
                          850: "PA"}, "required"),
    "msd-hippocampus": DatasetSpec("msd-hippocampus", "MSD Task04 Hippocampus, T1 MR (anterior, posterior)", 1.0, 64,
                                   64.0, None, "required"),
    "phantom": DatasetSpec("phantom", "procedural cardiac-like phantoms (LV, myocardium, RV)", 1.0, 128, 128.0, None,
                           "none"),
    "phantom-mixed": DatasetSpec("phantom-mixed", "the procedural phantoms, every third subject acquired with a "
                                 "dark-blood contrast (blood dark, myocardium bright): a pool where choosing which "
                                 "volumes to label matters", 1.0, 128, 128.0, None, "none"),
    "phantom-thin": DatasetSpec("phantom-thin", "the procedural phantoms with a thin structure beside the three large "
                                "ones (an oesophagus-like tube, 1-2 % of the labeled voxels): the structure a model "
                                "can lose", 1.0, 128, 128.0, None, "none"),
    "brain-offline": DatasetSpec("brain-offline", "brain pseudo-subjects made from templates shipped in registry "
                                 "packages (random deformations, bias field, noise) + unlabeled volumes", 1.5, 128,
                                 96.0, None, "optional", fix="delete the folder to build it again"),
}
PHANTOM_DATASETS = ("phantom", "phantom-mixed", "phantom-thin")
MSD_TASKS = {"msd-prostate": "Task05_Prostate", "msd-hippocampus": "Task04_Hippocampus"}


@dataclass(frozen=True)
class PreparedDataset:
    """What the runner needs: ``manifest`` (the data source of every stage) and its discovered ``dataset``, the
    resolved ``split``, the scored ``structures`` {value: name}, overlay ``colors`` and the preprocessing."""

    name: str
    source: str
    manifest: Path
    dataset: Dataset
    split: FixedSplit
    structures: dict[int, str]
    colors: dict[int, tuple[int, int, int]] | None
    spacing_mm: float
    crop: int


def dataset_names() -> str:
    return ", ".join(list(SPECS) + [f"{FOLDER_PREFIX}PATH"])


def check_dataset_option(name: str, data: str | None) -> None:
    """Refuse an unknown --dataset or a missing / superfluous --data before anything is read."""
    if name.startswith(FOLDER_PREFIX):
        if not name[len(FOLDER_PREFIX):].strip():
            raise ContrastSegError("--dataset folder:PATH needs the folder, e.g. --dataset folder:/data/scans")
        if data is not None:
            raise ContrastSegError("--data is not used with --dataset folder:PATH (the path is part of it); drop it")
        return
    if name not in SPECS:
        raise ContrastSegError(f"--dataset {name}: unknown dataset; choose one of {dataset_names()}")
    need = SPECS[name].data
    if need == "required" and data is None:
        raise ContrastSegError(f"--dataset {name} reads your copy of the dataset; pass its folder with --data PATH")
    if need == "none" and data is not None:
        raise ContrastSegError(f"--dataset {name} is generated, --data is not used; drop it")


def prepare_dataset(name: str, data: str | None, folder: Path, profile: Profile, spacing: float | None = None,
                    crop: int | None = None, check_pool: Callable[[int], None] = lambda size: None
                    ) -> PreparedDataset:
    """Find (or generate) the cases under ``folder`` (``OUT/data``), apply the split, write the manifest.
    ``spacing`` / ``crop`` override the conventions (the profile's crop, :meth:`DatasetSpec.spacing_for` it).
    ``check_pool(labeled pool size)`` runs as soon as the size is known and before anything is written."""
    check_dataset_option(name, data)
    if name.startswith(FOLDER_PREFIX):
        return _prepare_folder(name, Path(name[len(FOLDER_PREFIX):]).expanduser(), folder, profile, spacing, crop,
                               check_pool)
    spec = SPECS[name]
    split_data = load_split_file(packaged_split_path(name))
    pool_limit = None
    if name in PHANTOM_DATASETS:
        pool_limit = profile.phantom_pool
        check_pool(len(split_data["pool"][:pool_limit]))
        dataset = _phantom(folder, len(split_data["test"]) + pool_limit, split_data["generator_seed"],
                           split_data.get("dark_blood_every", 0), split_data.get("thin_structure", False))
        source = f"generated (phantom family {split_data['generator_seed']})"
    elif name == "brain-offline":
        check_pool(profile.brain_subjects - split_data["test_rule"]["first"])
        root = Path(data).expanduser() if data else BRAIN_OFFLINE_ROOT.expanduser()
        dataset, source = _brain_offline(root, profile, split_data["generator_seed"]), str(root.absolute())
    else:
        root = Path(data).expanduser().absolute()
        if not root.exists():
            raise ContrastSegError(f"--data {root}: no such folder; pass the folder of your {name} copy")
        dataset = {"acdc": _acdc, "mmwhs": _mmwhs}.get(name, _msd)(root, name)
        source = str(root)
    fixed = resolve_split(split_data, {c.id: c.label is not None for c in dataset.cases}, source, spec.fix,
                          pool_limit)
    check_pool(len(fixed.labeled_pool))
    crop = crop or profile.crop or spec.crop
    names = spec.labels or dataset.label_names or {}
    colors = PHANTOM_COLORS if name in PHANTOM_DATASETS else dataset.label_colors
    return _finish(name, source, dataset, fixed, folder, names, colors, spacing or spec.spacing_for(crop), crop)


def _finish(name, source, dataset: Dataset, fixed: FixedSplit, folder: Path, names: dict[int, str], colors,
            spacing: float, crop: int) -> PreparedDataset:
    """Write the manifest of the test and pool cases (rewritten only when it changes) and discover it."""
    wanted = set(fixed.test) | set(fixed.pool)
    entries = [{"id": c.id, "image": str(c.image.absolute()), **({"label": str(c.label.absolute())} if c.label else {}),
                **({"channel": c.channel} if c.channel is not None else {})} for c in dataset.cases if c.id in wanted]
    content = {"cases": entries, "labels": {str(v): n for v, n in sorted(names.items())}}
    if colors:
        content["colors"] = {str(v): list(rgb) for v, rgb in sorted(colors.items()) if v}
    text = json.dumps(content, indent=2) + "\n"
    manifest = folder / "manifest.json"
    if not manifest.is_file() or manifest.read_text(encoding="utf-8") != text:
        with atomic_path(manifest, overwrite=True) as temporary:
            temporary.write_text(text, encoding="utf-8")
    listed = discover(manifest)
    structures = {v: n for v, n in (listed.label_names or {}).items() if v != 0}
    if not structures:
        raise ContrastSegError(f"{source}: the dataset declares no structures (label names); add \"labels\" to its "
                               "dataset.json or manifest")
    return PreparedDataset(name, source, manifest, listed, fixed, structures, listed.label_colors, spacing, crop)


def _acdc(root: Path, name: str) -> Dataset:
    """ACDC patient folders -> one case per patient: its end-diastole frame, named ``patientNNN``."""
    found = discover(root, acdc_frames="ED")
    if found.layout != "acdc":
        raise ContrastSegError(f"--data {root}: no ACDC patient folders (patientNNN/patientNNN_frameNN.nii.gz + "
                               "Info.cfg); pass the ACDC 'training' folder or its parent")
    cases = [replace(case, id=case.id.split("_frame")[0]) for case in found.cases]
    return replace(found, cases=tuple(cases))


def _msd(root: Path, name: str) -> Dataset:
    """A Decathlon task folder (or its parent); only the labeled training cases count."""
    task = root / MSD_TASKS[name]
    root = task if not (root / "dataset.json").is_file() and task.is_dir() else root
    if not (root / "dataset.json").is_file():
        raise ContrastSegError(f"--data {root}: no dataset.json; pass the {MSD_TASKS[name]} folder of the Medical "
                               "Segmentation Decathlon")
    found = discover(root)
    return replace(found, cases=found.labeled)


def _mmwhs(root: Path, name: str) -> Dataset:
    """MM-WHS MR training files ``mr_train_NNNN_image.nii.gz`` + ``_label.nii.gz`` anywhere under ``root``."""
    cases = []
    for image in sorted(root.rglob("mr_train_*_image.nii*")):
        stem = image.name.split("_image")[0]
        labels = sorted(image.parent.glob(f"{stem}_label.nii*"))
        if not labels:
            raise ContrastSegError(f"{image}: no {stem}_label.nii.gz beside it; restore the label file")
        cases.append(Case(stem, image, labels[0]))
    if not cases:
        raise ContrastSegError(f"--data {root}: no MM-WHS MR training files (mr_train_NNNN_image.nii.gz); pass the "
                               "folder holding mr_train/")
    return Dataset(root, "pairs", tuple(cases))


def _phantom(folder: Path, subjects: int, seed: int, dark_blood_every: int = 0,
             thin_structure: bool = False) -> Dataset:
    """The phantom family ``seed`` (every ``dark_blood_every``-th subject dark-blood; with the thin structure),
    generated once into ``folder/phantom`` (``folder/phantom-thin`` with the thin structure)."""
    path = folder / ("phantom-thin" if thin_structure else "phantom")
    if not (path / "dataset.json").is_file():
        write_phantom_dataset(path, subjects, seed=seed, overwrite=True, dark_blood_every=dark_blood_every,
                              thin_structure=thin_structure)
    return discover(path)


def _brain_offline(root: Path, profile: Profile, seed: int) -> Dataset:
    from ..data.brain_offline import ensure_brain_offline

    return discover(ensure_brain_offline(root, subjects=profile.brain_subjects, seed=seed))


def _prepare_folder(name: str, root: Path, folder: Path, profile: Profile, spacing: float | None,
                    crop: int | None, check_pool: Callable[[int], None]) -> PreparedDataset:
    """Any layout ``discover`` reads; the seeded split (20 % of the labeled cases for testing), the median in-plane
    spacing of the labeled pool and its label values are chosen on the first run and saved as ``folder/split.json``.
    Conventions: that spacing at crop 192, its field of view kept by smaller crops."""
    dataset = discover(root)
    saved = folder / "split.json"
    fix = f"restore them, or use a new --out for the changed folder (its split is saved in {saved})"
    if saved.is_file():
        split_data = load_split_file(saved)
    else:
        drawn = make_split(dataset, n_labeled=0, test_fraction=0.2, seed=0)
        split_data = {"dataset": name, "description": "test: 20 % of the labeled cases, numpy.random.default_rng(0) "
                      "permutation (contrastseg split); pool: every other case",
                      "test": list(drawn.groups["test"]), "pool": sorted(set(dataset.ids) - set(drawn.groups["test"]))}
    fixed = resolve_split(split_data, {c.id: c.label is not None for c in dataset.cases}, str(root), fix)
    if not fixed.labeled_pool:
        raise ContrastSegError(f"{root}: too few labeled cases to keep 20 % for testing and train on the rest; add "
                               "labeled cases")
    check_pool(len(fixed.labeled_pool))
    if not saved.is_file():
        labeled_pool = [c for c in dataset.cases if c.id in fixed.labeled_pool]
        median, values = _scan(labeled_pool, read_labels=not dataset.label_names)
        save_split_file({**split_data, "median_spacing_mm": median, "label_values": values}, saved)
        split_data = load_split_file(saved)
    crop = crop or profile.crop or PAPERS_CROP
    median = split_data["median_spacing_mm"]
    conventions = DatasetSpec(name, "your folder", median, PAPERS_CROP, median * PAPERS_CROP, None, "none")
    names = dataset.label_names or {0: "background", **{v: f"label_{v}" for v in split_data["label_values"]}}
    return _finish(name, str(root.absolute()), dataset, fixed, folder, names, dataset.label_colors,
                   spacing or conventions.spacing_for(crop), crop)


def _scan(cases: list[Case], read_labels: bool) -> tuple[float, list[int]]:
    """(median in-plane spacing in mm, label values found when ``read_labels``) of the labeled ``cases``."""
    spacings, values = [], set()
    for case in cases:
        image = read_image(case.image, channel=case.channel)
        spacings.append(canonical_spacing(image))
        if read_labels:
            values |= {int(v) for v in np.unique(read_label(case.label, image=image).array) if v}
    return median_plane_spacing(spacings), sorted(values)
