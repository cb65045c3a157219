"""The data scripts' conversion functions on small files in the official formats."""

import json

import pytest

from conftest import load_data_script, make_raw_datasets


@pytest.fixture
def raw(tmp_path):
    return make_raw_datasets(tmp_path)


def test_karpathy_split_puts_restval_in_train(raw):
    prep = load_data_script("prepare_vqav2")
    splits = prep.karpathy_image_splits(json.loads((raw["coco"] / "dataset_coco.json").read_text()))
    assert splits == {"train": [9, 42], "val": [73], "test": [74, 77]}


def test_vqav2_convert_counts_questions_and_links_images(raw, tmp_path):
    out = tmp_path / "vqa"
    counts = load_data_script("prepare_vqav2").convert(raw["vqav2"], out)
    assert counts == {"train": 3, "val": 2, "test": 2}
    assert json.loads((out / "karpathy_split.json").read_text())["test"] == [74, 77]
    assert (out / "images" / "val2014" / "COCO_val2014_000000000073.jpg").is_file()
    assert (out / "images" / "train2014").is_symlink()


def test_coco_convert_copy_mode(raw, tmp_path):
    out = tmp_path / "coco"
    counts = load_data_script("prepare_coco").convert(raw["coco"], out, copy=True)
    assert counts == {"train": 1, "restval": 1, "val": 1, "test": 2}
    assert not (out / "images" / "val2014").is_symlink() and (out / "dataset_coco.json").is_file()


def test_gqa_convert_and_missing_image(raw, tmp_path):
    prep = load_data_script("prepare_gqa")
    assert prep.convert(raw["gqa"], tmp_path / "gqa") == {"train": 3, "val": 2, "testdev": 2}
    (raw["gqa"] / "images" / "n103.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="testdev question 401: no image n103.jpg"):
        prep.convert(raw["gqa"], tmp_path / "gqa2")


def test_nlvr2_convert_flattens_images_and_drops_missing(raw, tmp_path):
    out = tmp_path / "nlvr2"
    report = load_data_script("prepare_nlvr2").convert(raw["nlvr2"], raw["nlvr2-images"], out)
    assert report == {"train": {"kept": 3, "dropped": 0}, "dev": {"kept": 2, "dropped": 1},
                      "test1": {"kept": 2, "dropped": 0}}
    assert (out / "images" / "train" / "train-10171-0-img1.png").is_file()  # from train/7/, flattened
    assert len((out / "dev.json").read_text().splitlines()) == 2


def test_scripts_print_their_expectations():
    for name in ("prepare_vqav2", "prepare_gqa", "prepare_nlvr2", "prepare_coco"):
        module = load_data_script(name)
        assert "RAW" in module.__doc__ and "--download" in module.__doc__
        with pytest.raises(SystemExit) as exit_info:
            module.main(["--help"])
        assert exit_info.value.code == 0
