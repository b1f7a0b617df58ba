"""Every choice of the module, kept in the scene's parameter node (a ``vtkMRMLScriptedModuleNode``), so it is saved
and restored with the scene; defaults and choices come from ``ContrastSegLib.settings`` (the CLI's own).

Values are text parameters by name (:data:`FIELDS`). Nodes are node references: lists in order (:data:`NODE_LISTS`),
single nodes (:data:`SINGLE_NODES`), and labeled pairs stored as one unit each (``labeledPair<i>.volume`` and
``labeledPair<i>.segmentation``), so that deleting a node drops its pair instead of re-pairing the others.

    parameters = ContrastSegParameters(logic.getParameterNode())
    parameters.set("iterations", 500); parameters.finetune_config().iterations  # 500
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from ContrastSegLib.settings import (DEFAULT_STRATEGY, MASKED_NAME, STRATEGIES, FinetuneConfig, PreprocessConfig,
                                     PretrainConfig, Stage, SuggestConfig)

NO_LOCAL_STAGE = "none"
MASKED = MASKED_NAME  # "first stage": masked-image modelling instead of a global contrastive strategy
CPU_TIME_BUDGET_MINUTES = 10  # a model in the time of a coffee on a 2-core CPU; GPUs run the papers' iterations
INITIALISATIONS = ("pretrained-file", "pretrain-now", "pretrain-background", "random")
DEVICES = ("auto", "cuda", "cpu")
CROP_FROM_DATA = 0  # "cropSize": the library chooses the training side from the data (``preprocess.resolve``)


@dataclass(frozen=True)
class Field:
    """One text parameter: its type (str, int or bool), default, and allowed values (when a choice)."""

    kind: type
    default: Any
    choices: tuple[str, ...] = ()


_FINETUNE, _PREPROCESS, _PRETRAIN = FinetuneConfig(), PreprocessConfig(), PretrainConfig()
FIELDS: dict[str, Field] = {
    "initialisation": Field(str, "random", INITIALISATIONS),  # pre-training squeezed into the CPU budget cost Dice
    "pretrainedPath": Field(str, ""),
    "unlabeledFolder": Field(str, ""),
    "segments": Field(str, ""),  # comma-separated segment names to learn; empty: every segment of the first pair
    "globalStrategy": Field(str, DEFAULT_STRATEGY[Stage.GLOBAL.value], (*STRATEGIES[Stage.GLOBAL.value], MASKED)),
    "localStrategy": Field(str, DEFAULT_STRATEGY[Stage.LOCAL.value],
                           (*STRATEGIES[Stage.LOCAL.value], NO_LOCAL_STAGE)),
    "pretrainIterations": Field(int, _PRETRAIN.iterations),
    "device": Field(str, _FINETUNE.device, DEVICES),
    "iterations": Field(int, _FINETUNE.iterations),
    "batchSize": Field(int, _FINETUNE.batch_size),
    "cropSize": Field(int, _PREPROCESS.crop_size or CROP_FROM_DATA),
    "mixup": Field(bool, _FINETUNE.mixup),
    "selfTrainingRounds": Field(int, _FINETUNE.self_training_rounds),
    "timeBudgetMinutes": Field(int, CPU_TIME_BUDGET_MINUTES),  # on a CPU; 0: the iterations in full
    "modelPath": Field(str, ""),
    "segmentModelPath": Field(str, ""),
    "uncertainty": Field(bool, False),
    "segmentFolder": Field(str, ""),
    "segmentFolderOutput": Field(str, ""),
    "suggestCount": Field(int, SuggestConfig.count),
}
NODE_LISTS = ("unlabeledVolume", "segmentVolume")
SINGLE_NODES = ("labeledVolume", "labeledSegmentation", "reviewVolume", "reviewPrediction", "reviewReference")
PAIR_COUNT = "labeledPairCount"


class ContrastSegParameters:
    """Typed access to the parameter node; unset values read as their defaults."""

    def __init__(self, node):
        self.node = node

    # ---- values ---------------------------------------------------------------------------------------------------

    def get(self, key: str) -> Any:
        field = FIELDS[key]
        text = self.node.GetParameter(key)
        if text == "":
            return field.default
        if field.kind is bool:
            return text == "true"
        if field.kind is int:
            try:
                return int(text)
            except ValueError:
                return field.default  # a hand-edited scene: fall back rather than fail to open
        return text if not field.choices or text in field.choices else field.default

    def set(self, key: str, value: Any) -> None:
        field = FIELDS[key]
        if field.choices and value not in field.choices:
            raise ValueError(f"{key} must be one of {', '.join(field.choices)}, not {value!r}")
        text = ("true" if value else "false") if field.kind is bool else str(field.kind(value))
        if self.node.GetParameter(key) != text:
            self.node.SetParameter(key, text)

    # ---- nodes ----------------------------------------------------------------------------------------------------

    def nodes(self, role: str) -> list:
        references = (self.node.GetNthNodeReference(role, i) for i in range(self.node.GetNumberOfNodeReferences(role)))
        return [node for node in references if node is not None]

    def set_nodes(self, role: str, nodes) -> None:
        if [n.GetID() for n in self.nodes(role)] == [n.GetID() for n in nodes if n is not None]:
            return
        self.node.RemoveNodeReferenceIDs(role)
        for node in nodes:
            if node is not None:
                self.node.AddNodeReferenceID(role, node.GetID())

    def single(self, role: str):
        return self.node.GetNodeReference(role)

    def set_single(self, role: str, node) -> None:
        node_id = node.GetID() if node is not None else None
        if self.node.GetNodeReferenceID(role) != node_id:
            self.node.SetNodeReferenceID(role, node_id)

    # ---- labeled pairs: one unit each -----------------------------------------------------------------------------

    def labeled_pairs(self) -> list[tuple[Any, Any]]:
        """Every stored pair, in order, with None for a node that was deleted (shown as missing, never re-paired)."""
        count = int(self.node.GetParameter(PAIR_COUNT) or 0)
        return [(self.node.GetNodeReference(f"labeledPair{i}.volume"),
                 self.node.GetNodeReference(f"labeledPair{i}.segmentation")) for i in range(count)]

    def set_labeled_pairs(self, pairs) -> None:
        modified = self.node.StartModify()
        old = int(self.node.GetParameter(PAIR_COUNT) or 0)
        for index, (volume, segmentation) in enumerate(pairs):
            self.node.SetNodeReferenceID(f"labeledPair{index}.volume", volume.GetID() if volume else None)
            self.node.SetNodeReferenceID(f"labeledPair{index}.segmentation",
                                         segmentation.GetID() if segmentation else None)
        for index in range(len(pairs), old):
            self.node.SetNodeReferenceID(f"labeledPair{index}.volume", None)
            self.node.SetNodeReferenceID(f"labeledPair{index}.segmentation", None)
        self.node.SetParameter(PAIR_COUNT, str(len(pairs)))
        self.node.EndModify(modified)

    # ---- job settings (validated by the library before anything is exported) -------------------------------------

    def segment_names(self) -> list[str] | None:
        names = [n.strip() for n in self.get("segments").split(",") if n.strip()]
        return names or None

    def pretraining(self) -> list[PretrainConfig] | None:
        """The stages of "pre-train now", or None for the other choices."""
        return self.pretraining_stages() if self.get("initialisation") == "pretrain-now" else None

    def background_request(self) -> dict | None:
        """The workflow's ``pretrain_in_background`` arguments when "pre-train in the background" is chosen and
        there are unlabeled volumes or a folder to pre-train on; else None."""
        sources = self.unlabeled_sources()
        if self.get("initialisation") != "pretrain-background" or not (sources["unlabeled"] or sources["folders"]):
            return None
        return {**sources, "stages": self.pretraining_stages(), "preprocess": self.preprocess_config(),
                "device": self.get("device")}

    def pretraining_stages(self) -> list[PretrainConfig]:
        """The chain of the Advanced fields: the first stage (global or masked), then local unless "none"."""
        iterations, first = self.get("pretrainIterations"), self.get("globalStrategy")
        stages = [replace(_PRETRAIN, stage=Stage.MASKED.value, strategy=DEFAULT_STRATEGY[Stage.MASKED.value],
                          iterations=iterations) if first == MASKED else
                  replace(_PRETRAIN, stage=Stage.GLOBAL.value, strategy=first, iterations=iterations)]
        if self.get("localStrategy") != NO_LOCAL_STAGE:
            stages.append(replace(_PRETRAIN, stage=Stage.LOCAL.value, strategy=self.get("localStrategy"),
                                  iterations=iterations))
        return stages

    def finetune_config(self) -> FinetuneConfig:
        return replace(_FINETUNE, iterations=self.get("iterations"), batch_size=self.get("batchSize"),
                       mixup=self.get("mixup"), self_training_rounds=self.get("selfTrainingRounds"),
                       device=self.get("device"))

    def unlabeled_sources(self) -> dict:
        """The unlabeled scene volumes and folder, as the workflow's ``unlabeled`` and ``folders`` arguments."""
        folder = self.get("unlabeledFolder")
        return {"unlabeled": self.nodes("unlabeledVolume"), "folders": [folder] if folder else []}

    def cpu_time_budget(self) -> float | None:
        """Seconds a job may take on the CPU, or None (0 minutes: no budget)."""
        return self.get("timeBudgetMinutes") * 60 or None

    def preprocess_config(self) -> PreprocessConfig:
        return replace(_PREPROCESS, crop_size=self.get("cropSize") or None)

    def suggestion_model(self) -> str | None:
        """The model to suggest volumes with: the Segment section's model (a fine-tuned one adds its uncertainty),
        else the pre-trained checkpoint; the first that is a file, or None."""
        paths = (self.get("segmentModelPath"), self.get("pretrainedPath"))
        return next((path for path in paths if path and os.path.isfile(path)), None)

    def pretrained_path(self) -> str | None:
        return (self.get("pretrainedPath") or None) if self.get("initialisation") == "pretrained-file" else None
