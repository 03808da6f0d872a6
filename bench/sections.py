"""A section of BENCHMARKS.md: the text between two markers, written by one bench script and kept by the others.

``bench/run.py`` rewrites the file's main part and keeps each script's section (:func:`kept`); a script writing
its own figures replaces its section in place, or adds it at the end (:func:`write`).
"""

from __future__ import annotations

from pathlib import Path


def kept(path: Path, begin: str, end: str) -> str:
    """The section of ``path`` between ``begin`` and ``end`` (markers included) with a blank line before it, or ""."""
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        return "\n" + begin + text.split(begin, 1)[1].split(end, 1)[0] + end + "\n"
    return ""


def write(path: Path, section: str, begin: str, end: str) -> None:
    """Replace the section between ``begin`` and ``end`` of ``path`` with ``section``, or add it at the end."""
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
