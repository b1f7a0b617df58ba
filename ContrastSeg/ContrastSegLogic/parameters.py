"""Every choice of the module, kept in the scene's parameter node (a ``vtkMRMLScriptedModuleNode``), so it is saved
and restored with the scene. Text values by name; nodes (labeled pairs, unlabeled and to-segment volumes, review
nodes) as node references, lists in order."""

from __future__ import annotations

from typing import Any

from .settings import FinetuneSettings, PretrainSettings

DEFAULTS = {
    "initialisation": "pretrained-file",  # pretrained-file | pretrain-now | random
    "pretrainedPath": "", "unlabeledFolder": "", "modelPath": "", "segmentModelPath": "",
    "globalStrategy": PretrainSettings.global_strategy, "localStrategy": PretrainSettings.local_strategy,
    "pretrainIterations": str(PretrainSettings.iterations),
    "device": FinetuneSettings.device, "iterations": str(FinetuneSettings.iterations),
    "batchSize": str(FinetuneSettings.batch_size), "cropSize": str(FinetuneSettings.crop_size),
    "mixup": "false", "selfTrainingRounds": "0", "uncertainty": "false",
}
INITIALISATIONS = ("pretrained-file", "pretrain-now", "random")
NODE_LISTS = ("labeledVolume", "labeledSegmentation", "unlabeledVolume", "segmentVolume")
SINGLE_NODES = ("reviewVolume", "reviewPrediction", "reviewReference")


class ContrastSegParameters:
    """Typed access to the parameter node; unset values read as their defaults."""

    def __init__(self, node):
        self.node = node

    def get(self, key: str) -> str:
        value = self.node.GetParameter(key)
        return value if value != "" or key not in DEFAULTS else DEFAULTS[key]

    def set(self, key: str, value: Any) -> None:
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        if self.node.GetParameter(key) != text:
            self.node.SetParameter(key, text)

    def get_int(self, key: str) -> int:
        return int(self.get(key))

    def get_bool(self, key: str) -> bool:
        return self.get(key) == "true"

    def nodes(self, role: str) -> list:
        return [self.node.GetNthNodeReference(role, i) for i in range(self.node.GetNumberOfNodeReferences(role))]

    def set_nodes(self, role: str, nodes) -> None:
        self.node.RemoveNodeReferenceIDs(role)
        for node in nodes:
            self.node.AddNodeReferenceID(role, node.GetID() if node is not None else None)

    def single(self, role: str):
        return self.node.GetNodeReference(role)

    def set_single(self, role: str, node) -> None:
        self.node.SetNodeReferenceID(role, node.GetID() if node is not None else None)

    def labeled_pairs(self) -> list[tuple[Any, Any]]:
        return list(zip(self.nodes("labeledVolume"), self.nodes("labeledSegmentation")))

    def set_labeled_pairs(self, pairs) -> None:
        self.set_nodes("labeledVolume", [volume for volume, _ in pairs])
        self.set_nodes("labeledSegmentation", [segmentation for _, segmentation in pairs])

    def pretrain_settings(self) -> PretrainSettings | None:
        """Settings of "pre-train now", or None for the other initialisations."""
        if self.get("initialisation") != "pretrain-now":
            return None
        local = self.get("localStrategy")
        return PretrainSettings(self.get("globalStrategy"), None if local in ("", "none") else local,
                                self.get_int("pretrainIterations"))

    def finetune_settings(self) -> FinetuneSettings:
        return FinetuneSettings(iterations=self.get_int("iterations"), batch_size=self.get_int("batchSize"),
                                crop_size=self.get_int("cropSize"), mixup=self.get_bool("mixup"),
                                self_training_rounds=self.get_int("selfTrainingRounds"), device=self.get("device"))

    def pretrained_path(self) -> str | None:
        return self.get("pretrainedPath") or None if self.get("initialisation") == "pretrained-file" else None
