import datasets
import pytest
from PIL import Image

from dept_vl.errors import ConfigError, InputError
from dept_vl.data.tasks.hf_datasets import DatasetImages, is_hf_source, open_hf_split, require_columns


def image_table(ids, sizes):
    features = datasets.Features({"id": datasets.Value("string"), "image": datasets.Image()})
    return datasets.Dataset.from_dict({"id": ids, "image": [Image.new("RGB", s) for s in sizes]}, features=features)


def test_dataset_images_decodes_only_what_is_read(monkeypatch):
    table = image_table(["a", "b", "a"], [(4, 4), (6, 6), (9, 9)])
    decoded = []
    real = datasets.Image.decode_example
    monkeypatch.setattr(datasets.Image, "decode_example",
                        lambda self, value, **kw: decoded.append(1) or real(self, value, **kw))
    images = DatasetImages(table, table["id"])
    assert decoded == [] and list(images) == ["a", "b"] and len(images) == 2
    assert "b" in images and "c" not in images and decoded == []
    assert images["a"].size == (4, 4)  # a repeated key: its first row
    assert images["b"].size == (6, 6) and len(decoded) == 2
    with pytest.raises(KeyError):
        images["c"]


def test_open_hf_split_from_disk_and_hub(tmp_path, monkeypatch):
    table = image_table(["x"], [(2, 2)])
    datasets.DatasetDict({"testdev": table}).save_to_disk(tmp_path / "dict")
    table.save_to_disk(tmp_path / "single")
    assert is_hf_source(tmp_path / "dict") and is_hf_source(tmp_path / "single") and is_hf_source("hf:org/name")
    assert not is_hf_source(tmp_path) and not is_hf_source(None)
    assert open_hf_split(str(tmp_path / "dict"), "testdev")["id"] == ["x"]
    assert open_hf_split(str(tmp_path / "single"), "anything")["id"] == ["x"]
    with pytest.raises(ConfigError, match="has no split 'train'; it has testdev"):
        open_hf_split(str(tmp_path / "dict"), "train")

    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config, split: calls.append((name, config, split)))
    open_hf_split("hf:org/name", "val", "val_balanced_images")
    assert calls == [("org/name", "val_balanced_images", "val")]

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(InputError, match="cannot load Hugging Face dataset 'org/name' configuration 'c' split 'val': "
                                         "no network"):
        open_hf_split("hf:org/name", "val", "c")


def test_require_columns_names_the_missing_one():
    table = image_table(["x"], [(2, 2)])
    require_columns(table, ("id", "image"), "here")
    with pytest.raises(InputError, match=r"here: rows have no column 'answer' \(columns: id, image\)"):
        require_columns(table, ("id", "answer"), "here")
