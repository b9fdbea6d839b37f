"""Named datasets: where each comes from, where it is looked for, how a download is checked.

Where a named dataset is looked for, in order:

1. ``root/<name>/`` (default root: :func:`default_root`), processed split
   files ``train.txt`` / ``test.txt``;
2. the offline mirror named by the environment variable ``HASHREC_DATA_DIR``
   (``$HASHREC_DATA_DIR/<name>/train.txt`` and ``test.txt``), split used as is;
3. the official source, downloaded into ``root/<name>/`` with a progress bar,
   checked (the MD5 GroupLens publishes beside its zip; the interaction
   counts the LightGCN paper publishes for its splits) and moved into place
   atomically.

:func:`load_dataset` also reads any folder of split files
(:func:`load_split_folder`, files in the formats of
:mod:`hashrec_utils.data.formats`) and makes the ``synthetic`` dataset.
:func:`item_titles` finds the titles GroupLens ships beside its ratings.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..utils import atomic_write
from .core import InteractionData, _split_frame, _with_valid, from_pairs, synthetic_interactions
from .formats import _check_format, _parse_grouplens, _read_interactions, write_lightgcn_file
from .netflix import load_netflix

__all__ = [
    "Source",
    "DATASETS",
    "load_dataset",
    "load_split_folder",
    "default_root",
    "dataset_folder",
    "item_titles",
    "read_grouplens_zip",
]

_LIGHTGCN_RAW = "https://raw.githubusercontent.com/gusye1234/LightGCN-PyTorch/master/data"


@dataclass(frozen=True)
class Source:
    """Where a named dataset comes from and how a download is checked."""

    kind: str  # "grouplens-zip" | "lightgcn-split" | "netflix" | "synthetic"
    urls: tuple[str, ...] = ()
    md5_url: str | None = None
    counts: tuple[int, int, int] | None = None  # users, items, interactions (published)


DATASETS: dict[str, Source] = {
    "ml-1m": Source(
        "grouplens-zip",
        ("https://files.grouplens.org/datasets/movielens/ml-1m.zip",),
        md5_url="https://files.grouplens.org/datasets/movielens/ml-1m.zip.md5",
        counts=(6040, 3706, 1000209),
    ),
    "gowalla": Source(
        "lightgcn-split",
        (f"{_LIGHTGCN_RAW}/gowalla/train.txt", f"{_LIGHTGCN_RAW}/gowalla/test.txt"),
        counts=(29858, 40981, 1027370),
    ),
    "yelp2018": Source(
        "lightgcn-split",
        (f"{_LIGHTGCN_RAW}/yelp2018/train.txt", f"{_LIGHTGCN_RAW}/yelp2018/test.txt"),
        counts=(31668, 38048, 1561406),
    ),
    "amazon-book": Source(
        "lightgcn-split",
        (f"{_LIGHTGCN_RAW}/amazon-book/train.txt", f"{_LIGHTGCN_RAW}/amazon-book/test.txt"),
        counts=(52643, 91599, 2984108),
    ),
    "netflix": Source("netflix", counts=(480189, 17770, 100480507)),
    "synthetic": Source("synthetic"),
}


def default_root() -> Path:
    """``$HASHREC_DATA_ROOT`` if set, else ``data/`` of this repository."""
    env = os.environ.get("HASHREC_DATA_ROOT")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "data"  # hashrec_utils/data/sources.py -> the repository


# --------------------------------------------------------------------------
# Named datasets
# --------------------------------------------------------------------------

def load_dataset(
    name_or_folder: str | os.PathLike,
    root: str | os.PathLike | None = None,
    *,
    valid_fraction: float = 0.1,
    seed: int = 0,
    download: bool = True,
    n_users: int = 1000,
    n_items: int = 500,
    n_interactions: int = 20000,
    format: str = "auto",
) -> InteractionData:
    """Load a named dataset or a folder of split files as :class:`InteractionData`.

    ``valid`` is carved per user from train with ``seed`` (``valid_fraction``
    of each user's train items); ``valid_fraction=0`` keeps a published split
    intact (``valid`` empty). ``n_users``, ``n_items``, ``n_interactions``
    size the ``synthetic`` dataset. See the module docstring for the lookup
    order of named datasets.

    ``format``: the format of the split files (``"auto"`` or one of
    :data:`FORMATS`). A folder's files are detected with ``"auto"``; a named
    dataset's ``train.txt`` / ``test.txt`` are LightGCN lines unless ``format``
    says otherwise (``netflix`` takes only ``"auto"`` or ``"netflix"``,
    ``synthetic`` only ``"auto"``).
    """
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1); got {valid_fraction}")
    _check_format(format)
    key = str(name_or_folder)
    if key not in DATASETS:
        folder = Path(key)
        if folder.is_dir():
            return _with_valid(load_split_folder(folder, format=format), valid_fraction, seed)
        raise ValueError(
            f"unknown dataset {key!r}: give one of {', '.join(DATASETS)} or a folder holding train/test files"
        )
    source = DATASETS[key]
    if format != "auto" and (source.kind == "synthetic" or (source.kind == "netflix") != (format == "netflix")):
        raise ValueError(f"format={format!r} does not apply to the {key} dataset (give format='auto')")
    split_format = "lightgcn" if format == "auto" else format
    if source.kind == "synthetic":
        frame = synthetic_interactions(n_users, n_items, n_interactions, seed=seed)
        data = _split_frame(key, frame, 0.2, seed)
        return _with_valid(data, valid_fraction, seed)
    root_dir = Path(root) if root is not None else default_root()
    if source.kind == "netflix":
        for folder in [*_candidate_folders(key, root_dir), root_dir]:
            if any(folder.glob("combined_data_*.txt")):
                return _with_valid(load_netflix(folder, seed=seed), valid_fraction, seed)
        raise ValueError(
            f"netflix: no combined_data_*.txt under {root_dir / key}, {root_dir} or $HASHREC_DATA_DIR/netflix; "
            "the Netflix Prize files are not distributed any more: put them in a folder and pass root=FOLDER"
        )
    found = dataset_folder(key, root_dir)
    if found is not None:
        return _with_valid(load_split_folder(found, name=key, format=split_format), valid_fraction, seed)
    if not download:
        raise ValueError(f"{key}: not found under {root_dir} or $HASHREC_DATA_DIR, and download=False")
    target = root_dir / key
    _download_dataset(key, source, target, seed)  # writes LightGCN lines whatever ``format`` says
    return _with_valid(load_split_folder(target, name=key, format="lightgcn"), valid_fraction, seed)


def dataset_folder(name_or_folder: str | os.PathLike, root: str | os.PathLike | None = None) -> Path | None:
    """The folder :func:`load_dataset` reads the split files of ``name_or_folder`` from.

    A folder: itself. A named split dataset: the first of ``root/<name>/`` and
    ``$HASHREC_DATA_DIR/<name>/`` holding ``train.txt`` and ``test.txt``; ``None``
    when neither does (not downloaded yet), for ``synthetic`` and for ``netflix``.
    """
    key = str(name_or_folder)
    if key not in DATASETS:
        return Path(key) if Path(key).is_dir() else None
    if DATASETS[key].kind in ("synthetic", "netflix"):
        return None
    root_dir = Path(root) if root is not None else default_root()
    for folder in _candidate_folders(key, root_dir):
        if (folder / "train.txt").is_file() and (folder / "test.txt").is_file():
            return folder
    return None


def item_titles(data: InteractionData, folder: str | os.PathLike | None) -> dict[int, str] | None:
    """Titles of ``data``'s items from a GroupLens ``movies.dat`` beside the dataset, else ``None``.

    Looks for ``folder/movies.dat``, then ``movies.dat`` in the folder above
    (``data/ml-1m/`` or ``data/``); lines ``MovieID::Title::Genres``, latin-1.
    Returns ``{raw item id: title}`` for every id in ``data.item_ids`` (the ids the
    split files carry), or ``None`` when there is no such file or it does not name
    every item (ids that are not MovieLens movie ids, such as the offline
    mirror's 0-based ids, are not given titles they do not have). A malformed
    line is a ``ValueError`` naming file and line.
    """
    path = _titles_file(folder)
    if path is None:
        return None
    titles: dict[int, str] = {}
    with open(path, "r", encoding="latin-1") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\r\n").split("::")
            if len(parts) < 2 or not parts[0].strip().isdigit():
                raise ValueError(f"{path}:{lineno}: expected MovieID::Title::Genres, got {line.strip()!r}")
            titles[int(parts[0])] = parts[1].strip()
    ids = [int(i) for i in data.item_ids]
    if not ids or any(i not in titles for i in ids):
        return None
    return {i: titles[i] for i in ids}


def _titles_file(folder: str | os.PathLike | None) -> Path | None:
    if folder is None:
        return None
    folder = Path(folder)
    for candidate in (folder / "movies.dat", folder.parent / "movies.dat"):
        if candidate.is_file():
            return candidate
    return None


def _candidate_folders(name: str, root: Path) -> list[Path]:
    folders = [root / name]
    mirror = os.environ.get("HASHREC_DATA_DIR")
    if mirror:
        folders.append(Path(mirror) / name)
    return folders


def load_split_folder(folder: str | os.PathLike, name: str | None = None, format: str = "auto") -> InteractionData:
    """Read a folder holding ``train`` and ``test`` files (and optionally ``valid``).

    File names tried, for each of ``train``, ``test``, ``valid``: ``train.txt``,
    ``train.csv``, ``train.tsv``, ``train.dat``, ``train.inter``, ``train``, then
    RecBole's ``NAME.train.inter``. ``format`` applies to every file; with
    ``"auto"`` each file is detected on its own, and a test or valid file that is
    ambiguous alone (one line per user of 3-4 integer tokens) is read in the
    format detected for the train file.
    """
    folder = Path(folder)
    _check_format(format)

    def find(stem: str) -> Path | None:
        for suffix in (".txt", ".csv", ".tsv", ".dat", ".inter", ""):
            candidate = folder / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
        recbole = sorted(p for p in folder.glob(f"*.{stem}.inter") if p.is_file())
        if len(recbole) > 1:
            raise ValueError(f"{folder}: several {stem} files ({', '.join(p.name for p in recbole)}); keep one")
        return recbole[0] if recbole else None

    train_path, test_path, valid_path = find("train"), find("test"), find("valid")
    if train_path is None or test_path is None:
        raise ValueError(
            f"{folder}: a dataset folder needs a train and a test file "
            "(train.txt / train.csv / train.tsv / train.inter / NAME.train.inter, likewise test)"
        )
    train, fmt = _read_interactions(train_path, format)
    test = _read_interactions(test_path, format, fallback=fmt)[0]
    valid = _read_interactions(valid_path, format, fallback=fmt)[0] if valid_path else None
    return from_pairs(name or folder.name, train, test, valid, sources=(str(train_path), str(test_path)))


# --------------------------------------------------------------------------
# Downloads
# --------------------------------------------------------------------------

def _fetch(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` with a tqdm bar; atomic; checks the length."""
    from tqdm.auto import tqdm

    try:
        response = urllib.request.urlopen(url, timeout=60)
    except (urllib.error.URLError, OSError) as exc:
        raise ConnectionError(
            f"cannot download {url} ({exc}). Offline? Point the environment variable "
            "HASHREC_DATA_DIR at a mirror folder (see README) or put the files under data/."
        ) from None
    expected = int(response.headers.get("Content-Length") or 0)
    got = 0
    with response, atomic_write(dest, "wb") as out, tqdm(
        total=expected or None, unit="B", unit_scale=True, desc=dest.name
    ) as bar:
        while chunk := response.read(1 << 20):
            out.write(chunk)
            got += len(chunk)
            bar.update(len(chunk))
        if expected and got != expected:
            raise ValueError(f"{url}: truncated download ({got} of {expected} bytes)")


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _download_dataset(name: str, source: Source, target: Path, seed: int) -> None:
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        if source.kind == "grouplens-zip":
            archive = staging / "ml-1m.zip"
            _fetch(source.urls[0], archive)
            if source.md5_url:
                md5_file = staging / "ml-1m.zip.md5"
                _fetch(source.md5_url, md5_file)
                expected = md5_file.read_text().split()[-1 if "=" in md5_file.read_text() else 0].strip()
                if _md5(archive) != expected.lower():
                    raise ValueError(f"{archive}: checksum mismatch (md5 {_md5(archive)}, published {expected})")
                md5_file.unlink()
            _grouplens_zip_to_split(archive, staging, seed)
            archive.unlink()
        elif source.kind == "lightgcn-split":
            for url in source.urls:
                _fetch(url, staging / url.rsplit("/", 1)[1])
        data = load_split_folder(staging, name=name, format="lightgcn")
        if source.counts:
            got = (data.n_users, data.n_items, data.n_interactions)
            if got != source.counts:
                raise ValueError(
                    f"{name}: downloaded files have {got[0]} users, {got[1]} items, {got[2]} "
                    f"interactions; published {source.counts}: corrupt or truncated download"
                )
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_grouplens_zip(archive: Path) -> pd.DataFrame:
    """``ratings.dat`` inside a GroupLens zip, as :func:`load_interactions` reads it."""
    try:
        with zipfile.ZipFile(archive) as zf:
            member = next((n for n in zf.namelist() if n.endswith("ratings.dat")), None)
            if member is None:
                raise ValueError(f"{archive}: no ratings.dat in the archive")
            text = zf.read(member).decode("latin-1")
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{archive}: truncated or corrupt zip archive ({exc})") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ValueError(f"{archive}: ratings.dat is empty")
    return _parse_grouplens(archive / member, lines)


def _grouplens_zip_to_split(archive: Path, folder: Path, seed: int) -> None:
    """Every rating an implicit interaction; 80/20 split per user with ``seed``."""
    frame = read_grouplens_zip(archive)
    data = _split_frame("ml-1m", frame, 0.2, seed)
    for part, matrix in (("train", data.train), ("test", data.test)):
        write_lightgcn_file(folder / f"{part}.txt", matrix, data.user_ids, data.item_ids)
    with zipfile.ZipFile(archive) as zf:  # the titles, for the explorer (item_titles)
        member = next((n for n in zf.namelist() if n.endswith("movies.dat")), None)
        if member is not None:
            with atomic_write(folder / "movies.dat", "wb") as fh:
                fh.write(zf.read(member))
