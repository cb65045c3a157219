"""``--cache-features`` for a native VLM: its frozen vision tower and projector run once per image; their output is
read from a feature cache in ``$DEPT_VL_CACHE/features/native/<vlm>-<config>-<weights>/`` (or ``--cache-dir``)
afterwards (``models.native_features``)."""

from __future__ import annotations

from pathlib import Path

from ..data.feature_cache import FeatureCache
from ..io import cache_root
from ..models.native_features import CachedImageFeatures


def native_cache_dir(signature: dict, cache_dir: str | None) -> Path:
    """``cache_dir``, else the default directory of the VLM's signature."""
    if cache_dir:
        return Path(cache_dir)
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in signature["encoder"].split(":", 1)[1])
    return cache_root() / "features" / "native" / f"{name[-80:]}-{signature['config']}-{signature['weights']}"


def cache_native_features(recipe, model, say) -> CachedImageFeatures | None:
    """The feature cache under a native VLM (None: not a native VLM, --no-cache-features, or --train-projector,
    whose projector must run every step)."""
    if not recipe.train.cache_features:
        return None
    signature = model.feature_signature()
    if signature is None:
        if model.config.train_projector:
            say("feature cache: off under --train-projector (the projector runs every step, and so does the tower)")
        return None
    store = FeatureCache(native_cache_dir(signature, recipe.train.cache_dir), signature)
    say(f"image features: cached in {store.root} ({len(store)} there; each new image's computed once)")
    return model.read_features_from(store)
