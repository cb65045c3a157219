"""Adapters by Hugging Face Hub name: resolved through huggingface_hub (its cache, offline), and `dept-vl push`'s file
set and model card, without the network."""

import shutil

import pytest
import torch

from dept_vl import DePT, DePTConfig
from dept_vl.cli import main
from dept_vl.inference.predict import Predictor

from test_errors import fails


def into_hub_cache(cache, repo_id: str, folder) -> None:
    """``folder`` as revision main of ``repo_id`` in a Hugging Face cache, laid out by huggingface_hub's own
    helpers (blobs, snapshots/<commit> of symlinks, refs/main)."""
    from huggingface_hub import file_download

    repo = cache / file_download.repo_folder_name(repo_id=repo_id, repo_type="model")
    commit = "0123456789abcdef0123456789abcdef01234567"
    for path in folder.rglob("*"):
        if path.is_file():
            relative = path.relative_to(folder)
            blob = repo / "blobs" / f"{abs(hash(str(relative))):x}"
            blob.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, blob)
            target = repo / "snapshots" / commit / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            file_download._create_symlink(str(blob), str(target))
    file_download._cache_commit_hash_for_specific_revision(str(repo), "main", commit)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def test_a_pushed_run_loads_by_its_hub_name_offline(tiny_easyvqa_run, tmp_path, hub_cache, capsys):
    import easy_vqa

    assert main(["push", str(tiny_easyvqa_run), "me/easyvqa-dept", "--stage-only", str(tmp_path / "repo")]) == 0
    files = sorted(str(p.relative_to(tmp_path / "repo")) for p in (tmp_path / "repo").rglob("*") if p.is_file())
    assert {"README.md", "adapter_model.safetensors", "dept_vl_config.json", "recipe.yaml",
            "backbone/config.json", "backbone/dept_vl_backbone.json"} <= set(files)  # the random T5 goes along
    card = (tmp_path / "repo" / "README.md").read_text()
    assert "test accuracy" in card and "--checkpoint me/easyvqa-dept" in card and "library_name: dept-vl" in card
    into_hub_cache(hub_cache, "me/easyvqa-dept", tmp_path / "repo")
    image = easy_vqa.get_test_image_paths()[0]
    capsys.readouterr()
    assert main(["predict", image, "what color is the shape?", "--checkpoint", "me/easyvqa-dept"]) == 0
    by_name = capsys.readouterr().out.strip()
    assert by_name == Predictor(str(tiny_easyvqa_run))([image], "what color is the shape?")


def test_a_hub_name_that_is_not_cached_offline_is_one_line(hub_cache, capsys, tmp_path):
    image = tmp_path / "x.png"
    fails(capsys, ["predict", str(image), "what?", "--checkpoint", "nobody/nothing"],
          "nobody/nothing is not a directory here", "not in the local cache", "HF_HUB_OFFLINE")


def test_a_depts_adapter_loads_by_hub_name(tmp_path, hub_cache):
    dept = DePT(DePTConfig(prompt_length=3, r=2, max_length=8), hidden_size=4)
    torch.nn.init.normal_(dept.lora_embedding_B)
    dept.save_pretrained(tmp_path / "adapter")
    into_hub_cache(hub_cache, "me/dept-adapter", tmp_path / "adapter")
    loaded = DePT.from_pretrained("me/dept-adapter")
    x = torch.randn(1, 5, 4)
    assert torch.equal(loaded(x)[0], dept(x)[0])


def test_push_uploads_the_staged_files(tiny_easyvqa_run, monkeypatch, capsys):
    import huggingface_hub

    uploaded = {}

    def upload_folder(self, repo_id, folder_path, **kwargs):
        from pathlib import Path

        uploaded[repo_id] = sorted(str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file())

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kw: uploaded.setdefault("made", repo_id))
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    assert main(["push", str(tiny_easyvqa_run), "me/easyvqa-dept", "--private"]) == 0
    assert uploaded["made"] == "me/easyvqa-dept" and "adapter_model.safetensors" in uploaded["me/easyvqa-dept"]
    assert capsys.readouterr().out.strip() == "https://huggingface.co/me/easyvqa-dept"
    assert main(["push", str(tiny_easyvqa_run), "not a repo name"]) == 2
