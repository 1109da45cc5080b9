"""What the README tests share: the README's fenced blocks and the files it defines, and small
real test images (scikit-image's sample photographs).

Used by tests/test_readme.py (the ``python`` blocks), tests/test_readme_cli.py (the ``bash``
blocks, read as a shell would by :func:`parse_commands`) and tests/test_benchmarks.py.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

__all__ = ["PHOTOS", "README", "Block", "Command", "bash_blocks", "count_maps",
           "expected_labels", "fenced_blocks", "make_photos", "parse_commands", "photo",
           "readme_files", "substitute", "write_readme_files", "write_tiff"]

README = Path(__file__).resolve().parents[1] / "README.md"


@dataclass(frozen=True)
class Block:
    number: int  #: 1-based, in README order
    line: int  #: README line of the block's first code line
    code: str


def fenced_blocks(text: str, language: str) -> list[Block]:
    """The fenced code blocks of ``language`` in a Markdown text."""
    blocks, lines, start, body = [], text.splitlines(), None, []
    for i, line in enumerate(lines, start=1):
        if start is None:
            if line.strip() == f"```{language}":
                start, body = i + 1, []
        elif line.strip() == "```":
            blocks.append(Block(len(blocks) + 1, start, "\n".join(body) + "\n"))
            start = None
        else:
            body.append(line)
    assert start is None, f"README.md: the ```{language} block at line {start - 1} is not closed"
    return blocks


@dataclass(frozen=True)
class Runner:
    """How a README test finds its block (``marker``: a text only that block holds) and runs it."""

    name: str
    marker: str
    run: Callable[..., None]
    marks: tuple = ()


def block_holding(blocks: list[Block], marker: str, runner: str, language: str) -> Block:
    """The one block of ``blocks`` that holds ``marker`` (a runner's way to find its block)."""
    found = [b for b in blocks if marker in b.code]
    assert len(found) == 1, (f"{len(found)} README {language} blocks hold {marker!r} "
                             f"(the {runner} runner's block; expected exactly one)")
    return found[0]


def substitute(code: str, old: str, new: str) -> str:
    """``code`` with ``old`` replaced by ``new``; ``old`` must occur (else the README changed)."""
    assert old in code, f"substitution {old!r} -> {new!r} no longer matches the README block"
    assert old.count("\n") == new.count("\n"), "substitutions keep the README's line numbers"
    return code.replace(old, new)


_HEREDOC = re.compile(r"cat > (\S+) <<'(\w+)'")
_OPTIONAL = re.compile(r"\[(-[^\]]+)\]")


@dataclass(frozen=True)
class Command:
    line: int  #: README line where the command starts
    text: str  #: as written: continuations joined, the trailing comment dropped
    heredoc: tuple[str, str] | None = None  #: (file, body) of ``cat > FILE <<'TAG'``

    @property
    def has_optional(self) -> bool:
        return any(_OPTIONAL.fullmatch(t) for t in shlex.split(self.text))

    def argv(self, optional: bool = False) -> list[str]:
        """The arguments, with the README's optional ``[--flag]`` left out or put in."""
        out: list[str] = []
        for token in shlex.split(self.text):
            m = _OPTIONAL.fullmatch(token)
            if m is None:
                out.append(token)
            elif optional:
                out += shlex.split(m.group(1))
        return out

    def sub(self, old: str, new: str) -> Command:
        """This command with ``old`` replaced by ``new``; ``old`` must occur in it."""
        assert old in self.text, (f"README.md line {self.line}: the substitution {old!r} -> "
                                  f"{new!r} no longer matches `{self.text}`")
        return replace(self, text=self.text.replace(old, new))


def parse_commands(block: Block) -> list[Command]:
    """The commands of a bash block, in order, read as a shell would: ``\\`` continuations
    joined, a trailing ``# comment`` dropped, quotes honoured, and a ``cat > FILE <<'TAG'``
    here-document kept with its body. ``[--flag]`` stays a token: see :meth:`Command.argv`."""
    lines = block.code.splitlines()
    commands, i = [], 0
    while i < len(lines):
        line, start = lines[i].strip(), block.line + i
        i += 1
        if not line or line.startswith("#"):
            continue
        heredoc = _HEREDOC.fullmatch(line)
        if heredoc:
            name, tag = heredoc.groups()
            assert tag in lines[i:], f"README.md line {start}: here-document without its {tag}"
            end = lines.index(tag, i)
            commands.append(Command(start, line, (name, "\n".join(lines[i:end]) + "\n")))
            i = end + 1
            continue
        while line.endswith("\\"):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        commands.append(Command(start, shlex.join(shlex.split(line, comments=True))))
    return commands


def bash_blocks() -> list[Block]:
    return fenced_blocks(README.read_text(encoding="utf-8"), "bash")


def readme_files() -> dict[str, str]:
    """The pipeline files the README defines: ``# NAME.yaml`` YAML blocks, the ``name:
    thumbnail`` example (as thumbnail.yaml), and ``cat > NAME <<'YAML'`` here-documents."""
    text = README.read_text(encoding="utf-8")
    files: dict[str, str] = {}
    for block in fenced_blocks(text, "yaml"):
        first = block.code.splitlines()[0].strip()
        if re.fullmatch(r"# [\w.-]+\.ya?ml", first):
            files[first[2:]] = block.code
        elif first.startswith("name: thumbnail"):
            files["thumbnail.yaml"] = block.code
    for name, body in re.findall(r"^cat > ([\w.-]+\.ya?ml) <<'YAML'\n(.*?)^YAML$", text,
                                 flags=re.M | re.S):
        files[name] = body
    return files


def write_readme_files(*names: str) -> None:
    files = readme_files()
    for name in names:
        assert name in files, f"README.md no longer defines {name} (found {sorted(files)})"
        Path(name).write_text(files[name], encoding="utf-8")


def photo(name: str, size: tuple[int, int]) -> np.ndarray:
    """A scikit-image sample photograph as RGB uint8, resized to ``size`` = (width, height)."""
    import cv2
    from skimage import data

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.dstack([img] * 3)
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


#: relative path -> (scikit-image sample, (width, height)); parent folders are labels
PHOTOS = {
    "cat.jpg": ("chelsea", (160, 120)),
    "cats/chelsea.jpg": ("chelsea", (120, 96)),
    "cats/cat2.jpg": ("cat", (96, 120)),
    "coffee/cup.jpg": ("coffee", (128, 96)),
}


def make_photos(root: Path | str = "photos", *, flat: bool = False) -> dict[str, bytes]:
    """Write :data:`PHOTOS` under ``root`` as JPEGs (``flat``: all in ``root`` itself, the
    folders joined into the names); return relative path -> file bytes."""
    from pixelmill import codecs

    out = {}
    for rel, (sample, size) in PHOTOS.items():
        path = Path(root, rel.replace("/", "_") if flat else rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(codecs.encode(photo(sample, size), "jpg", quality=90))
        out[rel] = path.read_bytes()
    return out


def expected_labels() -> dict[str | None, int]:
    """Images per ``label_from="parent"`` label of :data:`PHOTOS` (the parent folder below the
    scanned folder; None for the files directly in it)."""
    counts: dict[str | None, int] = {}
    for rel in PHOTOS:
        label = rel.rsplit("/", 1)[0] if "/" in rel else None
        counts[label] = counts.get(label, 0) + 1
    return counts


def write_tiff(path: str, image: np.ndarray, tile: int = 64) -> None:
    import tifffile

    tifffile.imwrite(path, image, tile=(tile, tile), photometric="rgb")


def count_maps(monkeypatch, engine_class: type) -> dict[str, int]:
    """Count the work units ``engine_class.map`` is given (proof that a job ran on it)."""
    counts = {"units": 0}
    original = engine_class.map

    def map(self, fn, units, **kwargs):
        units = list(units)
        counts["units"] += len(units)
        return original(self, fn, units, **kwargs)

    monkeypatch.setattr(engine_class, "map", map)
    return counts
