"""lmms-eval scores a dept-vl run (``--model dept_vl``, found through the package's ``lmms_eval.models`` entry point)
on a local task offline, with the answers ``dept-vl predict`` gives; the plugin's requests, one by one.

The editable install of the suite may predate the entry point, so the end-to-end run finds it the way an installed
package exposes it: a ``.dist-info/entry_points.txt`` written from pyproject.toml's table, on the subprocess's path.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from dept_vl.cli import main

pytest.importorskip("lmms_eval", reason="needs lmms-eval (pip install -e '.[lmms-eval]')")
tomllib = pytest.importorskip("tomllib", reason="reads pyproject.toml with Python 3.11's tomllib")

from lmms_eval.api.instance import Instance  # noqa: E402

from dept_vl import ModelConfig  # noqa: E402
from dept_vl.integrations.lmms_model import DeptVL  # noqa: E402
from dept_vl.integrations.lmms_requests import blank_image, cut_at, generate_options, tiled  # noqa: E402
from dept_vl.models import NativeVisionLanguageModel  # noqa: E402
from dept_vl.runs.run_dir import SavedModel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TASK_YAML = """task: dept_vl_local
dataset_path: parquet
dataset_kwargs:
  data_files: {{test: {data}}}
test_split: test
output_type: generate_until
doc_to_visual: !function local_utils.doc_to_visual
doc_to_text: !function local_utils.doc_to_text
doc_to_target: answer
generation_kwargs: {{max_new_tokens: {max_new_tokens}, until: ["\\n\\n"], temperature: 0, do_sample: false}}
process_results: !function local_utils.process_results
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""
TASK_UTILS = '''
def doc_to_visual(doc):
    return [doc["image"].convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]


def process_results(doc, results):
    return {"exact_match": float(results[0].strip().lower() == doc["answer"])}
'''


def easyvqa_questions(count: int) -> list[dict]:
    import easy_vqa

    questions, answers, image_ids = easy_vqa.get_test_questions()
    paths = easy_vqa.get_test_image_paths()
    picked = range(0, 7 * count, 7)  # different images and kinds of question
    return [{"question": questions[i], "answer": answers[i], "image": paths[image_ids[i]]} for i in picked]


def write_local_task(directory: Path, records: list[dict], max_new_tokens: int) -> Path:
    """A task folder for --include_path: the YAML, its functions, a Parquet file holding the images' bytes."""
    import datasets

    rows = {"question": [r["question"] for r in records], "answer": [r["answer"] for r in records],
            "image": [{"bytes": Path(r["image"]).read_bytes(), "path": Path(r["image"]).name} for r in records]}
    data = directory / "questions.parquet"
    datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image()).to_parquet(str(data))
    (directory / "dept_vl_local.yaml").write_text(TASK_YAML.format(data=json.dumps(str(data)),
                                                                        max_new_tokens=max_new_tokens))
    (directory / "local_utils.py").write_text(TASK_UTILS)
    return directory


def installed_entry_point(site: Path) -> Path:
    """A dist-info on ``site`` declaring pyproject.toml's lmms_eval.models entry points, as `pip install` does."""
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["lmms_eval.models"]
    dist = site / "dept_vl_plugin_test-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: dept-vl-plugin-test\nVersion: 0\n")
    (dist / "entry_points.txt").write_text("[lmms_eval.models]\n" + "".join(f"{k} = {v}\n" for k, v in table.items()))
    return site


def test_the_entry_point_names_the_model_class(tmp_path):
    """lmms-eval's registry reads the manifest from the entry point, also when the plugin module is imported before
    lmms-eval (no half-imported module, no warning)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed_entry_point(tmp_path / "site")), str(ROOT)])}
    code = ("import dept_vl.integrations.lmms_plugin\nfrom lmms_eval.models import get_model_manifest\n"
            "m = get_model_manifest('dept_vl')\nprint(m.model_id, m.simple_class_path)")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["dept_vl", "dept_vl.integrations.lmms_model.DeptVL"]
    assert "Failed to load model entry-point manifests" not in done.stdout + done.stderr


@pytest.fixture(scope="module")
def native_run(tiny_llava_dir, tmp_path_factory):
    """A native-VLM run (the tiny LLaVA, one step on easy-vqa): its answers are words, not empty."""
    run = tmp_path_factory.mktemp("native-run") / "run"
    assert main(["train", "--vlm", str(tiny_llava_dir), "--task", "easyvqa", "--k-shot", "4", "--batch-size", "4",
                 "--test-examples", "1", "--output-dir", str(run), "--set", "model.dept.max_length=48",
                 "--no-tensorboard", "--max-steps", "1", "--cache-dir", str(run.parent / "cache")]) == 0
    return run


def test_lmms_eval_scores_a_run_offline_as_dept_vl_predict_answers(native_run, tmp_path, capsys):
    records = easyvqa_questions(4)
    answer_length = SavedModel.find(native_run).load_config().text.max_target_length  # what predict generates
    task_dir = write_local_task(tmp_path / "task", records, answer_length)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed_entry_point(tmp_path / "site")), str(ROOT)]),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "hf-cache")}
    done = subprocess.run([sys.executable, "-m", "lmms_eval", "--model", "dept_vl", "--model_args",
                           f"checkpoint={native_run},batch_size=4,device=cpu", "--tasks", "dept_vl_local",
                           "--include_path", str(task_dir), "--output_path", str(tmp_path / "out"), "--log_samples"],
                          env=env, capture_output=True, text=True, timeout=300)
    results = list((tmp_path / "out").rglob("*_results.json"))  # lmms-eval exits 0 after errors: read what it wrote
    assert done.returncode == 0 and len(results) == 1, done.stdout[-3000:] + done.stderr[-3000:]
    score = json.loads(results[0].read_text())["results"]["dept_vl_local"]["exact_match,none"]
    samples = [json.loads(line) for path in (tmp_path / "out").rglob("*dept_vl_local*.jsonl")
               for line in path.read_text().splitlines()]
    answered = {s["doc_id"]: s["filtered_resps"] if isinstance(s["filtered_resps"], str) else s["filtered_resps"][0]
                for s in samples}

    lines = tmp_path / "questions.jsonl"
    lines.write_text("".join(json.dumps({"image": r["image"], "question": r["question"]}) + "\n" for r in records))
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(native_run), "--input", str(lines), "--device", "cpu"]) == 0
    predicted = [json.loads(line)["prediction"] for line in capsys.readouterr().out.splitlines()]
    assert [answered[i] for i in range(len(records))] == predicted and all(predicted)
    assert score == pytest.approx(sum(p.lower() == r["answer"] for p, r in zip(predicted, records)) / len(records))


# ---- the plugin's requests, in process ------------------------------------------------------------------------------
QUESTIONS = ["what color is the shape?", "is there a circle?", "what shape is in the image?", "is it red?",
             "what is the color of the triangle?"]
COLORS = ["red", "blue", "green", "yellow", "gray"]


@pytest.fixture(scope="module")
def assembled_dir(tiny_clip_dir, tiny_t5_dir, tmp_path_factory):
    """A saved assembled model (tiny CLIP + T5, DePT's B drawn so that its answers are words)."""
    from conftest import tiny_model_config

    from dept_vl import VisionLanguageModel

    torch.manual_seed(0)
    model = VisionLanguageModel(tiny_model_config(tiny_clip_dir, tiny_t5_dir))
    torch.nn.init.normal_(model.dept.lora_embedding_B, std=0.3)
    path = tmp_path_factory.mktemp("assembled") / "m"
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def native_dir(tiny_llava_dir, tmp_path_factory):
    torch.manual_seed(0)
    config = {"vlm": str(tiny_llava_dir), "text": {"max_target_length": 4},
              "dept": {"prompt_length": 4, "r": 2, "max_length": 48}}
    model = NativeVisionLanguageModel(ModelConfig.from_dict(config))
    torch.nn.init.normal_(model.dept.lora_embedding_B, std=0.3)
    path = tmp_path_factory.mktemp("native") / "m"
    model.save_pretrained(path)
    return path


def docs_with(images: list) -> list[dict]:
    return [{"question": q, "images": ims} for q, ims in zip(QUESTIONS, images)]


def picture(i: int) -> Image.Image:
    return Image.new("RGB", (36 + 4 * i, 32), COLORS[i % len(COLORS)])


def plugin(checkpoint, docs: list[dict], **args) -> DeptVL:
    model = DeptVL(checkpoint=str(checkpoint), task="easyvqa", device="cpu", **args)
    model.task_dict = {"local": {"test": docs}}
    return model


def requests(docs: list[dict], kind: str = "generate_until", second=None) -> list[Instance]:
    """lmms-eval's requests for ``docs``: (context, gen_kwargs or continuation, doc_to_visual, doc_id, task, split)."""
    return [Instance(request_type=kind, arguments=(doc["question"], {} if second is None else second,
                                                   lambda d: d["images"], i, "local", "test"),
                     idx=0, metadata={"task": "local", "doc_id": i, "repeats": 1}) for i, doc in enumerate(docs)]


def alone(model: DeptVL, docs: list[dict], images: list, **options) -> list[str]:
    """The predictor's answer to each document alone, with ``images``."""
    predictor = model.predictor
    return [predictor.answer([(predictor.task.source(d["question"]), ims)], **options)[0]
            for d, ims in zip(docs, images)]


@pytest.mark.parametrize("kind", ["assembled", "native"])
def test_answers_in_batches_are_the_predictors_with_the_tasks_generation_kwargs(kind, assembled_dir, native_dir):
    docs = docs_with([[picture(i)] for i in range(3)])
    model = plugin(assembled_dir if kind == "assembled" else native_dir, docs, batch_size=2)
    answers = model.generate_until(requests(docs))
    assert answers == alone(model, docs, [d["images"] for d in docs]) and all(answers)
    short = model.generate_until(requests(docs, second={"max_new_tokens": 1, "temperature": 0}))
    tokenizer = model.predictor.model.text.tokenizer
    assert all(len(tokenizer(s, add_special_tokens=False)["input_ids"]) == 1 and a.startswith(s)
               for s, a in zip(short, answers))  # greedy: the first token of the longer answer
    stop = answers[0].split()[-1]
    cut = model.generate_until(requests(docs[:1], second={"until": [stop]}))
    assert cut == [answers[0][:answers[0].index(stop)].strip()]


def test_several_images_and_a_missing_one_as_lmms_evals_own_models_take_them(assembled_dir, native_dir):
    docs = docs_with([[picture(0), picture(1)], None, [picture(2)]])
    assembled = plugin(assembled_dir, docs)  # one image per question: several tiled (as InstructBLIP), none blank
    fitted = [[tiled([picture(0), picture(1)])], [blank_image()], [picture(2)]]
    assert assembled.generate_until(requests(docs)) == alone(assembled, docs, fitted)
    native = plugin(native_dir, docs[:1] + docs[2:])  # a native VLM reads every image of a document
    assert native.generate_until(requests(docs[:1] + docs[2:])) == alone(native, docs[:1] + docs[2:],
                                                                        [[picture(0), picture(1)], [picture(2)]])


@pytest.mark.parametrize("kind", ["assembled", "native"])
def test_loglikelihood_is_the_continuations_teacher_forced_log_probability(kind, assembled_dir, native_dir):
    docs = docs_with([[picture(i)] for i in range(3)])
    model = plugin(assembled_dir if kind == "assembled" else native_dir, docs, batch_size=2)
    scores = model.loglikelihood(requests(docs, "loglikelihood", second="red"))
    vlm, task = model.predictor.model, model.predictor.task
    for doc, (logprob, _) in zip(docs, scores):
        batch = vlm.prepare([task.source(doc["question"])], [doc["images"]], targets=["red"], task=task.name)
        tokens = int((batch["labels"] != -100).sum())
        with torch.no_grad():
            assert -logprob / tokens == pytest.approx(float(vlm(**batch).loss), rel=1e-4)
    assert len({round(s, 4) for s, _ in scores}) == 3 and all(s < 0 for s, _ in scores)


def test_generation_kwargs_and_stop_strings():
    assert generate_options({"max_new_tokens": 16, "temperature": 0, "top_p": 0.9, "until": "\n"}) == \
        ({"max_new_tokens": 16}, ["\n"])
    assert generate_options({"temperature": 0.7, "top_p": 0.9, "num_beams": 1}) == \
        ({"num_beams": 1, "do_sample": True, "temperature": 0.7, "top_p": 0.9}, [])
    joined = tiled([Image.new("RGB", (20, 10), "red"), Image.new("RGB", (10, 20), "blue")])
    assert joined.size == (25, 10)  # the second one scaled to the first one's height, placed after it
    assert joined.getpixel((19, 5)) == (255, 0, 0) and joined.getpixel((24, 5)) == (0, 0, 255)
    assert cut_at(" a red circle. Question: ", ["Question:", "."]) == "a red circle"


def test_model_args_a_user_gets_wrong_are_one_clear_line():
    from dept_vl import ConfigError

    with pytest.raises(ConfigError, match="unknown batch_sise .*checkpoint=RUN_DIR is required"):
        DeptVL(checkpoint="runs/x", batch_sise=4)
    with pytest.raises(ConfigError, match="no checkpoint"):
        DeptVL.create_from_arg_string("batch_size=4", {"batch_size": 1, "max_batch_size": None, "device": None})
    with pytest.raises(ConfigError, match="batch_size must be a positive number, got 'four'"):
        DeptVL(checkpoint="runs/x", batch_size="four")
