"""The ContrastSeg panel: the ``.ui`` loaded once, its fields bound to the parameter node once (``bindings``),
and the buttons' handlers — each shows any failure in one dialog and leaves the scene as it was.

    panel = ContrastSegPanel(logic, widget.resourcePath("UI/ContrastSeg.ui"))
    widget.layout.addWidget(panel.widget)
    panel.show_parameters(logic.getParameterNode())
"""

from __future__ import annotations

import os

import slicer
import vtk

from ContrastSegLogic.checkpoints import describe_checkpoint
from ContrastSegLogic.classes import segment_ids, classes_of
from ContrastSegLogic.parameters import FIELDS, ContrastSegParameters

from .bindings import CheckableNames, GuiBinding, RadioChoice
from .job_view import JobView, shown_errors
from .tables import show_metrics, show_pairs, show_segment_names, show_verdict



class ContrastSegPanel:
    """``logic``: the module's ``ContrastSegLogic`` (jobs, dependency installation, models folder)."""

    def __init__(self, logic, ui_path: str):
        self.logic = logic
        self.widget = slicer.util.loadUI(ui_path)
        self.ui = ui = slicer.util.childWidgetVariables(self.widget)
        self.widget.setMRMLScene(slicer.mrmlScene)
        self.parameters = None
        ui.globalStrategyCombo.addItems(list(FIELDS["globalStrategy"].choices))
        ui.localStrategyCombo.addItems(list(FIELDS["localStrategy"].choices))
        ui.deviceCombo.addItems(list(FIELDS["device"].choices))
        self.binding = GuiBinding({
            "initialisation": RadioChoice({"pretrained-file": ui.pretrainedFileRadio, "pretrain-now": ui.pretrainNowRadio,
                                           "random": ui.randomInitRadio}),
            "pretrainedPath": ui.pretrainedPath, "unlabeledFolder": ui.unlabeledFolderPath,
            "segments": CheckableNames(ui.segmentsList),
            "globalStrategy": ui.globalStrategyCombo, "localStrategy": ui.localStrategyCombo,
            "pretrainIterations": ui.pretrainIterationsSpin, "batchSize": ui.batchSizeSpin, "cropSize": ui.cropSizeSpin,
            "device": ui.deviceCombo, "iterations": ui.iterationsSpin, "mixup": ui.mixupCheck,
            "selfTrainingRounds": ui.selfTrainingSpin, "timeBudgetMinutes": ui.timeBudgetSpin,
            "modelPath": ui.modelOutputPath,
            "segmentModelPath": ui.segmentModelPath, "uncertainty": ui.uncertaintyCheck,
            "segmentFolder": ui.segmentFolderPath, "segmentFolderOutput": ui.segmentFolderOutputPath,
            "unlabeledVolume": ui.unlabeledVolumesSelector, "segmentVolume": ui.segmentVolumesSelector,
            "labeledVolume": ui.labeledVolumeSelector, "labeledSegmentation": ui.labeledSegmentationSelector,
            "reviewVolume": ui.reviewVolumeSelector, "reviewPrediction": ui.reviewPredictionSelector,
            "reviewReference": ui.reviewReferenceSelector,
        })
        self.jobs = JobView(ui, [ui.finetuneButton, ui.segmentButton, ui.segmentFolderButton, ui.evaluateButton])
        for button, handler in ((ui.addPairButton, self.onAddPair), (ui.removePairButton, self.onRemovePair),
                                (ui.finetuneButton, self.onFinetune), (ui.segmentButton, self.onSegment),
                                (ui.segmentFolderButton, self.onSegmentFolder), (ui.compareButton, self.onCompare),
                                (ui.addToTrainingButton, self.onAddToTraining),
                                (ui.evaluateButton, self.onEvaluate)):
            button.connect("clicked()", handler)
        ui.modelsFolderPath.currentPath = self.logic.models_folder()
        ui.modelsFolderPath.connect("currentPathChanged(QString)", self.onModelsFolderChanged)
        self._observed = None
        self._described: tuple = ()

    # ---- the parameter node --------------------------------------------------------------------------------------

    def show_parameters(self, node) -> None:
        """Bind the GUI to ``node`` (the module's parameter node) and follow its changes."""
        if self._observed is not None and self._observed[0] is not node:
            self._observed[0].RemoveObserver(self._observed[1])
            self._observed = None
        if self._observed is None:
            self._observed = (node, node.AddObserver(vtk.vtkCommand.ModifiedEvent, lambda caller, event: self.refresh()))
        self.parameters = ContrastSegParameters(node)
        self.binding.connect(self.parameters)
        self.refresh()

    def forget_parameters(self) -> None:
        if self._observed is not None:
            self._observed[0].RemoveObserver(self._observed[1])
        self._observed, self.parameters, self.binding.parameters = None, None, None

    def refresh(self) -> None:
        """Everything that shows the parameter node: fields, the pairs, the segments to learn, the model's classes."""
        if self.parameters is None:
            return
        pairs = self.parameters.labeled_pairs()
        show_pairs(self.ui.labeledPairsTable, pairs)
        complete = [s for v, s in pairs if v is not None and s is not None]
        show_segment_names(self.ui.segmentsList, [c.name for c in classes_of(complete[0], segment_ids(complete[0]))]
                           if complete else [])
        self.binding.update_gui()
        self.ui.modelClassesLabel.text = self._model_description(self.parameters.get("segmentModelPath"))

    def _model_description(self, path: str) -> str:
        """What the Segment model segments (read once per file version)."""
        if not path:
            return "Choose or train a model first"
        key = (path, os.path.getmtime(path) if os.path.isfile(path) else None)
        if self._described[:1] != (key,):
            self._described = (key, describe_checkpoint(path))
        return self._described[1]

    def cleanup(self) -> None:
        self.jobs.cancel()
        self.jobs.timer.stop()
        self.forget_parameters()

    # ---- Data / Review: the training set -------------------------------------------------------------------------

    def onAddPair(self):
        with shown_errors("Adding the labeled pair"):
            self._add_pair(self.ui.labeledVolumeSelector.currentNode(), self.ui.labeledSegmentationSelector.currentNode())

    def onAddToTraining(self):
        with shown_errors("Adding to the training set"):
            self._add_pair(self.ui.reviewVolumeSelector.currentNode(), self.ui.reviewPredictionSelector.currentNode())

    def onRemovePair(self):
        with shown_errors("Removing the pair"):
            row, pairs = self.ui.labeledPairsTable.currentRow(), self.parameters.labeled_pairs()
            if not 0 <= row < len(pairs):
                raise ValueError("select the pair to remove in the table first")
            self.parameters.set_labeled_pairs(pairs[:row] + pairs[row + 1:])

    def _add_pair(self, volume, segmentation) -> None:
        pairs = self.parameters.labeled_pairs()
        self.logic.add_to_training_set([p for p in pairs if None not in p], volume, segmentation)
        self.parameters.set_labeled_pairs([*pairs, (volume, segmentation)])

    def onCompare(self):
        with shown_errors("Comparing the segmentations"):
            rows = self.logic.compare(self.ui.reviewPredictionSelector.currentNode(),
                                      self.ui.reviewReferenceSelector.currentNode(),
                                      self.ui.reviewVolumeSelector.currentNode())
            show_metrics(self.ui.diceTable, rows)

    # ---- jobs ------------------------------------------------------------------------------------------------------

    def onModelsFolderChanged(self, path: str) -> None:
        if path and os.path.isdir(path):
            self.logic.set_models_folder(path)

    def onFinetune(self):
        if self.jobs.owns(self.ui.finetuneButton):
            return self.jobs.cancel()
        p = self.parameters
        self._start(self.ui.finetuneButton, "Fine-tuning", lambda: self.logic.finetune(
            p.labeled_pairs(), pretrained=p.pretrained_path(), **p.unlabeled_sources(), pretrain=p.pretraining(),
            settings=p.finetune_config(), preprocess=p.preprocess_config(), segments=p.segment_names(),
            model_path=p.get("modelPath") or None, cpu_time_budget=p.cpu_time_budget(), wait=False), self._finetuned)

    def onEvaluate(self):
        if self.jobs.owns(self.ui.evaluateButton):
            return self.jobs.cancel()
        p = self.parameters
        self._start(self.ui.evaluateButton, "Evaluating on the labeled volumes", lambda: self.logic.evaluate_methods(
            p.labeled_pairs(), **p.unlabeled_sources(), pretrain_iterations=p.get("pretrainIterations"),
            iterations=p.get("iterations"), preprocess=p.preprocess_config(), segments=p.segment_names(),
            device=p.get("device"), cpu_time_budget=p.cpu_time_budget(), wait=False), self._evaluated)

    def onSegment(self):
        if self.jobs.owns(self.ui.segmentButton):
            return self.jobs.cancel()
        p = self.parameters
        self._start(self.ui.segmentButton, "Segmenting", lambda: self.logic.segment(
            p.nodes("segmentVolume"), p.get("segmentModelPath"), uncertainty=p.get("uncertainty"),
            device=p.get("device"), wait=False), self._segmented)

    def onSegmentFolder(self):
        if self.jobs.owns(self.ui.segmentFolderButton):
            return self.jobs.cancel()
        p = self.parameters
        self._start(self.ui.segmentFolderButton, "Segmenting the folder", lambda: self.logic.segment_folder(
            p.get("segmentFolder"), p.get("segmentFolderOutput"), p.get("segmentModelPath"),
            uncertainty=p.get("uncertainty"), device=p.get("device"), wait=False), self._segmented_folder)

    def _start(self, button, what: str, launch, on_success) -> None:
        if self.jobs.running:
            return  # the other buttons are disabled; a script's click is refused the same way
        with shown_errors(what):
            with self.jobs.busy(f"{what}: checking the inputs and the installation..."):
                job = launch()
            self.jobs.start(button, job, on_success, self.logic.last_device_message)

    def _finetuned(self, job) -> None:
        self.parameters.set("segmentModelPath", job.result)
        kept = getattr(job, "pretrained_model", None)
        self.ui.statusLabel.text = f"Model saved: {job.result}" + (f" (pre-trained: {kept})" if kept else "")

    def _segmented(self, job) -> None:
        nodes = job.result
        segmentations = [n for n in nodes if n.IsA("vtkMRMLSegmentationNode")]
        uncertainty = [n for n in nodes if n.IsA("vtkMRMLScalarVolumeNode")]
        self.ui.statusLabel.text = f"Created {', '.join(n.GetName() for n in nodes)}"
        volume = job.volumes[0]
        slicer.util.setSliceViewerLayers(background=volume, foreground=uncertainty[0] if uncertainty else None,
                                         foregroundOpacity=0.4 if uncertainty else None, fit=True)
        self.parameters.set_single("reviewVolume", volume)
        self.parameters.set_single("reviewPrediction", segmentations[0])
        self.ui.reviewSection.collapsed = False

    def _evaluated(self, job) -> None:
        verdict = job.result
        show_verdict(self.ui.evaluationTable, verdict)
        self.ui.evaluationLabel.text = (f"Recommended: {verdict['recommended']}. Train it on all labeled volumes:\n"
                                        + "\n".join(verdict["commands"]))
        self.ui.statusLabel.text = f"Evaluated {len(verdict['means'])} methods on {verdict['folds']} folds"

    def _segmented_folder(self, job) -> None:
        self.ui.statusLabel.text = f"Wrote {len(job.result)} file(s) to {self.parameters.get('segmentFolderOutput')}"
