"""Each task loader on the fixture files in the official formats: counts, fields, targets, prefixes, metrics."""

import random
from pathlib import Path

import pytest

from dept_vl.errors import ConfigError, InputError
from dept_vl.data.tasks import get_task, list_tasks

from conftest import gqa_hf_rows


def test_registry_names_and_typos():
    assert list_tasks() == ["caption", "easyvqa", "gqa", "nlvr2", "vqa"]
    with pytest.raises(ConfigError, match="did you mean 'nlvr2'"):
        get_task("nlvr")


def test_vqa_karpathy_splits(vl_data):
    task = get_task("vqa")
    train, val, test = (task.load(s, vl_data["vqa"]) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (3, 2, 2)
    assert {ex.id for ex in train.examples} == {"90001", "90002", "420001"}  # restval image 42 joins train
    ex = next(e for e in val.examples if e.id == "730002")
    assert ex.source == "vqa: What are the dogs doing?" and len(ex.targets) == 10
    assert ex.image_ids == ("COCO_val2014_000000000073",) and ex.meta["answer_type"] == "other"
    assert Path(val.images[ex.image_ids[0]]).is_file()
    assert len(task.load("val2014", vl_data["vqa"])) == 5


def test_vqa_training_target_sampling_follows_answer_frequency(vl_data):
    task = get_task("vqa")
    ex = next(e for e in task.load("train", vl_data["vqa"]).examples if e.id == "90001")  # 8 of 10 "broccoli"
    rng = random.Random(0)
    draws = [task.training_target(ex, rng) for _ in range(2000)]
    assert draws.count("broccoli") / 2000 == pytest.approx(0.8, abs=0.03)
    task.target_sampling = "most_common"
    assert {task.training_target(ex, rng) for _ in range(20)} == {"broccoli"}


def test_vqa_score_overall_and_per_answer_type(vl_data):
    task = get_task("vqa")
    data = task.load("val2014", vl_data["vqa"])
    predictions = {"420001": "yes", "730001": "two", "730002": "playing", "740001": "a cat", "770001": "blue"}
    scores = task.score(predictions, data.examples)
    # "two" against ten identical "2" scores 0 (official); "playing": 5 matches after cleaning -> 1.0
    assert scores["accuracy/yes/no"] == 1.0 and scores["accuracy/number"] == 0.0
    assert scores["accuracy/other"] == pytest.approx(2 / 3)
    assert scores["accuracy"] == pytest.approx(3 / 5)


def test_gqa(vl_data):
    task = get_task("gqa")
    assert len(task.load("train+val", vl_data["gqa"])) == 5
    data = task.load("testdev", vl_data["gqa"])
    assert [ex.source for ex in data.examples] == ["gqa: What is the man holding?",
                                                   "gqa: Are the two cups the same color?"]
    scores = task.score({"401": "an umbrella", "402": "no"}, data.examples)
    assert scores == {"accuracy": 0.5, "accuracy/compare": 0.0, "accuracy/query": 1.0}


def test_nlvr2_two_images_and_labels(vl_data):
    task = get_task("nlvr2")
    data = task.load("train", vl_data["nlvr2"])
    assert len(data) == 3 and task.num_images == 2
    ex = data.examples[1]
    assert ex.image_ids == ("train-10171-0-img0", "train-10171-0-img1") and ex.targets == ["false"]
    assert ex.source == "nlvr: The left image shows exactly one cat."
    assert all(Path(data.images[i]).is_file() for i in ex.image_ids)
    assert task.score({"train-10171-0-0": "true", "train-10171-0-1": "true"}, data.examples)["accuracy"] == 1 / 3


def test_caption_karpathy(vl_data):
    task = get_task("caption")
    train, test = task.load("train", vl_data["caption"]), task.load("test", vl_data["caption"])
    assert len(train) == 2 and len(test) == 2  # restval joins train
    ex = test.examples[0]
    assert ex.source == "caption:" and ex.targets[0] == "A cat sleeping on a couch." and len(ex.targets) == 2
    perfect = task.score({e.id: e.targets[0] for e in test.examples}, test.examples)
    assert perfect["BLEU-4"] > 0.5 and perfect["CIDEr"] > 1.0
    assert task.metric == "CIDEr"


def test_easyvqa_offline_counts():
    task = get_task("easyvqa")
    train, test = task.load("train"), task.load("test")
    assert (len(train), len(test)) == (38575, 9673)
    assert (len(train.images), len(test.images)) == (4000, 1000)
    answers = {ex.targets[0] for ex in train.examples}
    assert len(answers) == 13
    assert {ex.meta["type"] for ex in test.examples} == {"shape", "color", "yes/no"}
    assert test.examples[0].source == "what is the red shape?"  # no prefix (see EasyVQA.prefix)
    test.check_images()


def test_hf_datasets_input(tmp_path):
    import datasets
    from PIL import Image

    rows = {"question_id": [1, 2], "image_id": [5, 5], "question": ["What color?", "How many?"],
            "answers": [[{"answer": "red", "answer_confidence": "yes", "answer_id": i} for i in range(10)]] * 2,
            "answer_type": ["other", "number"], "multiple_choice_answer": ["red", "red"],
            "image": [Image.new("RGB", (8, 8))] * 2}
    features = datasets.Features({"question_id": datasets.Value("int64"), "image_id": datasets.Value("int64"),
                                  "question": datasets.Value("string"),
                                  "answers": [{"answer": datasets.Value("string"),
                                               "answer_confidence": datasets.Value("string"),
                                               "answer_id": datasets.Value("int64")}],
                                  "answer_type": datasets.Value("string"),
                                  "multiple_choice_answer": datasets.Value("string"), "image": datasets.Image()})
    datasets.DatasetDict({"validation": datasets.Dataset.from_dict(rows, features=features)}).save_to_disk(tmp_path)
    data = get_task("vqa").load("validation", tmp_path)
    assert len(data) == 2 and data.examples[1].source == "vqa: How many?"
    assert data.images["coco_5"].size == (8, 8) and data.examples[0].targets == ["red"] * 10


def test_nlvr2_and_caption_from_saved_hf_datasets(tmp_path):
    import datasets
    from PIL import Image

    Img = datasets.Image()
    pairs = datasets.Dataset.from_dict(
        {"identifier": ["dev-7-0-1", "dev-8-1-0"], "sentence": ["Two dogs.", "A cat."], "label": ["True", "False"],
         "left_image": [Image.new("RGB", (4, 4)), Image.new("RGB", (5, 5))],
         "right_image": [Image.new("RGB", (6, 6)), Image.new("RGB", (7, 7))]},
        features=datasets.Features({"identifier": datasets.Value("string"), "sentence": datasets.Value("string"),
                                    "label": datasets.Value("string"), "left_image": Img, "right_image": Img}))
    datasets.DatasetDict({"dev": pairs}).save_to_disk(tmp_path / "nlvr2")
    data = get_task("nlvr2").load("dev", tmp_path / "nlvr2")
    assert [(ex.id, ex.source, ex.targets) for ex in data.examples] == [
        ("dev-7-0-1", "nlvr: Two dogs.", ["true"]), ("dev-8-1-0", "nlvr: A cat.", ["false"])]
    assert [data.images[i].size for i in data.examples[1].image_ids] == [(5, 5), (7, 7)]
    data.check_images()

    coco = datasets.Dataset.from_dict(
        {"filepath": ["val2014"], "filename": ["COCO_val2014_000000000042.jpg"], "cocoid": [42], "split": ["test"],
         "sentences": [["A dog runs.", "A brown dog."]], "image": [Image.new("RGB", (3, 3))]},
        features=datasets.Features({"filepath": datasets.Value("string"), "filename": datasets.Value("string"),
                                    "cocoid": datasets.Value("int64"), "split": datasets.Value("string"),
                                    "sentences": [datasets.Value("string")], "image": Img}))
    datasets.DatasetDict({"test": coco}).save_to_disk(tmp_path / "coco")
    data = get_task("caption").load("test", tmp_path / "coco")
    assert [(ex.id, ex.image_ids, ex.targets) for ex in data.examples] == [
        ("42", ("COCO_val2014_000000000042",), ["A dog runs.", "A brown dog."])]
    assert data.images["COCO_val2014_000000000042"].size == (3, 3)
    datasets.DatasetDict({"test": coco.remove_columns("image")}).save_to_disk(tmp_path / "coco-no-image")
    with pytest.raises(InputError, match="rows have no column 'image'"):
        get_task("caption").load("test", tmp_path / "coco-no-image")


def test_gqa_from_a_saved_hf_dataset(tmp_path):
    import datasets

    datasets.DatasetDict({"train": gqa_hf_rows(), "val": gqa_hf_rows().select([1])}).save_to_disk(tmp_path)
    task = get_task("gqa")
    data = task.load("train", tmp_path)
    assert [ex.source for ex in data.examples] == ["gqa: What is it?", "gqa: Is it red?", "gqa: Which color?"]
    assert [ex.image_ids for ex in data.examples] == [("n1",), ("n2",), ("n1",)]
    assert sorted(data.images) == ["n1", "n2"] and data.images["n2"].size == (6, 6)
    data.check_images()
    assert task.score({"q1": "a cup", "q2": "yes", "q3": "red"}, data.examples) == {
        "accuracy": 2 / 3, "accuracy/query": 1.0, "accuracy/verify": 0.0}
    both = task.load("train+val", tmp_path)
    assert len(both) == 4 and both.examples[3].id == "q2" and len(both.images_for()) == 2
    datasets.DatasetDict({"train": gqa_hf_rows(image=False)}).save_to_disk(tmp_path / "no-images")
    with pytest.raises(InputError, match="split 'train': rows have no column 'image'"):
        task.load("train", tmp_path / "no-images")
    datasets.DatasetDict({"train": gqa_hf_rows().remove_columns("answer")}).save_to_disk(tmp_path / "no-answers")
    with pytest.raises(InputError, match="rows have no column 'answer'"):
        task.load("train", tmp_path / "no-answers")


def test_gqa_from_the_hub_layout_joins_questions_and_images(monkeypatch):
    import datasets
    from PIL import Image

    pictures = datasets.Dataset.from_dict({"id": ["n2", "n1"], "image": [Image.new("RGB", (6, 6)),
                                                                      Image.new("RGB", (4, 4))]},
                                          features=datasets.Features({"id": datasets.Value("string"),
                                                                      "image": datasets.Image()}))
    asked = []

    def load_dataset(name, config, split):
        asked.append((name, config, split))
        return {"testdev_balanced_instructions": gqa_hf_rows(image=False),
                "testdev_balanced_images": pictures}[config]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    data = get_task("gqa").load("testdev", "hf:lmms-lab/GQA")
    assert asked == [("lmms-lab/GQA", "testdev_balanced_instructions", "testdev"),
                     ("lmms-lab/GQA", "testdev_balanced_images", "testdev")]
    assert [ex.id for ex in data.examples] == ["q1", "q2", "q3"] and data.examples[2].targets == ["red"]
    assert data.images["n1"].size == (4, 4) and data.images["n2"].size == (6, 6)
    data.check_images()


def test_task_data_images_for_and_check_images():
    from dept_vl.data.tasks.base import Example, TaskData

    examples = [Example("1", ("a",), "q", ["x"]), Example("2", ("b", "a"), "q", ["y"])]
    data = TaskData("t", "s", examples, {"a": "/no/such/a.jpg", "b": "/no/such/b.jpg", "c": "/no/c.jpg"})
    assert list(data.images_for()) == ["a", "b"] and list(data.images_for(examples[:1])) == ["a"]
    assert data.images_for()["b"] == "/no/such/b.jpg" and "c" not in data.images_for()
    with pytest.raises(KeyError):
        data.images_for()["c"]
    with pytest.raises(InputError, match="example 1: image file /no/such/a.jpg does not exist"):
        data.check_images()
    with pytest.raises(InputError, match="example 2 refers to image 'b', which has no image file"):
        TaskData("t", "s", examples, {"a": __file__}).check_images()


def test_bad_data_gives_clear_errors(tmp_path, vl_data):
    with pytest.raises(ConfigError, match="no split 'dev'"):
        get_task("vqa").load("dev", vl_data["vqa"])
    with pytest.raises(InputError, match="does not exist"):
        get_task("gqa").load("train", tmp_path / "nowhere")
    (tmp_path / "train_balanced_questions.json").write_text("{not json")
    with pytest.raises(InputError, match="malformed JSON at line 1"):
        get_task("gqa").load("train", tmp_path)
    (tmp_path / "dev.json").write_text('{"identifier": "dev-1-0-0", "sentence": "x", "label": "True"}\n{oops\n')
    with pytest.raises(InputError, match=r"dev.json, line 2: malformed JSON"):
        get_task("nlvr2").load("dev", tmp_path)
    (tmp_path / "dev.json").write_text('{"identifier": "dev-1-0-0", "label": "True"}\n')
    with pytest.raises(InputError, match="line 1: record has no field 'sentence'"):
        get_task("nlvr2").load("dev", tmp_path)


def test_fields_of_the_wrong_json_type_are_named(tmp_path, vl_data):
    import json
    import shutil

    (tmp_path / "dev.json").write_text('{"identifier": "dev-1-0-0", "sentence": 42, "label": "True"}\n')
    with pytest.raises(InputError, match=r"dev.json, line 1: field 'sentence' must be a string, got an integer 42"):
        get_task("nlvr2").load("dev", tmp_path)
    (tmp_path / "train_balanced_questions.json").write_text('{"q1": {"imageId": "n1", "question": ["x"], "answer": "a"}}')
    with pytest.raises(InputError, match="question q1: field 'question' must be a string, got a list"):
        get_task("gqa").load("train", tmp_path)
    vqa = tmp_path / "vqa"
    shutil.copytree(vl_data["vqa"], vqa)
    questions = vqa / "v2_OpenEnded_mscoco_val2014_questions.json"
    data = json.loads(questions.read_text())
    data["questions"][0]["image_id"] = True
    questions.write_text(json.dumps(data))
    with pytest.raises(InputError, match="field 'image_id' must be an integer, got a boolean True"):
        get_task("vqa").load("val2014", vqa)
    questions.write_text(json.dumps({"questions": [7]}))
    with pytest.raises(InputError, match="question \\?: expected a JSON object, got an integer"):
        get_task("vqa").load("val2014", vqa)


def test_an_unprepared_download_is_met_with_the_script_that_prepares_it(tmp_path):
    from conftest import make_raw_datasets

    raw = make_raw_datasets(tmp_path)
    with pytest.raises(InputError, match="karpathy_split.json: .*prepare_vqav2.py --raw .*--train-split train2014"):
        get_task("vqa").load("train", raw["vqav2"])
    official = get_task("vqa").load("val2014", raw["vqav2"])  # the official split of the download, as it is
    official.check_images()
    assert len(official) > 0
    coco = get_task("caption").load("train", raw["coco"])
    with pytest.raises(InputError, match="does not exist; is .* prepared\\? `python data_scripts/prepare_coco.py"):
        coco.check_images()
    nlvr = get_task("nlvr2").load("dev", raw["nlvr2"])
    with pytest.raises(InputError, match="prepare_nlvr2.py --raw .* --images IMAGES --out DIR"):
        nlvr.check_images()
    with pytest.raises(InputError, match="missing data file .*train_balanced_questions.json; .*prepare_gqa.py"):
        get_task("gqa").load("train", tmp_path / "raw-coco")
