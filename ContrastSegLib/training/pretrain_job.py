"""Pre-training from files to a checkpoint: gather the unlabeled volumes (never a split's validation or test cases),
preprocess them, run one contrastive stage, and write the checkpoint of the parts that stage trained.

Progress is saved every ``checkpoint_every`` steps to a hidden resume file beside the output; running the same
command again after an interruption (even SIGKILL) continues from it and ends with the same weights as an
uninterrupted run. The output itself appears only when the stage is complete, or when a stop request
(``runtime.stop``) ended it early: then it holds the weights reached and, like a resume file, the optimiser and
sampling state, and the resume file is removed; ``continue_stopped`` (``--continue``) goes on from it to the planned
end, ending with the weights of an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data.discovery import discover
from ..data.pools import unlabeled_cases
from ..data.splits import cases_in, check_not_test, load_split
from ..errors import ContrastSegError
from ..io import check_output_path, read_image
from ..models import UNet2D, UNetConfig
from ..preprocess import CROP_FROM_DATA, inherited_preprocessing, preprocess_volume, resolve_preprocessing
from ..runtime.checkpoint import Checkpoint, lineage_after, load_checkpoint, save_checkpoint
from ..runtime.precision import plan_execution
from ..runtime.progress import ProgressReporter
from ..sampling import LabeledSliceBank, PartitionSliceBank
from ..settings import DEFAULT_CHANNELS, PreprocessConfig, PretrainConfig, Stage
from .distributed import DistributedContext, local_device
from .finetune_job import label_set_for, read_labeled_cases
from .pretrain import PretrainState, attach_heads, pretrain


RESUME_FORMAT = "contrastseg-resume-1"
FINGERPRINT_KEYS = ("stage", "architecture", "preprocessing", "config", "data", "lineage")


def pretraining_parts(config: PretrainConfig) -> tuple[str, ...]:
    """State-dict prefixes a stage trains (and so writes): the encoder and g1, or the encoder, the first l decoder
    blocks and g2. Fine-tuning then loads exactly these and starts the rest from random."""
    if config.stage == Stage.GLOBAL:
        return ("encoder.", "heads.g1.")
    if config.stage == Stage.SUPERVISED_LOCAL:
        return ("encoder.", "decoder.", "heads.gs.")
    if config.stage == Stage.MASKED:
        return ("encoder.", "decoder.", "heads.gm.")
    return ("encoder.",) + tuple(f"decoder.{i}." for i in range(config.decoder_blocks)) + ("heads.g2.",)


def written_parts(config: PretrainConfig, init: Checkpoint | None) -> tuple[str, ...]:
    """What the stage's checkpoint holds: the parts it trains, and the network parts (not heads) an earlier stage
    passed on and this one left as they were — a masked stage's decoder survives a local stage after it."""
    inherited = [p for p in (init.metadata.get("parts") or []) if isinstance(p, str) and not p.startswith("heads.")
                 ] if init is not None else []
    own = pretraining_parts(config)
    return tuple(dict.fromkeys(own + tuple(inherited)))


def run_pretrain(
    unlabeled: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    config: PretrainConfig,
    preprocess: PreprocessConfig | None = None,
    channels: tuple[int, ...] = DEFAULT_CHANNELS,
    init: str | os.PathLike | None = None,
    split: str | os.PathLike | None = None,
    overwrite: bool = False,
    reporter: ProgressReporter | None = None,
    context: DistributedContext = DistributedContext(),
    labeled: str | os.PathLike | None = None,
    started_at: float | None = None,
    continue_stopped: bool = False,
) -> tuple[Path, PretrainState]:
    """Run one pre-training stage and write the checkpoint ``out`` (under torchrun: every rank trains on its shard
    of each global batch, rank 0 writes, every rank resumes). The global and local stages use the volumes of
    ``unlabeled``; the supervised-local stage the labeled volumes of ``labeled`` (with ``split``: its train_labeled
    cases only). ``preprocess`` None: the ``init`` checkpoint's, else the default; an unset spacing becomes the
    median in-plane spacing of the volumes the stage trains on, an unset crop the side that covers their slices
    (``preprocess.resolve``). A time budget counts from ``started_at`` (None: this call). ``continue_stopped``: go on
    from ``out``, written by a stopped run of the same stage, settings and data, and replace it."""
    config.check()
    stopped = stopped_run(out) if continue_stopped else None
    if not continue_stopped and not overwrite:
        _refuse_stopped_output(Path(out))
    out = check_output_path(out, overwrite or continue_stopped, kind="file")
    resume_path = out.with_name(f".{out.name}.resume")
    init_checkpoint = load_checkpoint(init) if init else None
    if config.stage not in (Stage.GLOBAL, Stage.MASKED) and init_checkpoint is None:
        raise ContrastSegError(f"--stage {config.stage} starts from an earlier stage's encoder; pass --init "
                               "global.pt (the output of --stage global or --stage masked)")
    if config.stage == Stage.SUPERVISED_LOCAL and labeled is None:
        raise ContrastSegError("--stage supervised-local learns from labeled volumes; pass --labeled DIR")
    if init_checkpoint is not None:
        channels = tuple(init_checkpoint.metadata["architecture"]["channels"])
        if preprocess is None and "preprocessing" in init_checkpoint.metadata:
            preprocess = inherited_preprocessing(init_checkpoint.metadata)
    preprocess = (preprocess or PreprocessConfig()).check(channels)
    crop_from_data = preprocess.crop_size is None  # recorded: a later run chooses its own side then
    model_config = UNetConfig(in_channels=1, num_classes=2, channels=tuple(channels))
    reporter = reporter or ProgressReporter(f"pretrain-{config.stage}", config.iterations, enabled=context.is_main)
    plan = plan_execution(local_device(context, config.device), config.precision, config.channels_last)
    labels = None
    if config.stage == Stage.SUPERVISED_LOCAL:
        if unlabeled:
            reporter.log("the supervised-local stage learns from the labeled volumes only; --unlabeled is not used")
        bank, cases, labels, preprocess = _labeled_bank(labeled, split, preprocess, channels, plan.device)
    else:
        if not unlabeled:
            raise ContrastSegError(f"--stage {config.stage} learns from unlabeled volumes; pass --unlabeled DIR")
        cases = unlabeled_cases(unlabeled, split)
        images = [read_image(c.image, channel=c.channel) for c in cases]
        preprocess = resolve_preprocessing(preprocess, images, channels)
        slices = [preprocess_volume(image, preprocess).image for image in images]
        del images
        bank = PartitionSliceBank(slices, config.partitions, plan.device, names=[str(c.image) for c in cases])
    config.check_model(channels, preprocess.crop_size)
    torch.manual_seed(config.seed)
    model = UNet2D(model_config)
    if init_checkpoint is not None:
        _load_pretrained(model, init_checkpoint)
    trainable = attach_heads(model, config, preprocess.crop_size)
    metadata = {
        "stage": f"pretrain-{config.stage}", "architecture": model_config.to_json(),
        "preprocessing": preprocess.to_json(), CROP_FROM_DATA: crop_from_data, "config": config.to_json(),
        "data": {"sources": [str(Path(s).resolve()) for s in ([labeled] if labels else unlabeled)],
                 "cases": [c.id for c in cases],
                 "split": str(Path(split).resolve()) if split else None},
        "lineage": lineage_after(init_checkpoint, init), "parts": list(written_parts(config, init_checkpoint)),
    }
    if labels is not None:
        metadata["labels"] = labels.to_json()
    state = _resume_state(resume_path, out, metadata, model, config, reporter, stopped)

    def save_progress(progress: PretrainState) -> None:
        save_checkpoint(Checkpoint(model.state_dict(), {**metadata, **_progress_fields(progress, metadata)},
                                   progress.optimizer, _progress_extra(progress)), resume_path, overwrite=True)
        reporter.checkpoint(str(resume_path), progress.step)

    state = pretrain(model, bank, config, plan, trainable, state, reporter, save_progress, context,
                     started_at=started_at)
    if not context.is_main:
        return out, state
    parts = tuple(metadata["parts"])
    weights = {k: v for k, v in model.state_dict().items() if k.startswith(parts)}
    final = {**metadata, "step": state.step, "result": {"first_loss": state.losses[0] if state.losses else None,
                                                        "final_loss": float(np.mean(state.losses[-10:])),
                                                        "ended_early": state.ended_early or None}}
    optimizer, extra = None, {}
    if state.stopped:  # with what continuing needs
        final.update(stopped=state.stopped.to_json(), **_progress_fields(state, metadata))
        optimizer, extra = state.optimizer, _progress_extra(state)
    save_checkpoint(Checkpoint(weights, final, optimizer, extra), out, overwrite=overwrite or continue_stopped)
    resume_path.unlink(missing_ok=True)
    reporter.checkpoint(str(out), state.step)
    reporter.finished(checkpoint=str(out))
    return out, state


def _labeled_bank(labeled, split, preprocess: PreprocessConfig, channels, device: torch.device):
    """(LabeledSliceBank, cases, LabelSet, the resolved preprocessing) of the labeled training volumes; a split's
    other groups never enter."""
    dataset = discover(labeled)
    if split is not None:
        loaded = load_split(split)
        check_not_test(loaded, loaded.groups["train_labeled"], stage="supervised-local pre-training")
        cases = list(cases_in(dataset, loaded, "train_labeled").cases)
    else:
        cases = list(dataset.labeled)
    if not cases:
        raise ContrastSegError(f"{labeled}: no labeled training volumes for the supervised-local stage")
    pairs = read_labeled_cases(dataset, cases)
    labels = label_set_for(dataset, pairs)
    preprocess = resolve_preprocessing(preprocess, [p.image for p in pairs], channels)
    prepared = [preprocess_volume(p.image, preprocess, p.label, labels.values) for p in pairs]
    return LabeledSliceBank(prepared, device), cases, labels, preprocess


def _load_pretrained(model: UNet2D, checkpoint: Checkpoint) -> None:
    """Load every tensor of an earlier stage that fits (encoder, decoder blocks, heads are rebuilt by the stage)."""
    own = model.state_dict()
    taken = {k: v for k, v in checkpoint.model.items() if k in own and own[k].shape == v.shape}
    if not any(k.startswith("encoder.") for k in taken):
        raise ContrastSegError("--init: the checkpoint has no encoder weights that fit this UNet")
    model.load_state_dict(taken, strict=False)


def run_fingerprint(metadata: dict) -> str:
    """What makes two runs the same: stage, architecture, preprocessing, settings, data and lineage, hashed."""
    same = {k: metadata[k] for k in FINGERPRINT_KEYS}
    return hashlib.sha256(json.dumps(same, sort_keys=True, default=str).encode()).hexdigest()


def _progress_fields(progress: PretrainState, metadata: dict) -> dict:
    """The metadata of saved progress: step, gradient scaler, planned steps and the run's resume marker."""
    return {"step": progress.step, "scaler": progress.scaler, "planned_iterations": progress.planned,
            "resume": {"format": RESUME_FORMAT, "fingerprint": run_fingerprint(metadata)}}


def _progress_extra(progress: PretrainState) -> dict:
    return {"generator": progress.generator, "losses": torch.tensor(progress.losses, dtype=torch.float64)}


def stopped_run(out: str | os.PathLike) -> Checkpoint:
    """The checkpoint a stopped run wrote to ``out``, with what continuing it needs; anything else is refused."""
    out = Path(out)
    if not out.exists():
        raise ContrastSegError(f"{out}: does not exist; --continue goes on from the checkpoint a stopped run wrote "
                               "there (without --continue, the command starts a run)")
    saved = load_checkpoint(out)
    if "stopped" not in saved.metadata:
        raise ContrastSegError(f"{out}: a finished run (step {saved.metadata.get('step')}), not a stopped one; "
                               "nothing to continue")
    marker = saved.metadata.get("resume")
    if not isinstance(marker, dict) or marker.get("format") != RESUME_FORMAT or saved.optimizer is None:
        raise ContrastSegError(f"{out}: stopped, but without the training state --continue needs (not written by "
                               "contrastseg pretrain, or by an older version); pass --overwrite to train afresh")
    return saved


def _refuse_stopped_output(out: Path) -> None:
    """An existing output that a stopped run wrote: refused with the way to go on (any other one: by
    ``check_output_path``)."""
    try:
        saved = stopped_run(out) if out.is_file() else None
    except ContrastSegError:
        return
    if saved is not None:
        stopped = saved.metadata["stopped"]
        raise ContrastSegError(f"{out}: output already exists, written by a run stopped at step {stopped.get('step')} "
                               f"of {stopped.get('planned')}; pass --continue to go on to the planned end, --overwrite "
                               "to start afresh, or choose another path")


def _resume_state(path: Path, out: Path, metadata: dict, model: UNet2D, config: PretrainConfig,
                  reporter: ProgressReporter, stopped: Checkpoint | None = None) -> PretrainState | None:
    """The saved progress to go on from, restored into ``model``: the resume file of an interrupted run of the same
    stage, settings and data, else the ``stopped`` checkpoint (``--continue``). A resume file of another run, of a
    finished one (``out`` written) or a damaged one is refused, and so is a stopped checkpoint of another run."""
    if not path.exists():
        if stopped is None:
            return None
        if stopped.metadata["resume"].get("fingerprint") != run_fingerprint(metadata):
            raise ContrastSegError(f"{out}: stopped in a run with other settings or data; --continue needs the "
                                   f"options of the command that was stopped (contrastseg info --model {out})")
        return _restored(out, stopped, model, config, reporter, "pass --overwrite to train afresh", "continuing")
    fix = "delete it to start afresh"
    try:
        saved = load_checkpoint(path)
    except ContrastSegError:
        raise ContrastSegError(f"{path}: not a resume file of contrastseg pretrain (unreadable or damaged); "
                               f"{fix}") from None
    marker = saved.metadata.get("resume")
    if not isinstance(marker, dict) or marker.get("format") != RESUME_FORMAT:
        raise ContrastSegError(f"{path}: not a resume file of contrastseg pretrain (no {RESUME_FORMAT} marker); "
                               f"{fix}")
    if marker.get("fingerprint") != run_fingerprint(metadata):
        raise ContrastSegError(f"{path}: an interrupted run with other settings or data left this file; delete it "
                               "to start afresh, or run the same command again to resume it")
    if saved.metadata.get("step") == config.iterations and out.exists() and stopped is None:
        raise ContrastSegError(f"{path}: left by a finished run ({out} was written from it); {fix}")
    return _restored(path, saved, model, config, reporter, fix, "resuming")


def _restored(path: Path, saved: Checkpoint, model: UNet2D, config: PretrainConfig, reporter: ProgressReporter,
              fix: str, verb: str) -> PretrainState:
    """The progress saved in ``saved`` (a resume file: the whole model; a stopped checkpoint: the parts the stage
    trains, the rest being rebuilt identically from the seed and ``--init``), its weights loaded into ``model``."""
    step = saved.metadata.get("step")
    if type(step) is not int or not 0 <= step <= config.iterations:
        raise ContrastSegError(f"{path}: the saved step {step!r} is not one of this run's 0..{config.iterations}; "
                               f"{fix}")
    try:
        missing, unexpected = model.load_state_dict(saved.model, strict=False)
        trained = tuple(saved.metadata.get("parts") or ()) or ("",)
        if unexpected or any(key.startswith(trained) for key in missing):
            raise KeyError("weights")
        planned = saved.metadata.get("planned_iterations")
        if planned is not None and not (type(planned) is int and step <= planned <= config.iterations):
            raise TypeError("planned_iterations")
        state = PretrainState(step=step, optimizer=dict(saved.optimizer), scaler=saved.metadata.get("scaler"),
                              generator=saved.extra["generator"], losses=saved.extra["losses"].tolist(),
                              planned=planned)
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as error:
        raise ContrastSegError(f"{path}: the saved progress is damaged ({type(error).__name__}); {fix}") from None
    reporter.log(f"{verb} from step {step} ({path})")
    return state
