"""The security-overhead figures live in their own marked section of BENCHMARKS.md: written in place, kept by
``make bench``, which rewrites the rest."""

from __future__ import annotations

from pathlib import Path

from bench.security_overhead import BEGIN, END, kept_section, write_section


def test_the_section_is_added_then_replaced_and_the_rest_is_untouched(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\nfigures\n")
    write_section(path, f"{BEGIN}\nfirst\n{END}")
    write_section(path, f"{BEGIN}\nsecond\n{END}")
    assert path.read_text() == f"# Benchmarks\n\nfigures\n\n{BEGIN}\nsecond\n{END}\n"
    assert kept_section(path) == f"\n{BEGIN}\nsecond\n{END}\n"
    assert kept_section(tmp_path / "missing.md") == ""


def test_the_replay_rebuild_section_is_replaced_in_place_and_kept(tmp_path: Path) -> None:
    from bench import replay_rebuild

    begin, end = replay_rebuild.BEGIN, replay_rebuild.END
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(f"# Benchmarks\n\n{BEGIN}\nsecurity\n{END}\n")
    replay_rebuild.write_section(path, f"{begin}\nfirst\n{end}")
    replay_rebuild.write_section(path, f"{begin}\nsecond\n{end}")
    assert path.read_text() == f"# Benchmarks\n\n{BEGIN}\nsecurity\n{END}\n\n{begin}\nsecond\n{end}\n"
    assert replay_rebuild.kept_section(path) == f"\n{begin}\nsecond\n{end}\n"
    assert kept_section(path) == f"\n{BEGIN}\nsecurity\n{END}\n"
