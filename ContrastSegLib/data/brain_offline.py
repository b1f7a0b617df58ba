"""The "brain-offline" dataset: labeled brain pseudo-subjects made from volumes shipped inside registry packages.

No dataset is downloaded: ``pip download --no-deps`` fetches two pinned wheels into a cache (a zip each), and the
volumes are read straight out of them.

- ``deepmriprep`` ships the CAT12 T1 template (0.5 mm, brain-extracted) and the neuromorphometrics atlas (1 mm) with
  a CSV of structure names. A few subcortical structures, left and right merged, become the classes; their atlas
  values are looked up by name in the CSV. Every labeled subject is a pseudo-subject of this ONE template
  (:mod:`.pseudo_subjects`: random smooth deformation, bias field, blur, noise, field of view), so the labeled
  subjects share one anatomy up to moderate deformations — results on them measure little about real
  inter-subject variation.
- ``nilearn`` ships the ICBM152 2009 T1 template: a second, unlabeled brain; it goes undeformed and as a few
  unlabeled pseudo-subjects into the MSD ``test`` list, which :func:`~.discovery.discover` reads as unlabeled cases.

The folder is MSD-like (``dataset.json``, ``imagesTr/``, ``labelsTr/``, ``imagesTs/``) with ``README.md`` and
``provenance.json`` (parameters, packages, licences, the structure mapping). It appears whole or not at all;
:func:`ensure_brain_offline` reuses a folder whose provenance matches the parameters and rebuilds it otherwise.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import ContrastSegError
from ..io.read import read_image, read_label
from ..io.volume import Volume
from ..io.write import atomic_path, check_output_path, write_volume
from ..io.write_file import write_text
from .pseudo_subjects import DEFAULT_CONFIG, PseudoSubjectConfig, make_pseudo_subject, reslice

FORMAT = "contrastseg-brain-offline"
FORMAT_VERSION = 1  # bump when the generated data change for identical parameters
DEFAULT_CACHE = Path("~/.cache/contrastseg/packages")  # the pinned wheels
DEFAULT_ROOT = Path("~/.cache/contrastseg/brain-offline")  # the dataset folder, outside any repository
PROVENANCE = "provenance.json"
UNLABELED_INDEX_OFFSET = 1_000_000  # pseudo-subject indices of the unlabeled brain, apart from the labeled ones


@dataclass(frozen=True)
class Package:
    """A pinned wheel of a package registry and the terms of what we take from it."""

    name: str
    version: str
    licence: str

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}"

    @property
    def wheel_prefix(self) -> str:
        return f"{self.name.replace('-', '_')}-{self.version}-"


DEEPMRIPREP = Package(
    "deepmriprep", "0.3.0",
    "package code MIT; the data files keep their upstream terms, which the wheel does not state: the T1 template "
    "comes from the CAT12 toolbox (check its terms before reuse), the neuromorphometrics atlas is distributed for "
    "non-commercial use (CC BY-NC; labels 'provided by Neuromorphometrics, Inc. under academic subscription') - "
    "non-commercial use only, do not redistribute the generated data")
NILEARN = Package(
    "nilearn", "0.14.1",
    "package code BSD-3-Clause; the ICBM152 2009 template (McConnell Brain Imaging Centre, Fonov et al. 2009/2011) "
    "is described as 'License: unknown' by nilearn; check the upstream terms before redistributing")
PACKAGES = (DEEPMRIPREP, NILEARN)

TEMPLATE_MEMBER = "deepmriprep/data/templates/Template_05mm_bet.nii.gz"
ATLAS_MEMBER = "deepmriprep/data/templates/neuromorphometrics.nii.gz"
ATLAS_NAMES_MEMBER = "deepmriprep/data/templates/neuromorphometrics.csv"
MNI_MEMBER = "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"

# Class value -> (class name, atlas structure names without their "Left "/"Right " prefix, colour).
# Colours are FreeSurfer's lookup-table colours of these structures.
STRUCTURES: dict[int, tuple[str, tuple[str, ...], tuple[int, int, int]]] = {
    1: ("hippocampus", ("Hippocampus",), (220, 216, 20)),
    2: ("thalamus", ("Thalamus Proper", "Thalamus"), (0, 118, 14)),
    3: ("caudate", ("Caudate",), (122, 186, 220)),
    4: ("putamen", ("Putamen",), (236, 13, 176)),
    5: ("lateral ventricles", ("Lateral Ventricle", "Inf Lat Vent"), (120, 18, 134)),
}
SIDES = ("left ", "right ")

STATEMENT = ("All {subjects} labeled subjects derive from ONE template (the CAT12 T1 template of deepmriprep with the "
             "neuromorphometrics atlas) through random smooth deformations, a bias field, blur, noise and a varying "
             "field of view; they are pseudo-subjects, not different people. The unlabeled pool is the ICBM152 2009 "
             "template of nilearn (undeformed, and as {unlabeled} unlabeled pseudo-subjects).")


def fetch_packages(cache_dir: str | os.PathLike = DEFAULT_CACHE) -> dict[str, Path]:
    """Package name -> its pinned wheel in ``cache_dir``, downloaded with ``pip download --no-deps`` when missing."""
    cache = Path(cache_dir).expanduser()
    wheels = {}
    for package in PACKAGES:
        wheel = _cached_wheel(cache, package)
        if wheel is None:
            wheel = _download(cache, package)
        if not zipfile.is_zipfile(wheel):
            raise ContrastSegError(f"{wheel}: not a readable wheel (zip); delete it and retry to download it again")
        wheels[package.name] = wheel
    return wheels


def _cached_wheel(cache: Path, package: Package) -> Path | None:
    found = sorted(cache.glob(package.wheel_prefix + "*.whl")) if cache.is_dir() else []
    return found[0] if found else None


def _download(cache: Path, package: Package) -> Path:
    fix = (f"check the network/index, or copy {package.wheel_prefix}py3-none-any.whl (from `pip download --no-deps "
           f"{package.spec}` on another machine) into {cache} and retry")
    try:
        cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".download-", dir=cache))
    except OSError as error:
        raise ContrastSegError(f"{cache}: cannot create the package cache ({error.strerror}); "
                               "pass a writable --cache folder") from None
    try:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "--no-input", "-d", str(staging), package.spec]
        try:
            result = subprocess.run(command, capture_output=True, text=True)
        except OSError as error:
            raise ContrastSegError(f"pip could not run to download {package.spec} ({error}); {fix}") from None
        found = sorted(staging.glob(package.wheel_prefix + "*.whl"))
        if result.returncode != 0 or not found:
            lines = [line.strip() for line in (result.stderr or result.stdout or "").splitlines() if line.strip()]
            reason = lines[-1][:200] if lines else f"exit status {result.returncode}, no wheel"
            raise ContrastSegError(f"pip could not download {package.spec} into {cache} ({reason}); {fix}")
        target = cache / found[0].name
        os.replace(found[0], target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def build_brain_offline(out: str | os.PathLike, subjects: int = 20, seed: int = 0,
                        cache: str | os.PathLike = DEFAULT_CACHE, overwrite: bool = False, unlabeled: int = 4,
                        config: PseudoSubjectConfig = DEFAULT_CONFIG) -> Path:
    """Write the dataset folder ``out`` (see the module docstring) and return it.

    ``subjects`` labeled pseudo-subjects ``brain_000``... of family ``seed``; ``unlabeled`` pseudo-subjects of the
    unlabeled brain besides its undeformed copy. Nothing is written at ``out`` unless the whole build succeeds.
    """
    out = Path(out).expanduser()
    parameters = _parameters(subjects, seed, unlabeled, config)
    check_output_path(out, overwrite)
    started = time.perf_counter()
    wheels = fetch_packages(cache)
    with tempfile.TemporaryDirectory(prefix="contrastseg-brain-") as scratch:
        template, atlas, names_csv, mni = _read_sources(wheels, Path(scratch))
    structures = _structure_values(names_csv, atlas)
    classes = _class_map(atlas, structures)
    source = _template_on_atlas_grid(template, atlas)
    del template

    training, test, counts = [], [], {}
    with atomic_path(out, overwrite) as staging:
        staging.mkdir()
        for index in range(subjects):
            case = f"brain_{index:03d}"
            image, label = make_pseudo_subject(source, classes, index, seed, config)
            write_volume(image, staging / "imagesTr" / f"{case}.nii.gz")
            write_volume(label, staging / "labelsTr" / f"{case}.nii.gz", label=True)
            training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
            counts[case] = {str(value): int((label.array == value).sum()) for value in STRUCTURES}
        plain = reslice(mni, config.spacing)
        plain = plain.with_array((plain.array * (1000.0 / _reference(plain))).astype(np.float32))
        write_volume(plain, staging / "imagesTs" / "mni152_t1.nii.gz")
        test.append("./imagesTs/mni152_t1.nii.gz")
        for number in range(unlabeled):
            case = f"mni152_pseudo_{number:03d}"
            image, _ = make_pseudo_subject(mni, None, UNLABELED_INDEX_OFFSET + number, seed, config)
            write_volume(image, staging / "imagesTs" / f"{case}.nii.gz")
            test.append(f"./imagesTs/{case}.nii.gz")

        statement = STATEMENT.format(subjects=subjects, unlabeled=unlabeled)
        description = {
            "name": "ContrastSeg brain-offline",
            "description": statement,
            "reference": f"{DEEPMRIPREP.spec} ({TEMPLATE_MEMBER}, {ATLAS_MEMBER}); {NILEARN.spec} ({MNI_MEMBER})",
            "licence": "CC BY-NC (atlas-derived labels); see README.md",
            "tensorImageSize": "3D",
            "modality": {"0": "MR"},
            "labels": {"0": "background", **{str(value): item[0] for value, item in STRUCTURES.items()}},
            "contrastseg_colors": {str(value): list(item[2]) for value, item in STRUCTURES.items()},
            "numTraining": len(training),
            "numTest": len(test),
            "training": training,
            "test": test,
        }
        provenance = {
            "format": FORMAT,
            "parameters": parameters,
            "statement": statement,
            "packages": [{"name": p.name, "version": p.version, "wheel": wheels[p.name].name,
                          "sha256": _sha256(wheels[p.name]), "licence": p.licence} for p in PACKAGES],
            "sources": {"template": TEMPLATE_MEMBER, "atlas": ATLAS_MEMBER, "atlas_names": ATLAS_NAMES_MEMBER,
                        "unlabeled": MNI_MEMBER},
            "structures": {str(value): {"name": STRUCTURES[value][0], "atlas_values": [v for v, _ in found],
                                        "atlas_names": [n for _, n in found]}
                           for value, found in structures.items()},
            "voxel_counts": counts,
            "files": [entry[key] for entry in training for key in ("image", "label")] + test,
            "build_seconds": round(time.perf_counter() - started, 1),
        }
        write_text(json.dumps(description, indent=2) + "\n", staging / "dataset.json")
        write_text(_readme(provenance), staging / "README.md")
        write_text(json.dumps(provenance, indent=2) + "\n", staging / PROVENANCE)
    return out


def ensure_brain_offline(root: str | os.PathLike, subjects: int = 20, seed: int = 0,
                         cache: str | os.PathLike = DEFAULT_CACHE, unlabeled: int = 4,
                         config: PseudoSubjectConfig = DEFAULT_CONFIG) -> Path:
    """The dataset folder ``root``: reused when it is complete and was built with these parameters (its
    ``provenance.json`` says so), (re)built otherwise. A folder that is not a brain-offline folder is refused."""
    root = Path(root).expanduser()
    wanted = _parameters(subjects, seed, unlabeled, config)
    if root.exists():
        provenance = _read_provenance(root)
        if provenance is None:
            if root.is_dir() and not any(root.iterdir()):
                return build_brain_offline(root, subjects, seed, cache, True, unlabeled, config)
            raise ContrastSegError(f"{root}: exists and is not a brain-offline folder (no readable {PROVENANCE}); "
                                   "choose another folder or remove it")
        if provenance.get("parameters") == wanted and _complete(root, provenance):
            return root
    return build_brain_offline(root, subjects, seed, cache, True, unlabeled, config)


def _parameters(subjects: int, seed: int, unlabeled: int, config: PseudoSubjectConfig) -> dict:
    for name, value, least in (("subjects", subjects, 1), ("seed", seed, 0), ("unlabeled", unlabeled, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ContrastSegError(f"brain-offline: {name} must be a whole number ≥ {least}, got {value!r}")
    if not isinstance(config, PseudoSubjectConfig):
        raise ContrastSegError("brain-offline: config must be a PseudoSubjectConfig")
    return json.loads(json.dumps({
        "format_version": FORMAT_VERSION, "subjects": int(subjects), "seed": int(seed), "unlabeled": int(unlabeled),
        "packages": [p.spec for p in PACKAGES],
        "structures": {str(v): [s[0], list(s[1])] for v, s in STRUCTURES.items()},
        "pseudo_subject_config": asdict(config),
    }))


def _read_provenance(root: Path) -> dict | None:
    try:
        data = json.loads((root / PROVENANCE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


def _complete(root: Path, provenance: dict) -> bool:
    files = provenance.get("files")
    return (root / "dataset.json").is_file() and isinstance(files, list) and all(
        isinstance(name, str) and (root / name).is_file() for name in files)


def _read_sources(wheels: dict[str, Path], scratch: Path) -> tuple[Volume, Volume, str, Volume]:
    """(template, atlas, atlas names CSV text, unlabeled brain) read out of the wheels."""
    template = read_image(_extract(wheels[DEEPMRIPREP.name], TEMPLATE_MEMBER, scratch))
    atlas = read_label(_extract(wheels[DEEPMRIPREP.name], ATLAS_MEMBER, scratch))
    names = _extract(wheels[DEEPMRIPREP.name], ATLAS_NAMES_MEMBER, scratch).read_text(encoding="utf-8-sig")
    mni = read_image(_extract(wheels[NILEARN.name], MNI_MEMBER, scratch))
    return template, atlas, names, mni


def _extract(wheel: Path, member: str, scratch: Path) -> Path:
    target = scratch / Path(member).name
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as stream, target.open("wb") as sink:
            shutil.copyfileobj(stream, sink)
    except KeyError:
        raise ContrastSegError(f"{wheel}: has no {member}; this is not the expected wheel - delete it and retry") \
            from None
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise ContrastSegError(f"{wheel}: cannot read {member} ({error}); delete the wheel and retry") from None
    return target


def _structure_values(names_csv: str, atlas: Volume) -> dict[int, list[tuple[int, str]]]:
    """Class value -> [(atlas value, atlas name)], found by name in the atlas CSV (``;``-separated, columns
    ``ROIid`` and ``ROIname``), left and right merged; each must occur in the atlas volume."""
    where = f"{ATLAS_NAMES_MEMBER} in the {DEEPMRIPREP.spec} wheel"
    rows = list(csv.reader(io.StringIO(names_csv), delimiter=";"))
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    if "roiid" not in header or "roiname" not in header:
        raise ContrastSegError(f"{where}: no ROIid/ROIname columns; the wheel is not the expected one - delete it")
    id_col, name_col = header.index("roiid"), header.index("roiname")
    present = set(int(v) for v in np.unique(atlas.array))
    found: dict[int, list[tuple[int, str]]] = {}
    for value, (class_name, names, _) in STRUCTURES.items():
        wanted = {name.lower() for name in names}
        matches = []
        for row in rows[1:]:
            if len(row) <= max(id_col, name_col) or not row[id_col].strip().isdigit():
                continue
            name = row[name_col].strip()
            bare = next((name[len(s):] for s in SIDES if name.lower().startswith(s)), name)
            if bare.lower() in wanted and int(row[id_col]) in present:
                matches.append((int(row[id_col]), name))
        if not matches:
            raise ContrastSegError(f"{where}: no structure named {' or '.join(names)} present in the atlas; "
                                   "the wheel is not the expected one - delete it and retry")
        found[value] = sorted(matches)
    return found


def _class_map(atlas: Volume, structures: dict[int, list[tuple[int, str]]]) -> Volume:
    lookup = np.zeros(int(atlas.array.max()) + 1, dtype=np.uint8)
    for value, matches in structures.items():
        lookup[[atlas_value for atlas_value, _ in matches]] = value
    return atlas.with_array(lookup[atlas.array], source="neuromorphometrics classes")


def _template_on_atlas_grid(template: Volume, atlas: Volume) -> Volume:
    """The template smoothed to the atlas resolution and resampled onto the atlas grid (physical coordinates)."""
    image = template.to_sitk()
    sigma = 0.5 * max(0.0, max(atlas.spacing) - max(template.spacing))
    if sigma > 0:
        image = sitk.SmoothingRecursiveGaussian(image, sigma)
    reference = atlas.with_array(np.zeros(atlas.array.shape, np.float32)).to_sitk()
    resampled = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return Volume.from_sitk(resampled, source=f"{DEEPMRIPREP.spec}:{Path(TEMPLATE_MEMBER).name}")


def _reference(volume: Volume) -> float:
    positive = volume.array[volume.array > 0]
    return float(np.percentile(positive, 99)) if positive.size else 1.0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _readme(provenance: dict) -> str:
    parameters = provenance["parameters"]
    lines = [
        "# ContrastSeg brain-offline (generated; do not commit or redistribute)", "",
        "**" + provenance["statement"] + "**", "",
        "Split train/test by pseudo-subject; any score on these data measures robustness to deformation and "
        "acquisition changes of one anatomy, not generalisation across people.", "",
        f"Built by `ContrastSegLib.data.brain_offline` (format {FORMAT} v{parameters['format_version']}): "
        f"{parameters['subjects']} labeled subjects, seed {parameters['seed']}, {parameters['unlabeled']} unlabeled "
        "pseudo-subjects. Pseudo-subject settings: `" + json.dumps(parameters["pseudo_subject_config"]) + "`.", "",
        "## Classes (atlas values found by name in " + ATLAS_NAMES_MEMBER + ")", "",
        "| value | class | atlas structures (value) |", "|---|---|---|",
    ]
    for value, item in provenance["structures"].items():
        merged = ", ".join(f"{n} ({v})" for v, n in zip(item["atlas_values"], item["atlas_names"]))
        lines.append(f"| {value} | {item['name']} | {merged} |")
    lines += ["", "## Packages (read from the wheels, never committed)", ""]
    for package in provenance["packages"]:
        lines.append(f"- `{package['name']}=={package['version']}` ({package['wheel']}, sha256 "
                     f"{package['sha256'][:16]}…): {package['licence']}")
    lines += ["", "## Files", "",
              "- `imagesTr/brain_NNN.nii.gz`, `labelsTr/brain_NNN.nii.gz`: labeled pseudo-subjects of the CAT12 "
              "template (axial slices, identity direction).",
              "- `imagesTs/mni152_t1.nii.gz`: the ICBM152 2009 T1 template resliced, undeformed (unlabeled).",
              "- `imagesTs/mni152_pseudo_NNN.nii.gz`: unlabeled pseudo-subjects of the ICBM152 template.",
              "- `provenance.json`: parameters, wheels, licences, structure mapping, voxel counts.", ""]
    return "\n".join(lines)
