"""``--cache-features`` for a native VLM: its frozen vision tower and projector (only the tower under
``--train-projector``) run once per image; their output is read from a feature cache in
``$DEPT_VL_CACHE/features/native/<vlm>-<config>-<weights>[-pre-projector]/`` (or ``--cache-dir``) afterwards
(``models.native_features``)."""

from __future__ import annotations

from pathlib import Path

from ..data.feature_cache import FeatureCache
from ..io import cache_root
from ..models.native_features import CachedImageFeatures


def native_cache_dir(signature: dict, cache_dir: str | None) -> Path:
    """``cache_dir``, else the default directory of the VLM's signature (``-pre-projector`` for the tower's output
    before the projector, cached under --train-projector)."""
    if cache_dir:
        return Path(cache_dir)
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in signature["encoder"].split(":", 1)[1])
    kind = "-pre-projector" if signature.get("features") == "pre-projector" else ""
    return cache_root() / "features" / "native" / f"{name[-80:]}-{signature['config']}-{signature['weights']}{kind}"


def cache_native_features(recipe, model, say) -> CachedImageFeatures | None:
    """The feature cache under a native VLM (None: not a native VLM, --no-cache-features, or --train-projector on a
    family whose tower output does not split per image)."""
    if not recipe.train.cache_features:
        return None
    signature = model.feature_signature()
    if signature is None:
        if model.config.train_projector:
            say("feature cache: off under --train-projector for this VLM (its projector's input does not split per "
                "image; the tower runs every step)")
        return None
    store = FeatureCache(native_cache_dir(signature, recipe.train.cache_dir), signature)
    what = "the tower's output before the trained projector" if signature.get("features") else "image features"
    say(f"{what}: cached in {store.root} ({len(store)} there; each new image's computed once)")
    hook = model.read_features_from(store)
    hook.report = say  # a full disk stops the cache, not the run (``CachedImageFeatures._write``)
    return hook
