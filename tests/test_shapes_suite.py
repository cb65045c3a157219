"""The shapes suite: four tasks in their official formats, read by their own loaders, saying true things."""

import json

import pytest

from dept_vl.data.shapes_suite import shape_images, write_shapes_suite
from dept_vl.data.tasks import get_task

from conftest import load_data_script


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    return write_shapes_suite(tmp_path_factory.mktemp("shapes"), examples=20, seed=1)


def test_every_task_reads_its_splits(suite):
    for task_name, directory in suite.items():
        task = get_task(task_name)
        for split in [s for s in task.default_splits if s]:
            data = task.load(split, directory)
            data.check_images()
            assert len(data) == 20, (task_name, split)


def test_what_the_suite_says_is_true(suite):
    import hashlib
    import re

    def digest(path):
        return hashlib.sha256(open(path, "rb").read()).hexdigest()

    truth = {digest(path): (shape, color) for split in ("train", "test") for path, shape, color in shape_images(split)}
    captions = get_task("caption").load("test", suite["caption"])
    for ex in captions.examples:
        shape, color = truth[digest(captions.images[ex.image_ids[0]])]
        assert len(ex.targets) == 5 and all(shape in c and color in c for c in ex.targets)
    vqa = get_task("vqa").load("val", suite["vqa"])
    for ex in vqa.examples:
        shape, color = truth[digest(vqa.images[ex.image_ids[0]])]
        asked = re.search(r"what color is the (\w+)\?|what shape is the (\w+) object\?|is there a (\w+) in", ex.source)
        expected = color if asked[1] else shape if asked[2] else "yes" if asked[3] == shape else "no"
        assert ex.targets == [expected] * 10, ex.source
    nlvr = get_task("nlvr2").load("dev", suite["nlvr2"])
    for ex in nlvr.examples:
        left, right = (truth[digest(nlvr.images[i])] for i in ex.image_ids)
        said = ex.source.removeprefix("nlvr: ").lower()
        holds = {"the two shapes have the same color.": left[1] == right[1]}.get(said)
        if holds is None:
            where, shape = re.match(r"(the left|the right|both) images? contains? a (\w+)\.", said).groups()
            images = {"the left": [left], "the right": [right], "both": [left, right]}[where]
            holds = all(image[0] == shape for image in images)
        assert ex.targets == ["true" if holds else "false"], said
    assert {ex.targets[0] for ex in nlvr.examples} == {"true", "false"}


def test_the_data_script_writes_it(tmp_path, capsys):
    load_data_script("make_shapes_suite").main(["--out", str(tmp_path), "--examples", "20"])
    assert set(json.loads(capsys.readouterr().out)) == {"vqa", "gqa", "nlvr2", "caption"}
    assert (tmp_path / "gqa" / "testdev_balanced_questions.json").is_file()
