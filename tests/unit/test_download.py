"""The download stage: local HTTP server, file:// and local sources, archives, checksums, gdrive."""

import functools
import http.server
import io
import json
import shutil
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from pipeline.config import GeneratorConfig, SourceConfig, TaskConfig, TokenizerConfig
from pipeline.data.download import DownloadError, download_task, parse_drive_uri
from pipeline.data.jsonl import splits_sha256
from pipeline.io import sha256_file

TINY = Path(__file__).resolve().parent.parent / "fixtures" / "data" / "tiny"
SPLITS = ("train.jsonl", "valid.jsonl", "test.jsonl")


def _task(kind, uri, sha256=None, generator=None):
    return TaskConfig(source=SourceConfig(kind=kind, uri=uri, sha256=sha256, generator=generator),
                      tokenizer=TokenizerConfig(kind="wordpiece"), seq_len=32, systems=[])


def _tar(path, entries, top="qqp/"):
    """A .tar.gz of (name, bytes) entries, each placed under `top`."""
    with tarfile.open(path, "w:gz") as tf:
        for name, data in entries:
            info = tarfile.TarInfo(top + name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _split_entries(skip=()):
    return [(name, (TINY / name).read_bytes()) for name in SPLITS if name not in skip]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www; yields (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=root)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _assert_nothing_written(out):
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # no temp folder left beside it either


def test_http_archive_with_good_checksum(server, tmp_path):
    root, base = server
    archive = _tar(root / "qqp.tar.gz", _split_entries())
    out = tmp_path / "raw" / "qqp"
    download_task("qqp", _task("url", f"{base}/qqp.tar.gz", sha256_file(archive)), out)
    for name in SPLITS:
        assert (out / name).read_bytes() == (TINY / name).read_bytes()
    record = json.loads((out / "source.json").read_text())
    assert record["sha256"] == sha256_file(archive)
    assert record["files"]["train.jsonl"] == sha256_file(TINY / "train.jsonl")


def test_http_bad_checksum_writes_nothing(server, tmp_path):
    root, base = server
    _tar(root / "qqp.tar.gz", _split_entries())
    out = tmp_path / "raw" / "qqp"
    with pytest.raises(DownloadError, match="sha256 mismatch: expected 00ff"):
        download_task("qqp", _task("url", f"{base}/qqp.tar.gz", "00ff" * 16), out)
    _assert_nothing_written(out)


def test_http_404_names_the_url(server, tmp_path):
    _, base = server
    out = tmp_path / "raw" / "qqp"
    with pytest.raises(DownloadError, match=rf"{base}/nope.tar.gz: HTTP error 404"):
        download_task("qqp", _task("url", f"{base}/nope.tar.gz"), out)
    _assert_nothing_written(out)


def test_unreachable_host_is_a_clear_error(tmp_path):
    out = tmp_path / "raw" / "qqp"
    with pytest.raises(DownloadError, match="127.0.0.1:9/a.zip: cannot be reached"):
        download_task("qqp", _task("url", "http://127.0.0.1:9/a.zip"), out)
    _assert_nothing_written(out)


def test_http_folder_url_fetches_each_split(server, tmp_path):
    root, base = server
    shutil.copytree(TINY, root / "tiny")
    out = tmp_path / "raw" / "tiny"
    download_task("tiny", _task("url", f"{base}/tiny/", splits_sha256(TINY)), out)
    assert sorted(p.name for p in out.iterdir()) == ["source.json", *sorted(SPLITS)]


def test_missing_split_is_named(server, tmp_path):
    root, base = server
    _tar(root / "qqp.tar.gz", _split_entries(skip=("valid.jsonl",)))
    out = tmp_path / "raw" / "qqp"
    with pytest.raises(DownloadError, match=r"missing split\(s\) valid \(expected valid.jsonl\)"):
        download_task("qqp", _task("url", f"{base}/qqp.tar.gz"), out)
    _assert_nothing_written(out)


@pytest.mark.parametrize("bad", ["../evil.jsonl", "/tmp/evil.jsonl", "link"])
def test_escaping_archive_entries_are_refused(tmp_path, bad):
    archive = tmp_path / "in" / "bad.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tf:
        for name, data in _split_entries():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo(bad)
        if bad == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info, io.BytesIO(b""))
    out = tmp_path / "raw" / "bad"
    with pytest.raises(DownloadError, match=rf"unsafe archive entry '{bad}'"):
        download_task("bad", _task("local", str(archive)), out)
    _assert_nothing_written(out)
    assert not (tmp_path / "evil.jsonl").exists()


def test_zip_traversal_is_refused(tmp_path):
    archive = tmp_path / "in" / "bad.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../evil.jsonl", "{}")
    with pytest.raises(DownloadError, match="'..' escapes the target folder"):
        download_task("bad", _task("local", str(archive)), tmp_path / "raw" / "bad")


def test_file_url_zip_and_local_folder_give_the_same_splits(tmp_path):
    archive = tmp_path / "in" / "tiny.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in _split_entries():
            zf.writestr(name, data)
    download_task("a", _task("url", archive.as_uri(), sha256_file(archive)), tmp_path / "raw" / "a")
    download_task("b", _task("local", str(TINY)), tmp_path / "raw" / "b")
    for name in SPLITS:
        assert (tmp_path / "raw/a" / name).read_bytes() == (tmp_path / "raw/b" / name).read_bytes()
    with pytest.raises(DownloadError, match="no such file or folder"):
        download_task("c", _task("local", str(tmp_path / "absent")), tmp_path / "raw" / "c")


def test_builtin_generator_and_unknown_name(tmp_path):
    small = GeneratorConfig(num_train=20, num_valid=5, num_test=5)
    download_task("mp", _task("builtin", "minipara", generator=small), tmp_path / "raw" / "mp")
    assert (tmp_path / "raw/mp/test_multiref.jsonl").is_file()
    record = json.loads((tmp_path / "raw/mp/source.json").read_text())
    assert record["sha256"] == splits_sha256(tmp_path / "raw/mp")
    with pytest.raises(DownloadError, match=r"unknown builtin source 'nope' \(known: \['minipara'\]\)"):
        download_task("x", _task("builtin", "nope"), tmp_path / "raw" / "x")


@pytest.mark.parametrize("uri, kind, drive_id", [
    ("https://drive.google.com/drive/folders/1BHGCeHRZU7MQF3rsqXBIOCU2WIC3W6fb", "folder",
     "1BHGCeHRZU7MQF3rsqXBIOCU2WIC3W6fb"),
    ("https://drive.google.com/drive/u/0/folders/1exENF9Qc5UtXnHlNl9fvaxP3zyyH32qp?usp=sharing",
     "folder", "1exENF9Qc5UtXnHlNl9fvaxP3zyyH32qp"),
    ("https://drive.google.com/file/d/1AbCdEfGhIjKlMn_-123/view?usp=sharing", "file",
     "1AbCdEfGhIjKlMn_-123"),
    ("https://drive.google.com/uc?export=download&id=1AbCdEfGhIjKlMn_-123", "file",
     "1AbCdEfGhIjKlMn_-123"),
    ("122YK0IElSnGZbPMigXrduTVL1geB4wEW", "folder", "122YK0IElSnGZbPMigXrduTVL1geB4wEW"),
])
def test_drive_uri_parsing(uri, kind, drive_id):
    target = parse_drive_uri(uri)
    assert (target.kind, target.id) == (kind, drive_id)


def test_drive_errors_name_the_uri(tmp_path, monkeypatch):
    with pytest.raises(DownloadError, match="not a Google Drive"):
        parse_drive_uri("https://example.com/folders/1BHGCeHRZU7MQF3rsqXB")
    # A closed local port as proxy: gdown fails at once, as without network.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    uri = "https://drive.google.com/drive/folders/1BHGCeHRZU7MQF3rsqXBIOCU2WIC3W6fb"
    out = tmp_path / "raw" / "qqp"
    with pytest.raises(DownloadError, match=rf"{uri}: Google Drive download failed"):
        download_task("qqp", _task("gdrive", uri), out)
    _assert_nothing_written(out)
