"""Every setting of preprocessing, pre-training and fine-tuning in one place: its default, check and flag (its
choices: ``choices``).

Each config field carries its command-line flag, rule and help (made by :func:`option`), so :func:`add_options`
adds a config class's options to a parser, :func:`config_from_args` builds the config from the parsed options, and
:func:`command_arguments` writes the flags that reproduce a config. Standard library only (no torch, no numpy):
scripts and the Slicer module import it cheaply.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass, fields
from typing import Any, Iterable, Sequence, TypeVar

from .choices import (  # noqa: F401  (re-exported: the settings' choices are imported from here)
    DEFAULT_STRATEGY, DOMAIN_STRATEGIES, MASKED_NAME, STRATEGIES, BudgetDevices, ChannelsLast, Choice, Device, Flips,
    GlobalStrategy, LocalStrategy, LrSchedule, MaskedStrategy, Precision, Stage, SupervisedLocalMode)
from .errors import ContrastSegError
from .option_rules import (BATCH, CROP, DURATION, FACTORS, FRACTION, LEARNING_RATE, PERCENTILES, POSITIVE_WHOLE, SEED,
                           SHAPE_PARAMETER, SIDE, SLICE_AXIS, SPACING, SWITCH, TEXT, Rule, checked_parse, finite_between,
                           one_of, option, problem, text_of, whole_between)

C = TypeVar("C", bound="Config")
DEFAULT_CHANNELS = (16, 32, 64, 128, 128, 128)  # the paper's encoder widths
MAX_BLOCKS, MAX_WIDTH = 8, 1024  # bounds of --channels: encoder blocks, and the width of each
MAX_AUTO_CROP = 192  # the largest training side chosen from the data (``preprocess.resolve``): the papers' crop


def unet_divisor(channels: Sequence[int]) -> int:
    """Image sides must be multiples of this: the UNet halves them once per encoder block after the first."""
    return 2 ** (len(channels) - 1)


# the rules of the values are in ``option_rules``
DEVICE = Rule(lambda v: v in Device.values() or re.fullmatch(r"cuda:\d+", v) is not None,
              "unknown device; choose one of auto, cpu, cuda, cuda:N, mps")


# --- the configs ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Config:
    """Base of the config dataclasses: field checks and a JSON round trip that tolerates older records."""

    def check(self: C) -> C:
        """Refuse a field its rule does not allow, with one line naming the flag and the fix; returns ``self``."""
        for item in option_fields(type(self)):
            value = getattr(self, item.name)
            if not item.metadata["rule"].allows(value):
                raise _refusal(item, value)
        return self

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls: type[C], data: dict) -> C:
        """The config of a :meth:`to_json` dict, also of another version: unknown keys are dropped, missing ones
        take their defaults, lists become tuples."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known})


def _refusal(item: dataclasses.Field, value: Any) -> ContrastSegError:
    """The error for a bad value of the field ``item``: its flag, the value, what it must be, an example."""
    return ContrastSegError(f"{item.metadata['flags'][0]} {text_of(item.metadata['rule'], value)}: {problem(item)}")


@dataclass(frozen=True)
class ExecutionConfig(Config):
    """Where and in which precision a job runs (see ``runtime.precision``)."""

    device: str = option(Device.AUTO.value, "--device", DEVICE, "auto = cuda > mps > cpu; or cpu, cuda, cuda:N, mps")
    precision: str = option(Precision.AUTO.value, "--precision", one_of(Precision),
                            "auto: mixed precision on CUDA, bf16 + channels_last on CPUs with AMX/AVX512-BF16; fp32 "
                            "turns it off")
    channels_last: str = option(ChannelsLast.AUTO.value, "--channels-last", one_of(ChannelsLast),
                                "channels_last memory format: auto = with mixed precision, on, off")


@dataclass(frozen=True)
class PreprocessConfig(Config):
    """Settings shared by training and prediction; stored in every checkpoint.

    target_spacing: in-plane spacing in mm (None: the median of the training volumes, filled in before training);
    crop_size: side of the square training slices (None: from the data, ``preprocess.resolve``; slices larger than
    it are cut into patches by fine-tuning and covered whole by prediction); slice_axis: axis of the canonically oriented array (axes reordered and
    flipped to the direction closest to identity, LPS) to slice along (0 = k ~ axial, 1 = j ~ coronal,
    2 = i ~ sagittal; None: the axis with the largest spacing); percentiles: intensity range mapped to [0, 1];
    n4: N4 bias-field correction first.
    """

    target_spacing: float | None = option(None, "--spacing", SPACING, "in-plane spacing in mm to resample to",
                                          shown="median in-plane spacing of the training volumes")
    crop_size: int | None = option(None, "--crop-size", CROP,
                                   "side of the square training slices, a multiple of 32 (of 2^(number of --channels "
                                   "- 1)); larger slices are trained in patches of it and predicted whole",
                                   shown="the smallest multiple of 32 that covers the training slices at the target "
                                         "spacing, at most 192")
    slice_axis: int | None = option(None, "--slice-axis", SLICE_AXIS,
                                    "axis of the canonically oriented (LPS) array to slice along: 0 = k (axial), "
                                    "1 = j (coronal), 2 = i (sagittal)", shown="the axis with the largest spacing")
    percentiles: tuple[float, float] = option((1.0, 99.0), "--percentiles", PERCENTILES,
                                              "intensity percentiles mapped to 0 and 1", metavar="LO,HI")
    n4: bool = option(False, "--n4", SWITCH, "N4 bias-field correction before normalisation")

    def check(self, channels: Sequence[int] = DEFAULT_CHANNELS) -> "PreprocessConfig":
        """The field checks, and a crop the UNet of encoder widths ``channels`` can halve to its bottom."""
        super().check()
        divisor = unet_divisor(channels)
        if self.crop_size is not None and self.crop_size % divisor:
            raise ContrastSegError(
                f"--crop-size {self.crop_size} must be a multiple of {divisor} (the UNet halves the image "
                f"{len(channels) - 1} times); try {max(divisor, round(self.crop_size / divisor) * divisor)}")
        return self


@dataclass(frozen=True)
class SuggestConfig(ExecutionConfig):
    """Settings of an annotation suggestion (``contrastseg suggest``, Slicer's "Suggest volumes to annotate").

    count: volumes to suggest; uncertain_share: with a fine-tuned model, the picks are made among this share of the
    candidates, the most uncertain ones (at least ``count``), by the same k-center coverage."""

    count: int = option(2, "--count", POSITIVE_WHOLE, "number of volumes to suggest for annotation")
    uncertain_share: float = option(0.5, "--uncertain-share", FRACTION,
                                    "with a fine-tuned --model: choose among this share of the candidates, the most "
                                    "uncertain (mean entropy in the predicted structures and their border)")


DEFAULT_MAX_VOXELS = 2 ** 30  # about 1.07e9 voxels: 4 GiB as float32


@dataclass(frozen=True)
class ReadConfig(Config):
    """What reading an image may allocate and accept; not stored in checkpoints (see ``io.read_checks``)."""

    max_voxels: int = option(DEFAULT_MAX_VOXELS, "--max-voxels", POSITIVE_WHOLE,
                             "refuse images whose header declares more voxels than this, before reading them; "
                             "raise it for larger scans")
    accept_shear: bool = option(False, "--accept-shear", SWITCH,
                                "read a NIfTI whose affine is sheared with the nearest orthogonal axes (a warning "
                                "says so) instead of refusing it")


@dataclass(frozen=True)
class ScheduleConfig(Config):
    """How long a training run may take (see ``runtime.budget``): a time budget that sets the steps from the
    measured step time, and a stop at a plateau of the training loss; both end a run before ``iterations``."""

    time_budget: float | None = option(None, "--time-budget", DURATION,
                                       "wall-clock time for the training steps, e.g. 10m: the number of steps is "
                                       "set from the pace of the first ones (at most --iterations)",
                                       shown="none: --iterations steps", metavar="DURATION")
    budget_devices: str = option(BudgetDevices.ALL.value, "--time-budget-on", one_of(BudgetDevices),
                                 "where --time-budget applies: all devices, or cpu only (a GPU then runs the "
                                 "iterations in full)")
    budget_batch: bool = option(True, "--budget-batch", SWITCH,
                                "under --time-budget, lower the batch (down to 4) when fewer than 1500 steps would "
                                "fit: the number of steps, not of images, sets how soon the structures are learned")
    plateau_stop: bool = option(False, "--plateau-stop", SWITCH,
                                "stop when the training loss has stopped falling (3 windows of a twentieth of "
                                "the run, each without a 1 % drop below the best before)")

    def budget_on(self, device_type: str) -> float | None:
        """The time budget of a run on a device of ``device_type`` ("cpu", "cuda", "mps"), or None."""
        applies = self.budget_devices == BudgetDevices.ALL or device_type == BudgetDevices.CPU
        return self.time_budget if applies else None


@dataclass(frozen=True)
class FinetuneConfig(ExecutionConfig, ScheduleConfig):
    """Settings of one fine-tuning run; stored in the checkpoint.

    lr_schedule: "auto" is "warmup-decay" where a time budget ends the run (a few thousand steps or fewer: the
    decay that ends at the deadline raised brain-offline's Dice at equal steps, benchmarks/RESULTS.md §5) and the
    paper's "constant" where the iterations do; under "cosine", which anneals from the start, a small structure
    learned late (the hippocampus of a brain) was never learned (RESULTS.md, fine-tuning ablation). The augmentation defaults come from the same ablation: no flips (they swap the sides of
    a heart or the front and back of a brain), no elastic warp.
    """

    iterations: int = option(3000, "--iterations", POSITIVE_WHOLE, "training steps (of each self-training round)")
    batch_size: int = option(16, "--batch-size", BATCH, "labeled slices per step")
    learning_rate: float = option(1e-3, "--lr", LEARNING_RATE, "Adam learning rate")
    lr_schedule: str = option(LrSchedule.AUTO.value, "--lr-schedule", one_of(LrSchedule),
                              "auto: warmup-decay under a time budget, else constant; constant: the paper's "
                              "setting; cosine: anneal to 0 over the run; warmup-decay: a short warm-up, the full "
                              "rate, then a linear decay to the end of the planned steps")
    validate_every: int = option(200, "--validate-every", POSITIVE_WHOLE,
                                 "steps between validation Dice measurements (with a split's validation cases)")
    seed: int = option(0, "--seed", SEED, "seed of initialisation, sampling and augmentation")
    augment: bool = option(True, "--augment", SWITCH, "geometric and intensity augmentation (--no-augment: off)")
    flips: str = option(Flips.NONE.value, "--flips", one_of(Flips),
                        "random flips of the training slices; none keeps the sides and front of asymmetric anatomy "
                        "(heart, brain); horizontal (left-right in axial and coronal slices), vertical or both only "
                        "for anatomy symmetric along that axis")
    rotation: float = option(15.0, "--rotation", finite_between(0, 180, low_open=False),
                             "largest random in-plane rotation, degrees")
    scale_range: tuple[float, float] = option((0.9, 1.1), "--scale-range", FACTORS, "random zoom factors",
                                              metavar="LO,HI")
    elastic: float = option(0.0, "--elastic", finite_between(0, 0.2, low_open=False),
                            "largest elastic displacement, a fraction of the slice side (0: off)")
    contrast_range: tuple[float, float] = option((0.7, 1.3), "--contrast-range", FACTORS,
                                                 "random contrast factors around each slice's mean", metavar="LO,HI")
    brightness: float = option(0.3, "--brightness", finite_between(0, 1, low_open=False),
                               "largest random brightness shift (images are normalised to 0..1)")
    structure_share: float = option(0.0, "--structure-share", finite_between(0, 1, low_open=False),
                                    "share of every batch drawn from the slices holding a structure, the structure "
                                    "chosen uniformly (a rare one as often as a common one)")
    mixup: bool = option(False, "--mixup", SWITCH, "Mixup of image/label pairs")
    mixup_alpha: float = option(0.4, "--mixup-alpha", SHAPE_PARAMETER, "α of the Beta(α, α) Mixup weights")
    ce_weight: float = option(1.0, "--ce-weight", finite_between(0, 100, low_open=False),
                              "weight of cross-entropy beside Dice (0: Dice only, as the paper)")
    self_training_rounds: int = option(0, "--self-training", whole_between(0, 100),
                                       "rounds of self-training (1 when given alone): the model pseudo-labels the "
                                       "unlabeled volumes and trains again on labeled + pseudo-labeled slices "
                                       "(see --pseudo-keep, --labeled-share)", nargs="?", const=1,
                                       metavar="ROUNDS")
    pseudo_keep: float = option(1.0, "--pseudo-keep", finite_between(0, 1),
                                "share of each class's pseudo-labeled pixels kept, the most confident ones (the "
                                "threshold is that class's confidence quantile); 1, the default: every argmax "
                                "pixel, as Chaitanya et al. (ignoring the unsure pixels removed the background "
                                "around the structures and taught false positives: benchmarks/RESULTS.md)")
    labeled_share: float = option(0.5, "--labeled-share", FRACTION,
                                  "share of every self-training batch drawn from the labeled volumes")

    @property
    def total_iterations(self) -> int:
        """Steps of the whole run: every self-training round repeats ``iterations``."""
        return self.iterations * (1 + self.self_training_rounds)

    def lr_schedule_on(self, device_type: str) -> LrSchedule:
        """The learning-rate schedule of a run on ``device_type``: "auto" resolved by whether a budget applies."""
        if self.lr_schedule != LrSchedule.AUTO:
            return LrSchedule(self.lr_schedule)
        return LrSchedule.WARMUP_DECAY if self.budget_on(device_type) is not None else LrSchedule.CONSTANT


@dataclass(frozen=True)
class PretrainConfig(ExecutionConfig, ScheduleConfig):
    """Settings of one pre-training stage; stored in its checkpoint. A batch holds volumes_per_batch × partitions
    slices (for G^R, L^R and the supervised-local stage the same number of slices drawn at random); stride and
    block_size belong to the supervised-local modes "stride" and "block". strategy None: the stage's default."""

    stage: str = option(Stage.GLOBAL.value, "--stage", one_of(Stage),
                        "global: encoder + g1; local: the first decoder blocks + g2 on the frozen encoder of --init; "
                        "supervised-local: encoder + decoder on the labels of --labeled; masked: encoder + decoder "
                        "reconstruct hidden patches of the unlabeled slices")
    strategy: str | None = option(None, ("--strategy", "--mode"), TEXT,
                                  "global: GR | GD- | GD; local: LR | LD; supervised-local (--mode): stride (every "
                                  "s-th pixel), block (b × b blocks), exact (all pixels, chunked), dense (all at once; "
                                  "small inputs only)", shown="GD, LR or stride, by --stage")
    iterations: int = option(10000, "--iterations", POSITIVE_WHOLE, "training steps")
    partitions: int = option(4, "--partitions", BATCH,
                             "S: equal partitions of each volume by relative slice position")
    volumes_per_batch: int = option(4, "--volumes-per-batch", BATCH,
                                    "m: volumes per batch; a batch holds m × S slices")
    learning_rate: float = option(1e-3, "--lr", LEARNING_RATE, "Adam learning rate")
    temperature: float = option(0.1, "--temperature", SHAPE_PARAMETER, "τ of the contrastive losses")
    decoder_blocks: int = option(3, "--decoder-blocks", whole_between(1, MAX_BLOCKS - 1),
                                 "l: decoder blocks trained by the local stage")
    region_size: int = option(3, "--region-size", SIDE, "K: local regions of K × K features")
    stride: int = option(4, "--stride", SIDE, "supervised-local --mode stride: keep every s-th pixel")
    block_size: int = option(16, "--block-size", SIDE, "supervised-local --mode block: block side b")
    mask_patch: int = option(16, "--mask-patch", SIDE, "masked stage: side of the hidden square patches, pixels")
    mask_ratio: float = option(0.6, "--mask-ratio", FRACTION, "masked stage: share of the patches hidden")
    seed: int = option(0, "--seed", SEED, "seed of initialisation, sampling and views")
    checkpoint_every: int = option(500, "--checkpoint-every", POSITIVE_WHOLE,
                                   "steps between saves of the resume file")

    def __post_init__(self) -> None:
        if self.strategy is None and self.stage in DEFAULT_STRATEGY:
            object.__setattr__(self, "strategy", DEFAULT_STRATEGY[self.stage])

    def check(self) -> "PretrainConfig":
        """The field checks, and a strategy of the stage."""
        super().check()
        if self.strategy not in STRATEGIES[self.stage]:
            raise ContrastSegError(f"--strategy {self.strategy} is not a {self.stage} strategy; choose one of "
                                   f"{', '.join(STRATEGIES[self.stage])}")
        return self

    def check_model(self, channels: Sequence[int], crop_size: int | None) -> "PretrainConfig":
        """The settings that depend on the UNet (encoder widths ``channels``) and the slice side ``crop_size``:
        decoder blocks the UNet has, a region that fits the local feature map, a stride or block inside a slice.
        A side still to be chosen from the data (None) is checked as the smallest it can be, one ``unet_divisor``;
        the job checks the chosen one again."""
        crop_size = unet_divisor(channels) if crop_size is None else crop_size
        blocks = len(channels) - 1
        if self.stage == Stage.LOCAL:
            if self.decoder_blocks > blocks:
                raise ContrastSegError(f"--decoder-blocks {self.decoder_blocks}: the UNet of --channels "
                                       f"{','.join(map(str, channels))} has {blocks} decoder blocks; choose "
                                       f"1..{blocks}")
            side = crop_size // 2 ** (blocks - self.decoder_blocks)
            if self.region_size > side:
                raise ContrastSegError(f"--region-size {self.region_size}: the local feature map after "
                                       f"{self.decoder_blocks} decoder block(s) of a {crop_size}² crop is {side}² "
                                       f"pixels; choose 1..{side}")
        if self.stage == Stage.MASKED and (self.mask_patch > crop_size // 2 or crop_size % self.mask_patch):
            raise ContrastSegError(f"--mask-patch {self.mask_patch}: slices are {crop_size}² pixels (--crop-size); "
                                   f"choose a divisor of {crop_size} up to {crop_size // 2}, e.g. "
                                   f"{max(1, crop_size // 8)}")
        if self.stage == Stage.SUPERVISED_LOCAL:
            largest = {"--stride": crop_size - 1, "--block-size": crop_size}  # a stride must keep 2 pixels a side
            for flag, value in (("--stride", self.stride), ("--block-size", self.block_size)):
                if value > largest[flag]:
                    raise ContrastSegError(f"{flag} {value}: slices are {crop_size}² pixels (--crop-size); choose "
                                           f"1..{largest[flag]}")
        return self

    @property
    def uses_domain(self) -> bool:
        """Whether batches need the (volume, partition) structure: G^D-, G^D and L^D."""
        return self.strategy in DOMAIN_STRATEGIES


# --- the command line -------------------------------------------------------------------------------------------

def option_fields(cls: type) -> tuple[dataclasses.Field, ...]:
    """The fields of a config class that have a command-line flag."""
    return tuple(f for f in fields(cls) if "flags" in f.metadata)


class _Switch(argparse.BooleanOptionalAction):
    """``--x`` / ``--no-x`` with the help as given (older argparse appends a default of its own)."""

    def __init__(self, *args, help: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.help = help


def add_options(target: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type[Config],
                exclude: Iterable[str | type] = (), keep_unset: bool = False) -> None:
    """One option per flagged field of ``cls`` on ``target`` (a parser or an argument group), ``dest`` the field's
    name, default the field's. ``exclude``: field names, or config classes whose fields to leave out.
    ``keep_unset``: an option not given sets nothing, so that :func:`options_given` can tell."""
    left_out = field_names(exclude)
    for item in option_fields(cls):
        if item.name in left_out:
            continue
        rule, shown = item.metadata["rule"], item.metadata["shown"] or text_of(item.metadata["rule"], item.default)
        keywords = {"dest": item.name, "default": argparse.SUPPRESS if keep_unset else item.default,
                    "help": f"{item.metadata['help']} (default: {shown})".replace("%", "%%"),
                    **item.metadata["argparse"]}
        if rule is SWITCH:
            keywords["action"] = _Switch
        elif rule.choices:
            keywords.update(type=checked_parse(item), choices=rule.choices)
        else:
            keywords.setdefault("metavar", item.metadata["flags"][0][2:].upper().replace("-", "_"))
            keywords["type"] = checked_parse(item)
        target.add_argument(*item.metadata["flags"], **keywords)


def config_from_args(cls: type[C], args: Any) -> C:
    """The ``cls`` config of parsed options (an ``argparse.Namespace``, or any object with the fields as
    attributes); a field without an attribute keeps its default."""
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})


def options_given(cls: type[Config], args: argparse.Namespace) -> bool:
    """Whether any option of ``cls`` added with ``keep_unset`` was given."""
    return any(hasattr(args, f.name) for f in option_fields(cls))


def command_arguments(config: Config, exclude: Iterable[str | type] = ()) -> list[str]:
    """The flags that reproduce ``config`` through :func:`add_options` and :func:`config_from_args`, every field
    explicit; a None value, which no flag spells, by leaving its flag out (its default is None)."""
    left_out, words = field_names(exclude), []
    for item in option_fields(type(config)):
        value, flag = getattr(config, item.name), item.metadata["flags"][0]
        if item.name in left_out or value is None:
            continue
        if item.metadata["rule"] is SWITCH:
            words.append(flag if value else f"--no-{flag[2:]}")
        else:
            words += [flag, item.metadata["rule"].text(value)]
    return words


def field_names(exclude: Iterable[str | type]) -> set[str]:
    """Field names, and the fields of config classes, as ``add_options`` and ``command_arguments`` take them."""
    return {name for entry in exclude for name in ([f.name for f in fields(entry)] if isinstance(entry, type)
                                                   else [entry])}
