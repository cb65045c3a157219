"""Training: a run's session (data, model, feature caches, optimizer), the loop and its resumable state, the
learning curves. Recipes and run directories are ``runs/``; validation and test scoring use ``inference/``."""
