"""Using a trained model: ``Predictor`` (a checkpoint answering questions, for ``dept-vl predict`` and ``serve``)
and evaluation (batched generation over a split, the task's metric, the predictions file), which training's
validation uses too."""
