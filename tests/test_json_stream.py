"""JSON data files read one record at a time: the same records as a whole parse, the same one-line errors, NaN
still read, and a VQAv2-style task loaded without ever holding its annotations file whole."""

import codecs
import json
import tracemalloc

import pytest

from dept_vl import InputError
from dept_vl.bench.data_scale import make_vqav2
from dept_vl.data.json_stream import iter_json_list, iter_json_object, json_starts_with
from dept_vl.data.tasks import get_task

RECORDS = [{"id": i, "text": f"question {i} ünïcode", "score": i / 4, "tags": ["a", None, True]} for i in range(50)]


def test_streamed_records_equal_the_whole_parse(tmp_path):
    top = tmp_path / "top.json"
    top.write_bytes(codecs.BOM_UTF8 + json.dumps(RECORDS, ensure_ascii=False).encode())  # a byte-order mark too
    keyed = tmp_path / "keyed.json"
    keyed.write_text(json.dumps({"info": {"records": [0]}, "records": RECORDS, "after": [1, 2]}))
    table = tmp_path / "table.json"
    table.write_text(json.dumps({str(r["id"]): r for r in RECORDS}))
    assert list(iter_json_list(top)) == RECORDS and list(iter_json_list(keyed, "records")) == RECORDS
    assert list(iter_json_object(table)) == [(str(r["id"]), r) for r in RECORDS]
    assert (json_starts_with(top), json_starts_with(keyed), json_starts_with(tmp_path / "none")) == ("[", "{", "")
    empty = tmp_path / "empty.json"
    empty.write_text('{"records": []}')
    assert list(iter_json_list(empty, "records")) == []


def test_what_the_stream_cannot_read_is_read_whole(tmp_path):
    with_nan = tmp_path / "nan.json"  # Python's parser takes NaN, ijson does not: the records after it still come
    with_nan.write_text('[{"x": 1}, {"x": 2}, {"x": NaN}, {"x": 4}]')
    values = [r["x"] for r in iter_json_list(with_nan)]
    assert values[:2] == [1, 2] and values[2] != values[2] and values[3] == 4 and len(values) == 4
    broken = tmp_path / "broken.json"
    broken.write_text('{"records": [{"x": 1},\n {"x": 2},\n {"x" 3}]}')
    with pytest.raises(InputError, match=r"broken.json: malformed JSON at line 3, column 7"):
        list(iter_json_list(broken, "records"))
    latin = tmp_path / "latin.json"
    latin.write_bytes('[{"x": "café"}]'.encode("latin-1"))
    with pytest.raises(InputError, match="latin.json is not UTF-8 text"):
        list(iter_json_list(latin))
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"records": {"x": 1}}')
    with pytest.raises(InputError, match=r"wrong.json: expected a JSON object with a list under 'records'$"):
        list(iter_json_list(wrong, "records"))
    with pytest.raises(InputError, match=r"wrong.json: expected a JSON list$"):
        list(iter_json_list(wrong))
    with pytest.raises(InputError, match="missing data file .*nowhere.json"):
        list(iter_json_object(tmp_path / "nowhere.json"))


def traced_peak(work):
    """(what ``work()`` returns, the peak of Python memory it allocated)."""
    tracemalloc.start()
    try:
        return work(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_vqav2_task_loads_without_holding_its_annotations_whole(tmp_path):
    make_vqav2(tmp_path, {"val2014": 8_000})  # VQAv2's record shapes: 6 MB of annotations
    data, streamed = traced_peak(lambda: get_task("vqa").load("val2014", tmp_path))
    assert len(data) == 8_000 and len(data.examples[7].targets) == 10
    assert data.examples[0].meta == {"answer_type": "other", "question_type": "what is the",
                                     "answer": data.examples[0].targets[0]}
    _, whole = traced_peak(lambda: json.loads((tmp_path / "v2_mscoco_val2014_annotations.json").read_text()))
    # parsing the annotations whole took 5.5x the file's size; loading the whole task streamed takes 1.1x
    assert streamed < 0.4 * whole, (streamed, whole)
