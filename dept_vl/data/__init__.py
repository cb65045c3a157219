"""Data: the tasks (one file each, registered by name) with their metrics, the feature cache of the frozen vision
encoder, and the deterministic batch order that turns examples into model inputs."""
