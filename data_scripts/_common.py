"""Helpers shared by the data scripts: download with a progress bar, unzip, link-or-copy, JSON I/O."""

from __future__ import annotations

import json
import os
import shutil
import sys
import urllib.request
import zipfile
from pathlib import Path


def say(message: str) -> None:
    print(message, file=sys.stderr)


def download(url: str, dest: Path) -> Path:
    """Fetch ``url`` into ``dest`` (skipped when it is already there); a partial download is never kept."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        say(f"have {dest}")
        return dest
    from tqdm.auto import tqdm

    say(f"fetch {url} -> {dest}")
    tmp = dest.with_name(dest.name + ".part")
    with urllib.request.urlopen(url) as response, open(tmp, "wb") as fh:
        total = int(response.headers.get("Content-Length", 0)) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
            while chunk := response.read(1 << 20):
                fh.write(chunk)
                bar.update(len(chunk))
    os.replace(tmp, dest)
    return dest


def unzip(archive: Path, into: Path) -> None:
    say(f"unzip {archive} -> {into}")
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(into)


def place(src: Path, dst: Path, copy: bool = False) -> None:
    """Make ``dst`` refer to ``src``: a symlink (default, no extra disk) or a copy."""
    if not src.exists():
        raise FileNotFoundError(f"expected {src}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        if dst.is_dir() and not dst.is_symlink():
            shutil.rmtree(dst)
        else:
            dst.unlink()
    if copy:
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    else:
        dst.symlink_to(src.resolve(), target_is_directory=src.is_dir())


def read_json(path: Path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def run(doc: str, task: str, fetch, convert, argv=None, with_images: bool = False) -> None:
    """The command line every script shares: --raw, --out, [--images], --download, --copy."""
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw", type=Path, required=True, help="downloaded / unzipped files")
    if with_images:
        parser.add_argument("--images", type=Path, required=True, help="the image folders")
    parser.add_argument("--out", type=Path, required=True, help=f"the --data-dir for --task {task}")
    parser.add_argument("--download", action="store_true", help="fetch what RAW lacks (needs the network)")
    parser.add_argument("--copy", action="store_true", help="copy instead of symlinking")
    args = parser.parse_args(argv)
    if args.download:
        fetch(args.raw)
    inputs = (args.raw, args.images) if with_images else (args.raw,)
    say(f"{task}: {convert(*inputs, args.out, args.copy)} -> {args.out}")
