"""Atomic writes with the user's file mode, and readers whose errors name the file."""

import json
import os
import stat

import pytest
import torch

from dept_vl.errors import CheckpointError, ConfigError, InputError
from dept_vl.io import (FILE_MODE, atomic_write, iter_jsonl, read_config, read_data_json, read_json,
                        read_safetensors, write_dir_atomically, write_json, write_safetensors)


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "f.json"
    write_json(target, {"v": 1})

    def failing(tmp):
        with open(tmp, "w") as fh:
            fh.write("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, failing)
    assert json.loads(target.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["f.json"]  # no temp file left behind


def test_files_get_the_mode_open_would_give(tmp_path):
    write_json(tmp_path / "a.json", {})
    plain = tmp_path / "plain"
    plain.write_text("")
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == FILE_MODE


def test_write_dir_atomically_replaces_a_whole_directory(tmp_path):
    final = tmp_path / "model"
    write_dir_atomically(final, lambda d: write_json(d / "v.json", {"v": 1}))
    write_dir_atomically(final, lambda d: write_json(d / "w.json", {"w": 2}))
    assert sorted(os.listdir(final)) == ["w.json"] and sorted(os.listdir(tmp_path)) == ["model"]
    with pytest.raises(ZeroDivisionError):
        write_dir_atomically(final, lambda d: (write_json(d / "x.json", {}), 1 / 0))
    assert sorted(os.listdir(final)) == ["w.json"] and sorted(os.listdir(tmp_path)) == ["model"]


def test_checkpoint_readers_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="no c.json in"):
        read_json(tmp_path / "c.json")
    (tmp_path / "c.json").write_text("{")
    with pytest.raises(CheckpointError, match="c.json is not valid JSON"):
        read_json(tmp_path / "c.json")
    write_safetensors(tmp_path / "w.safetensors", {"x": torch.arange(4.0)})
    assert torch.equal(read_safetensors(tmp_path / "w.safetensors")["x"], torch.arange(4.0))
    (tmp_path / "w.safetensors").write_bytes((tmp_path / "w.safetensors").read_bytes()[:20])
    with pytest.raises(CheckpointError, match="w.safetensors is corrupt or truncated"):
        read_safetensors(tmp_path / "w.safetensors")


def test_config_and_data_readers(tmp_path):
    with pytest.raises(ConfigError, match="recipe not found"):
        read_config(tmp_path / "r.yaml", "recipe")
    (tmp_path / "r.yaml").write_text("a: [1")
    with pytest.raises(ConfigError, match="cannot parse"):
        read_config(tmp_path / "r.yaml")
    (tmp_path / "d.json").write_text('{"a": ')
    with pytest.raises(InputError, match=r"d.json: malformed JSON at line 1"):
        read_data_json(tmp_path / "d.json")
    (tmp_path / "d.jsonl").write_text('{"a": 1}\n\n[2]\n{"a": 3}\n')
    with pytest.raises(InputError, match=r"d.jsonl, line 3: malformed JSON"):
        list(iter_jsonl(tmp_path / "d.jsonl"))
    said = []
    assert list(iter_jsonl(tmp_path / "d.jsonl", skip_bad_lines=True, log=said.append)) == [(1, {"a": 1}),
                                                                                             (4, {"a": 3})]
    assert said == [f"skipped {tmp_path / 'd.jsonl'}, line 3: malformed JSON (expected a JSON object)",
                    f"{tmp_path / 'd.jsonl'}: skipped 1 malformed line(s)"]
    (tmp_path / "e.jsonl").write_bytes(b'\xef\xbb\xbf{"a": 1}\n{"a": "caf\xe9"}\n')  # a byte-order mark, then Latin-1
    assert list(iter_jsonl(tmp_path / "e.jsonl", skip_bad_lines=True)) == [(1, {"a": 1})]
    with pytest.raises(InputError, match=r"e.jsonl, line 2: not UTF-8 text \(invalid continuation byte at byte 10\)"):
        list(iter_jsonl(tmp_path / "e.jsonl"))


def test_safetensors_carry_a_checksum_that_is_verified(tmp_path):
    path = tmp_path / "w.safetensors"
    write_safetensors(path, {"a": torch.arange(6.0).view(2, 3), "b": torch.ones(2, dtype=torch.bfloat16)})
    assert torch.equal(read_safetensors(path)["a"], torch.arange(6.0).view(2, 3))
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF  # one byte of tensor data flipped, the size unchanged
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="w.safetensors fails its checksum: .*; retrain it"):
        read_safetensors(path, remedy="retrain it")
    write_safetensors(path, {"a": torch.tensor([1.0, float("inf")])})
    assert read_safetensors(path)["a"][1] == float("inf")  # finiteness is checked only where asked
    with pytest.raises(CheckpointError, match=r"holds NaN or inf values \(in a\)"):
        read_safetensors(path, finite=True)


def test_write_dir_atomically_gives_every_file_the_usual_mode(tmp_path):
    def write(directory):
        (directory / "sub").mkdir()
        (directory / "sub" / "private").write_text("x")
        os.chmod(directory / "sub" / "private", 0o600)  # as libraries writing through mkstemp leave it

    write_dir_atomically(tmp_path / "d", write)
    assert stat.S_IMODE((tmp_path / "d" / "sub" / "private").stat().st_mode) == FILE_MODE


def test_exclusive_lock(tmp_path):
    from dept_vl.errors import OutputError
    from dept_vl.io import exclusive_lock

    with exclusive_lock(tmp_path / "x.lock", "the thing"):
        assert (tmp_path / "x.lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(OutputError, match=f"the thing is in use by another dept-vl process \\(pid {os.getpid()}\\)"):
            with exclusive_lock(tmp_path / "x.lock", "the thing"):
                pass
    with exclusive_lock(tmp_path / "x.lock", "the thing"):  # released
        pass
