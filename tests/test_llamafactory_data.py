"""LLaMA-Factory's data registry as a data source: --data path/dataset_info.json::NAME (sharegpt and alpaca)."""

import json

import pytest

from dept_vl.data.tasks.own import default_name  # noqa: I001 (first: data.sources alone meets an import cycle)
from dept_vl.data.sources import read_source
from dept_vl.errors import InputError

from conftest import write_image


@pytest.fixture
def registry(tmp_path):
    write_image(tmp_path / "images" / "a.png", 0)
    write_image(tmp_path / "images" / "b.png", 1)
    sharegpt = [{"messages": [{"role": "user", "content": "<image>what color is it?"},
                              {"role": "assistant", "content": "red"},
                              {"role": "user", "content": "and the shape?"},
                              {"role": "assistant", "content": "circle"}], "images": ["images/a.png"]}]
    alpaca = [{"instruction": "describe", "input": "the shape", "output": "a square", "imgs": ["images/b.png"],
               "hist": [["hello", "hi"]]}]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "chat.json").write_text(json.dumps(sharegpt))
    (tmp_path / "data" / "alpaca.jsonl").write_text("\n".join(map(json.dumps, alpaca)))
    info = {"chat": {"file_name": "data/chat.json", "formatting": "sharegpt",
                     "columns": {"messages": "messages", "images": "images"},
                     "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                              "assistant_tag": "assistant"}},
            "alp": {"file_name": "data/alpaca.jsonl", "columns": {"images": "imgs", "history": "hist"}},
            "hub": {"hf_hub_url": "someone/data"}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    return tmp_path / "dataset_info.json"


def test_sharegpt_and_alpaca_entries_read_as_llama_factory_does(registry):
    chat = read_source(f"{registry}::chat")
    assert [(r.question, r.answers) for r in chat] == [("what color is it?", ["red"]), ("and the shape?", ["circle"])]
    assert chat[1].context == [("user", "what color is it?"), ("assistant", "red")]
    assert chat[0].images == [str(registry.parent / "images" / "a.png")]
    alpaca = read_source(f"{registry}::alp")
    assert [(r.question, r.answers) for r in alpaca] == [("hello", ["hi"]), ("describe the shape", ["a square"])]
    assert alpaca[0].images == [str(registry.parent / "images" / "b.png")]
    assert default_name(f"{registry}::chat") == "chat"


def test_what_cannot_be_read_is_one_line(registry):
    with pytest.raises(InputError, match="no dataset 'nope' .*it names: alp, chat, hub"):
        read_source(f"{registry}::nope")
    with pytest.raises(InputError, match="'hub' is not a local file"):
        read_source(f"{registry}::hub")
    with pytest.raises(InputError, match="does not exist"):
        read_source(f"{registry.parent / 'missing.json'}::chat")


def test_dept_vl_trains_on_a_registry_entry(registry, tmp_path, capsys):
    from dept_vl.cli import main
    from test_own_data import tiny_args

    rows = [{"messages": [{"role": "user", "content": f"<image>what is {i}?"},
                          {"role": "assistant", "content": "red" if i % 2 else "blue"}],
             "images": [f"images/{'ab'[i % 2]}.png"]} for i in range(20)]
    (registry.parent / "data" / "chat.json").write_text(json.dumps(rows))
    run = tmp_path / "run"
    assert main(tiny_args(tmp_path, "--data", f"{registry}::chat", "--output-dir", str(run)) + ["--cache-dir",
                                                                                              str(tmp_path / "c")]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["test"]["examples"] == 2, out.err[-600:]  # the held-out tenth of 20
