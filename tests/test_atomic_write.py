"""The one writer of files: through symbolic links, never onto a device, a FIFO or a folder,
and never losing what it was asked to write (a full disk keeps it in the temporary folder);
the commands refuse such an output path before any work and exit 1 with one line when the
write at the end fails."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpubench.output import WriteError, write_atomic
from gpubench.results import read_results, to_json, write_results
from tests.conftest import ROOT, cli_in_process

FIXTURE = ROOT / "tests" / "fixtures" / "report_2slots.json"
TINY = ["--case", "mlp", "--clients", "2", "--samples-per-client", "32", "--batch-size", "16",
        "--rounds", "1", "--warmup", "0", "--sample-interval", "0", "--quiet",
        "--devices", "cpu:1", "--modes", "serial"]


@pytest.fixture
def kept_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary folder where a failed write keeps its content, for this test alone."""
    folder = tmp_path / "kept"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def char_device(tmp_path: Path) -> Path:
    """A character device node (the null device's numbers) that the test owns."""
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node is not allowed here")
    return node


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "64k") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``folder`` (skips where mounting is not allowed)."""
    folder.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.parametrize("how", ["absolute", "relative", "chain"])
def test_a_link_stays_a_link_and_the_file_it_names_is_written(tmp_path, how):
    target = tmp_path / "data" / "results.json"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "latest.json"
    if how == "absolute":
        link.symlink_to(target)
    elif how == "relative":
        link.symlink_to(Path("data") / "results.json")
    else:
        middle = tmp_path / "data" / "middle.json"
        middle.symlink_to("results.json")
        link.symlink_to(middle)
    assert write_atomic(link, "new\n") == link
    assert link.is_symlink() and target.read_text() == "new\n"
    assert sorted(p.name for p in target.parent.iterdir() if not p.is_symlink()) == ["results.json"]


def test_a_dangling_link_creates_the_file_it_names(tmp_path):
    link = tmp_path / "out.json"
    link.symlink_to("made.json")
    write_atomic(link, b"{}")
    assert link.is_symlink() and (tmp_path / "made.json").read_bytes() == b"{}"


def test_a_file_keeps_its_permissions_and_a_new_one_gets_the_umasks(tmp_path):
    old = tmp_path / "old.md"
    old.write_text("x")
    old.chmod(0o640)
    write_atomic(old, "y")
    assert stat.S_IMODE(old.stat().st_mode) == 0o640
    mask = os.umask(0o022)
    try:
        write_atomic(tmp_path / "new.md", "z")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "new.md").stat().st_mode) == 0o644


def test_a_fifo_is_refused_and_left_as_it_is(tmp_path, kept_dir):
    fifo = tmp_path / "out.json"
    os.mkfifo(fifo)
    with pytest.raises(WriteError) as caught:
        write_atomic(fifo, "{}\n")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    message = one_line(str(caught.value))
    assert f"cannot write {fifo}: a FIFO, not a regular file" in message
    assert caught.value.kept is not None and caught.value.kept.read_text() == "{}\n"
    assert str(caught.value.kept) in message


def test_a_character_device_is_refused_and_stays_a_device(char_device, kept_dir):
    with pytest.raises(WriteError, match="a character device, not a regular file"):
        write_atomic(char_device, "{}\n")
    assert stat.S_ISCHR(char_device.lstat().st_mode)


def test_dev_null_is_refused_and_stays_a_device(kept_dir):
    with pytest.raises(WriteError, match="a character device"):
        write_atomic("/dev/null", "{}\n")
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)


def test_a_link_to_a_fifo_is_refused_too(tmp_path, kept_dir):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (tmp_path / "out.json").symlink_to(fifo)
    with pytest.raises(WriteError, match="a FIFO"):
        write_atomic(tmp_path / "out.json", "{}")
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and (tmp_path / "out.json").is_symlink()


def test_a_folder_is_refused(tmp_path, kept_dir):
    folder = tmp_path / "out.json"
    folder.mkdir()
    with pytest.raises(WriteError, match="a folder, not a regular file"):
        write_atomic(folder, "{}")
    assert folder.is_dir() and not any(folder.iterdir())


def test_a_full_disk_keeps_the_content_and_says_where(tmp_path, kept_dir):
    results = read_results(FIXTURE)
    with small_disk(tmp_path / "disk") as disk:
        (disk / "ballast").write_bytes(b"\0" * 60_000)  # the folder is writable, the disk full
        out = disk / "results.json"
        with pytest.raises(WriteError) as caught:
            write_results(results, out)
        message = one_line(str(caught.value))
        assert f"cannot write {out}: No space left on device" in message
        assert [p.name for p in disk.iterdir()] == ["ballast"]  # no partial temporary file
    kept = caught.value.kept
    assert kept is not None and kept.parent == kept_dir and str(kept) in message
    assert kept.name.startswith("gpubench-results-") and kept.suffix == ".json"
    assert kept.read_text() == to_json(results)


def test_when_the_content_cannot_be_kept_either_the_line_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    fifo = tmp_path / "out.json"
    os.mkfifo(fifo)
    with pytest.raises(WriteError) as caught:
        write_atomic(fifo, "{}")
    assert caught.value.kept is None
    assert one_line(str(caught.value)).endswith("the content could not be kept either")


@pytest.fixture
def nothing_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    """``compare`` and ``sweep`` fail the test if they get as far as preparing a run."""
    from gpubench import api

    def measured(*a, **k):
        raise AssertionError("measured before the output path was checked")

    monkeypatch.setattr(api, "prepare_checked", measured)
    monkeypatch.setattr(api, "sweep_points", measured)


def _special_paths(tmp_path: Path, char_device: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.json"
    folder.mkdir()
    return {"fifo": fifo, "device": char_device, "folder": folder}


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
@pytest.mark.parametrize("flag", ["--out", "--report", "--junit"])
def test_compare_refuses_a_special_output_path_before_measuring(tmp_path, char_device,
                                                                nothing_measured, kind, flag):
    path = _special_paths(tmp_path, char_device)[kind]
    extra = ["--out", str(tmp_path / "r.json")] if flag != "--out" else []
    proc = cli_in_process("compare", *TINY, *extra, flag, str(path))
    assert proc.returncode == 2, proc.stderr
    assert f"cannot write {flag} {path}" in one_line(proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert path.exists() and not path.is_file()


def test_compare_refuses_an_out_folder_that_cannot_be_made(tmp_path, nothing_measured):
    (tmp_path / "file").write_text("")
    proc = cli_in_process("compare", *TINY, "--out", str(tmp_path / "file" / "r.json"))
    assert proc.returncode == 2 and "cannot write --out" in one_line(proc.stderr)


def test_the_other_commands_refuse_a_special_output_path(tmp_path, char_device, nothing_measured):
    paths = _special_paths(tmp_path, char_device)
    faq_dir = tmp_path / "faq"
    faq_dir.mkdir()
    os.mkfifo(faq_dir / "faq.en.md")
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    os.mkfifo(sweep_dir / "summary.json")
    fifo_md = tmp_path / "page.md"
    os.mkfifo(fifo_md)
    runs = [
        ("report", str(FIXTURE), "-o", str(fifo_md)),
        ("gate", str(FIXTURE), "--baseline", str(FIXTURE), "--junit", str(paths["device"])),
        ("faq", "--from", str(FIXTURE), "--out", str(faq_dir), "--lang", "en"),
        ("sweep", *TINY, "--batch-size", "8,16", "--out-dir", str(sweep_dir)),
    ]
    for argv in runs:
        proc = cli_in_process(*argv)
        assert proc.returncode == 2, (argv, proc.stderr)
        assert "cannot write" in one_line(proc.stderr), argv
    assert stat.S_ISFIFO(fifo_md.lstat().st_mode)
    assert stat.S_ISCHR(paths["device"].lstat().st_mode)
    assert stat.S_ISFIFO((faq_dir / "faq.en.md").lstat().st_mode)


def test_compare_that_cannot_write_its_results_says_where_they_are(tmp_path, kept_dir,
                                                                  monkeypatch):
    from gpubench import api

    results = read_results(FIXTURE)
    monkeypatch.setattr(api, "prepare_checked", lambda config, check_fit=True: None)
    monkeypatch.setattr(api, "compare", lambda config, **kw: results)
    with small_disk(tmp_path / "disk") as disk:
        (disk / "ballast").write_bytes(b"\0" * 60_000)
        out = disk / "r.json"
        proc = cli_in_process("compare", *TINY, "--out", str(out))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    line = one_line(proc.stderr)
    assert f"cannot write {out}: No space left on device; the content is kept in" in line
    kept = Path(line.rsplit(" kept in ", 1)[1])
    assert kept.parent == kept_dir and kept.read_text() == to_json(results)
