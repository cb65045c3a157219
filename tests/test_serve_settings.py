"""ServeSettings: checked values, flags generated from the fields, and no need for the serve extra."""

import subprocess
import sys

import pytest

from dept_vl.cli import build_parser
from dept_vl.cli.flags import config_from
from dept_vl.errors import ConfigError
from dept_vl.serve.settings import ServeConfig, ServeSettings


@pytest.mark.parametrize("bad, needle", [({"max_batch_size": 0}, "max_batch_size must be an integer >= 1"),
                                         ({"max_batch_size": True}, "max_batch_size"),
                                         ({"max_wait_ms": -1}, "max_wait_ms must be >= 0"),
                                         ({"max_upload_mb": 0}, "max_upload_mb must be > 0"),
                                         ({"api_key": "  "}, "api_key must not be empty")])
def test_bad_values_are_refused_by_name(bad, needle):
    with pytest.raises(ConfigError, match=needle):
        ServeSettings(**bad)


def test_flags_come_from_the_fields():
    args = build_parser().parse_args(["serve", "--checkpoint", "run", "--max-batch-size", "4", "--api-key", "k"])
    settings = config_from(args, ServeConfig).settings
    assert (settings.max_batch_size, settings.api_key, settings.max_wait_ms, settings.max_upload_mb) == (4, "k", 10, 10)
    assert "larger requests are refused (413) (default: 10.0)" in " ".join(
        build_parser()._subparsers._group_actions[0].choices["serve"].format_help().split())


def test_importing_settings_needs_no_web_framework():
    code = ("import sys; import dept_vl.cli; "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
