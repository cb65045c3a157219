"""Training and using a trained model: recipes, the run directory, the training loop and its resumable state,
evaluation and prediction."""
