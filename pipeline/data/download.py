"""The `download` stage: fetch a task's raw `train/valid/test.jsonl` into `data/raw/<task>`.

Source kinds (`SourceConfig.kind`):
    builtin  the project's own generator named by `uri` (no network)
    gdrive   a Google Drive folder (the authors' release) or file (an archive), through gdown
    url      http(s):// or file:// URL of an archive (.tar.gz, .tgz, .tar, .zip) holding the
             three splits, or of a folder: `<url>/train.jsonl` etc.
    local    a folder or archive on disk
An archive may hold the splits at its top or inside one top folder. `sha256`, when given, is the
checksum of the archive, or for a folder (and builtin) `jsonl.splits_sha256` of its splits.
The output folder is written atomically: on any error nothing is left at the target.
"""

from __future__ import annotations

import http.client
import logging
import re
import shutil
import stat
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from pipeline.config import GeneratorConfig, SourceConfig, TaskConfig
from pipeline.data.jsonl import MULTIREF_FILE, SPLITS, split_path, splits_sha256
from pipeline.data.synthetic import generate_task
from pipeline.io import atomic_dir, sha256_file, write_json
from pipeline.lookup import lookup

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz", ".zip")
GENERATORS: dict[str, Callable[[Path, GeneratorConfig], None]] = {"minipara": generate_task}
URL_TIMEOUT_S = 60
PROGRESS_MIN_BYTES = 1 << 20  # smaller downloads get no progress bar


class DownloadError(RuntimeError):
    """A source that cannot be fetched or is not what it claims; the message names the URL/path."""


def is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


# --- fetching: each fetcher puts an archive file or a folder under `work` and returns it ---------

def _fetch_builtin(source: SourceConfig, work: Path) -> Path:
    generate = lookup(GENERATORS, source.uri, "builtin source", DownloadError)
    generate(work / source.uri, source.generator or GeneratorConfig())
    return work / source.uri


def _copy_stream(response, target: Path, label: str) -> None:
    """Copy an HTTP/file response to `target` with a progress bar for large files."""
    from tqdm import tqdm

    length = response.headers.get("Content-Length")
    total = int(length) if length and length.isdigit() else None
    with open(target, "wb") as handle, tqdm(
            total=total, unit="B", unit_scale=True, desc=label,
            disable=total is not None and total < PROGRESS_MIN_BYTES) as bar:
        while block := response.read(1 << 20):
            handle.write(block)
            bar.update(len(block))


def fetch_url(url: str, target: Path) -> Path:
    """Download one URL to `target`; HTTP errors and unreachable hosts raise DownloadError."""
    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT_S) as response:
            _copy_stream(response, target, Path(urllib.parse.urlparse(url).path).name)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: HTTP error {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"{url}: cannot be reached ({reason})") from exc
    return target


def _fetch_url_source(source: SourceConfig, work: Path) -> Path:
    url = source.uri
    if urllib.parse.urlparse(url).scheme not in ("http", "https", "file"):
        raise DownloadError(f"{url}: not an http(s):// or file:// URL")
    path = urllib.parse.urlparse(url).path
    if is_archive(path):
        return fetch_url(url, work / ("archive" + _suffix(path)))
    folder = work / "folder"
    folder.mkdir()
    for name in [f"{split}.jsonl" for split in SPLITS] + [MULTIREF_FILE]:
        try:
            fetch_url(f"{url.rstrip('/')}/{name}", folder / name)
        except DownloadError:
            if name != MULTIREF_FILE:
                raise
    return folder


def _fetch_local(source: SourceConfig, work: Path) -> Path:
    path = Path(source.uri).expanduser()
    if path.is_dir() or (path.is_file() and is_archive(path.name)):
        return path
    if path.is_file():
        raise DownloadError(f"{path}: not a folder nor an archive ({', '.join(ARCHIVE_SUFFIXES)})")
    raise DownloadError(f"{path}: no such file or folder")


def local_source_files(source: SourceConfig) -> list[Path]:
    """The files on this machine that a task's data come from (a local folder's splits, a local
    archive, a file:// URL's), so that the engines rerun the download job when one is edited;
    none for a remote or generated source, or a path that does not exist (the job says so)."""
    if source.kind == "url" and urllib.parse.urlparse(source.uri).scheme == "file":
        path = Path(urllib.parse.unquote(urllib.parse.urlparse(source.uri).path))
    elif source.kind == "local":
        path = Path(source.uri).expanduser()
    else:
        return []
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    entries = [p for p in path.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    if not any(split_path(path, s).is_file() for s in SPLITS) and len(entries) == 1 \
            and entries[0].is_dir():
        path = entries[0]
    return [f for f in (split_path(path, s) for s in SPLITS) if f.is_file()] + \
        [f for f in [path / MULTIREF_FILE] if f.is_file()]


def _suffix(name: str) -> str:
    return next(s for s in ARCHIVE_SUFFIXES if name.lower().endswith(s))


@dataclass(frozen=True)
class DriveTarget:
    """A Google Drive item: `kind` "folder" or "file", and its id."""

    kind: str
    id: str


_DRIVE_ID = r"([A-Za-z0-9_-]{10,})"
_DRIVE_PATTERNS = (("folder", re.compile(rf"/folders/{_DRIVE_ID}")),
                   ("file", re.compile(rf"/file/d/{_DRIVE_ID}")),
                   ("file", re.compile(rf"[?&]id={_DRIVE_ID}")))


def parse_drive_uri(uri: str) -> DriveTarget:
    """The folder or file a Google Drive URL (or a bare id, taken as a folder) points to.

    Accepts .../drive/folders/<id>, .../drive/u/0/folders/<id>?usp=sharing, .../file/d/<id>/view,
    .../open?id=<id>, .../uc?id=<id> and a bare id.
    """
    uri = uri.strip()
    if re.fullmatch(_DRIVE_ID, uri):
        return DriveTarget("folder", uri)
    host = urllib.parse.urlparse(uri).netloc
    if host.endswith("google.com"):
        for kind, pattern in _DRIVE_PATTERNS:
            if match := pattern.search(uri):
                return DriveTarget(kind, match.group(1))
    raise DownloadError(f"{uri}: not a Google Drive folder/file URL nor an id")


def _fetch_gdrive(source: SourceConfig, work: Path) -> Path:
    import gdown

    target = parse_drive_uri(source.uri)
    output = work / "gdrive"
    try:
        if target.kind == "folder":
            result = gdown.download_folder(id=target.id, output=str(output), quiet=False)
        else:
            output.mkdir()
            result = gdown.download(id=target.id, output=f"{output}/", quiet=False)
    except Exception as exc:  # gdown raises many types (requests, its own, parsing); name the URL
        raise DownloadError(f"{source.uri}: Google Drive download failed "
                            f"({type(exc).__name__}: {exc})") from exc
    if not result:
        raise DownloadError(f"{source.uri}: Google Drive download returned nothing")
    return output if target.kind == "folder" else Path(result)


FETCHERS: dict[str, Callable[[SourceConfig, Path], Path]] = {
    "builtin": _fetch_builtin, "gdrive": _fetch_gdrive, "url": _fetch_url_source,
    "local": _fetch_local}


# --- archives and split folders ------------------------------------------------------------------

def _unsafe_reason(name: str, is_link: bool, is_regular: bool) -> str | None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in path.parts:
        return "'..' escapes the target folder"
    if is_link:
        return "links are not allowed"
    if not is_regular:
        return "not a regular file or folder"
    return None


def extract_archive(archive: Path, dest: Path, label: str) -> None:
    """Extract a tar or zip archive into `dest`, refusing any entry that could land outside it."""
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    _check_entry(info.filename, stat.S_ISLNK(info.external_attr >> 16), True, label)
                zf.extractall(dest)
            return
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                _check_entry(member.name, member.issym() or member.islnk(),
                             member.isfile() or member.isdir(), label)
            tf.extractall(dest, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile) as exc:
        raise DownloadError(f"{label}: not a readable archive ({exc})") from exc


def _check_entry(name: str, is_link: bool, is_regular: bool, label: str) -> None:
    if reason := _unsafe_reason(name, is_link, is_regular):
        raise DownloadError(f"{label}: unsafe archive entry '{name}': {reason}")


def find_split_folder(folder: Path, label: str) -> Path:
    """The folder holding the splits: `folder` or its only top folder; else name what is missing."""
    entries = [p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    has_splits = any(split_path(folder, s).is_file() for s in SPLITS)
    if not has_splits and len(entries) == 1 and entries[0].is_dir():
        folder = entries[0]
    missing = [s for s in SPLITS if not split_path(folder, s).is_file()]
    if missing:
        raise DownloadError(f"{label}: missing split(s) {', '.join(missing)} "
                            f"(expected {', '.join(f'{s}.jsonl' for s in missing)})")
    return folder


def _verify(got: str, expected: str | None, label: str) -> str:
    if expected is not None and got != expected.strip().lower():
        raise DownloadError(f"{label}: sha256 mismatch: expected {expected}, got {got}")
    return got


def _unpack(fetched: Path, work: Path, expected: str | None, label: str) -> tuple[Path, str]:
    """The folder of the splits and the source's checksum: of the archive (checked before it is
    opened), or of the folder's splits."""
    if fetched.is_dir():
        folder = find_split_folder(fetched, label)
        return folder, _verify(splits_sha256(folder), expected, label)
    checksum = _verify(sha256_file(fetched), expected, label)
    extracted = work / "extracted"
    extracted.mkdir()
    extract_archive(fetched, extracted, label)
    return find_split_folder(extracted, label), checksum


def _origin(source: SourceConfig, fetched: Path, copied_from: Path) -> str:
    """Where the user can find a split file: their own path, or the archive/URL and the member
    (a bad line is reported there, not in the project's copy)."""
    if source.kind == "builtin":
        return f"{copied_from.name} generated by '{source.uri}'"
    if fetched.is_dir() and source.kind == "local":
        return str(copied_from)
    if fetched.is_dir():
        return f"{source.uri.rstrip('/')}/{copied_from.name}"
    return f"{source.uri} ({copied_from.relative_to(fetched.parent / 'extracted')})"


def download_task(name: str, task: TaskConfig, out_dir: Path) -> None:
    """Fetch a task's raw splits into `out_dir` (the `download` stage).

    Writes train/valid/test.jsonl, test_multiref.jsonl when the source has one, and source.json
    (kind, uri, checksums, time). Raises DownloadError naming the URL or path on a bad source.
    """
    source = task.source
    fetch = lookup(FETCHERS, source.kind, "source kind", DownloadError)
    out_dir = Path(out_dir)
    label = f"task '{name}': {source.uri}"
    started = time.monotonic()
    with atomic_dir(out_dir) as tmp, tempfile.TemporaryDirectory(
            prefix=f".{out_dir.name}.fetch-", dir=out_dir.parent) as work:
        fetched = fetch(source, Path(work))
        folder, checksum = _unpack(fetched, Path(work), source.sha256, label)
        names = [f"{s}.jsonl" for s in SPLITS]
        if (folder / MULTIREF_FILE).is_file():
            names.append(MULTIREF_FILE)
        for file_name in names:
            shutil.copyfile(folder / file_name, tmp / file_name)
        write_json(tmp / "source.json", {
            "task": name, "kind": source.kind, "uri": source.uri, "sha256": checksum,
            "files": {n: sha256_file(tmp / n) for n in names},
            "origins": {n: _origin(source, fetched, folder / n) for n in names},
            "downloaded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - started, 3)})
    log.info("downloaded %s from %s (%s)", name, source.uri, source.kind)
