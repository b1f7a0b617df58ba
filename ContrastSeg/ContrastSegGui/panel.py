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
from ContrastSegLogic.errors import SceneInputError
from ContrastSegLogic.parameters import FIELDS, ContrastSegParameters
from ContrastSegLogic.review_table import show_in_views

from .background_view import BackgroundView
from .bindings import CheckableNames, GuiBinding, RadioChoice
from .job_view import JobView, shown_errors
from .tables import show_metrics, show_pairs, show_review, show_segment_names, show_suggestions, show_verdict

PRETRAIN_FIRST = ("There is no model to suggest volumes with yet. Pre-train on the unlabeled volumes now (the Model "
                  "section's stages), keep the checkpoint for fine-tuning, then suggest?")


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
                                           "pretrain-background": ui.pretrainBackgroundRadio,
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
            "reviewReference": ui.reviewReferenceSelector, "suggestCount": ui.suggestCountSpin,
        })
        self.background = BackgroundView(ui, logic)
        self.jobs = JobView(ui, [ui.finetuneButton, ui.segmentButton, ui.segmentFolderButton, ui.evaluateButton,
                                 ui.suggestButton], on_end=self.background.resume)
        for button, handler in ((ui.addPairButton, self.onAddPair), (ui.removePairButton, self.onRemovePair),
                                (ui.finetuneButton, self.onFinetune), (ui.segmentButton, self.onSegment),
                                (ui.segmentFolderButton, self.onSegmentFolder), (ui.compareButton, self.onCompare),
                                (ui.addToTrainingButton, self.onAddToTraining),
                                (ui.evaluateButton, self.onEvaluate), (ui.suggestButton, self.onSuggest),
                                (ui.annotateButton, self.onAnnotate)):
            button.connect("clicked()", handler)
        ui.suggestionsTable.connect("cellClicked(int,int)", self.onSuggestionClicked)
        ui.reviewTable.connect("cellClicked(int,int)", self.onReviewClicked)
        self.suggestions: list[dict] = []  # rows of the last suggestion job (``suggest``)
        self.review: list[dict] = []  # rows of the last segmentation's review table
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
        """Let go of the parameter node and of the tables that show this scene's nodes."""
        if self._observed is not None:
            self._observed[0].RemoveObserver(self._observed[1])
        self._observed, self.parameters, self.binding.parameters = None, None, None
        self.background.follow(None)  # its volumes may be going: stopped, weights kept
        self.suggestions, self.review = [], []
        show_suggestions(self.ui.suggestionsTable, [])
        show_review(self.ui.reviewTable, [])

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
        self.background.follow(self.parameters)

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
        self.background.shutdown()
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

        def launch():
            background = p.get("initialisation") == "pretrain-background"
            pretrained = self.background.checkpoint() if background else p.pretrained_path()
            job = self.logic.finetune(
                p.labeled_pairs(), pretrained=pretrained, **p.unlabeled_sources(), pretrain=p.pretraining(),
                settings=p.finetune_config(), preprocess=p.preprocess_config(), segments=p.segment_names(),
                model_path=p.get("modelPath") or None, cpu_time_budget=p.cpu_time_budget(), wait=False)
            if background:
                job.note = (f"from the background pre-training ({self.background.kept})" if pretrained
                            else "the background pre-training has kept no weights yet: from random initialisation")
            return job
        self._start(self.ui.finetuneButton, "Fine-tuning", launch, self._finetuned)

    def onEvaluate(self):
        if self.jobs.owns(self.ui.evaluateButton):
            return self.jobs.cancel()
        p = self.parameters

        def launch():  # the background pre-training's weights when it kept some: nothing pre-trained again
            pretrained = self.background.checkpoint() if p.get("initialisation") == "pretrain-background" else None
            return self.logic.evaluate_methods(
                p.labeled_pairs(), **p.unlabeled_sources(), pretrain_iterations=p.get("pretrainIterations"),
                iterations=p.get("iterations"), preprocess=p.preprocess_config(), segments=p.segment_names(),
                device=p.get("device"), cpu_time_budget=p.cpu_time_budget(), wait=False, pretrained=pretrained)
        self._start(self.ui.evaluateButton, "Evaluating on the labeled volumes", launch, self._evaluated)

    def onSuggest(self):
        if self.jobs.owns(self.ui.suggestButton):
            return self.jobs.cancel()
        p = self.parameters
        model, pretrain = p.suggestion_model(), None
        background = model is None and p.background_request() is not None  # its weights, once it is paused
        if model is None and p.pretraining() and not self.jobs.running:
            if not slicer.util.confirmOkCancelDisplay(PRETRAIN_FIRST, windowTitle="ContrastSeg"):
                return
            pretrain = p.pretraining()
        annotated = [volume for volume, _ in p.labeled_pairs() if volume is not None]
        self._start(self.ui.suggestButton, "Suggesting volumes to annotate", lambda: self.logic.suggest(
            **p.unlabeled_sources(), model=self.background.checkpoint() if background else model,
            count=p.get("suggestCount"), labeled_volumes=annotated, pretrain=pretrain,
            preprocess=p.preprocess_config(), device=p.get("device"),
            cpu_time_budget=p.cpu_time_budget(), wait=False), self._suggested)

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
        self.background.pause()  # the job gets the whole machine; the background goes on when it ends
        with shown_errors(what):
            with self.jobs.busy(f"{what}: checking the inputs and the installation..."):
                job = launch()
            notes = (self.logic.last_device_message, getattr(job, "note", ""))
            self.jobs.start(button, job, on_success, "; ".join(note for note in notes if note))
        if not self.jobs.running:
            self.background.resume()

    def _finetuned(self, job) -> None:
        self.parameters.set("segmentModelPath", job.result)
        kept = getattr(job, "pretrained_model", None)
        self.ui.statusLabel.text = f"Model saved: {job.result}" + (f" (pre-trained: {kept})" if kept else "")

    def _suggested(self, job) -> None:
        self.suggestions = job.result
        show_suggestions(self.ui.suggestionsTable, self.suggestions)
        kept = getattr(job, "pretrained_model", None)
        if kept:  # fine-tuning starts from it rather than pre-training again
            self.parameters.set("pretrainedPath", kept)
            self.parameters.set("initialisation", "pretrained-file")
        self.ui.statusLabel.text = (f"Suggested {len(self.suggestions)} volume(s): click one to annotate it"
                                    + (f" (pre-trained model kept: {kept})" if kept else ""))

    def onAnnotate(self):
        self.onSuggestionClicked(self.ui.suggestionsTable.currentRow())

    def onSuggestionClicked(self, row: int, column: int = 0) -> None:
        """The suggestion shown (a folder scan loaded), with a segmentation to paint, in the Segment Editor."""
        with shown_errors("Opening the volume for annotation"):
            if not 0 <= row < len(self.suggestions):
                raise SceneInputError("select a suggested volume in the table first")
            complete = [s for v, s in self.parameters.labeled_pairs() if v is not None and s is not None]
            classes = classes_of(complete[0], segment_ids(complete[0])) if complete else []
            volume, segmentation = self.logic.annotate(self.suggestions[row], classes)
            self.parameters.set_single("labeledVolume", volume)
            self.parameters.set_single("labeledSegmentation", segmentation)
            self.ui.statusLabel.text = (f"Paint '{volume.GetName()}' in '{segmentation.GetName()}' (Segment Editor), "
                                        "then add it here as a labeled pair")

    def _segmented(self, job) -> None:
        nodes = job.result
        self.ui.statusLabel.text = f"Created {', '.join(n.GetName() for n in nodes)}"
        first = next(row for row in job.review if row["volume"] is job.volumes[0])
        show_in_views(first["volume"], first["segmentation"], first["uncertainty"],
                      hidden=[row["segmentation"] for row in job.review])  # its own prediction only
        self.parameters.set_single("reviewVolume", first["volume"])
        self.parameters.set_single("reviewPrediction", first["segmentation"])
        self.review = job.review
        show_review(self.ui.reviewTable, self.review)
        self.ui.reviewSection.collapsed = False

    def onReviewClicked(self, row: int, column: int = 0) -> None:
        """That volume with its prediction (and uncertainty) in the slice views, and in the Review fields."""
        with shown_errors("Showing the segmented volume"):
            entry = self.review[row]
            if entry["volume"].GetScene() is None or entry["segmentation"].GetScene() is None:
                raise SceneInputError(f"'{entry['volume'].GetName()}' or its prediction was deleted; segment again")
            uncertainty = entry["uncertainty"]
            show_in_views(entry["volume"], entry["segmentation"],
                          uncertainty if uncertainty is not None and uncertainty.GetScene() is not None else None,
                          hidden=[r["segmentation"] for r in self.review])
            self.parameters.set_single("reviewVolume", entry["volume"])
            self.parameters.set_single("reviewPrediction", entry["segmentation"])

    def _evaluated(self, job) -> None:
        verdict = job.result
        show_verdict(self.ui.evaluationTable, verdict)
        self.ui.evaluationLabel.text = (f"Recommended: {verdict['recommended']}. Train it on all labeled volumes:\n"
                                        + "\n".join(verdict["commands"]))
        self.ui.statusLabel.text = f"Evaluated {len(verdict['means'])} methods on {verdict['folds']} folds"

    def _segmented_folder(self, job) -> None:
        label_maps = [path for path in job.result if path.endswith("_seg.nii.gz")]
        self.ui.statusLabel.text = (f"Wrote {len(label_maps)} segmentation(s) to {job.output_folder}, and "
                                    "review.csv: the most likely wrong first")
