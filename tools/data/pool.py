"""Rebuild the extra real pretraining pool from its manifest and fetched git snapshots
(`mdnet-data pool-rebuild`).

`cluster/configs/pool-sources.tsv` names, one row per sequence, where each sequence of the pool was copied
from: a public repository (`source_repo`, owner/name), a folder inside it (`source_path`) and the
commit the snapshot was at (`commit`). `rebuild` writes every row's folder into `OUT/<dir>/` again
from local bare git directories, with unchanged file bytes:

- every file below `source_path` at `commit` is written, keeping its path relative to that folder,
  except OS junk that is no part of a benchmark (`Thumbs.db`, `.DS_Store`, `Picasa.ini`), symlinks and submodules;
- where `truncated_to` is set (N), only the first N frame images (natural name order, as the
  readers sort them) are kept, and every `groundtruth*.txt` keeps its first N lines (line endings
  unchanged). Other per-frame files (VOT `.tag`/`.label`, LaSOT flag files) stay whole, as the
  readers use only their first N values.

Mirrors are laid out as `fetch` lays out /work/.mirror: `MIRRORS/<owner>+<name>/repo` is the git
directory, or `MIRRORS/<owner>+<name>/repo/.git` for snapshots that came with a work tree.

Run: mdnet-data pool-rebuild --manifest cluster/configs/pool-sources.tsv --mirrors /work/.mirror \
        --out work/extpool
Standard library only; `git` must be on PATH.
"""
from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

# The columns of the manifest, in order.
COLUMNS = ("dir", "benchmark", "source_repo", "source_path", "commit", "frames", "gt_lines",
           "truncated_to", "notes")
# The frame image types the readers list (online/readers/common.py IMAGE_EXTS).
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
# Files a copy leaves out: written by a desktop OS, never part of a benchmark.
JUNK_NAMES = frozenset({"thumbs.db", ".ds_store", "desktop.ini", "picasa.ini"})
_GT_NAME = re.compile(r"groundtruth.*\.txt", re.IGNORECASE)
_SHA = re.compile(r"[0-9a-f]{40}")


class RebuildError(Exception):
    """A manifest row that cannot be rebuilt: the message names the manifest, repository or file."""


@dataclass(frozen=True)
class Source:
    dir: str                   # where the sequence goes, relative to the output root
    repo: str                  # owner/name
    path: str                  # folder inside the repository
    commit: str                # 40-hex commit
    frames: int                # frames the copy holds
    gt_lines: int              # ground-truth lines the copy holds
    truncated_to: Optional[int]  # keep the first N frames / gt lines, or None for all


def read_manifest(manifest: Path) -> list[Source]:
    """The manifest's rows, checked: known columns, a 40-hex commit, counts that are numbers."""
    try:
        text = manifest.read_text(encoding="utf-8")
    except OSError as e:
        raise RebuildError(f"{manifest}: cannot read the manifest ({e.strerror})") from None
    rows = list(csv.reader(text.splitlines(), delimiter="\t"))
    if not rows or tuple(rows[0]) != COLUMNS:
        raise RebuildError(f"{manifest}: the header must be the tab-separated columns {', '.join(COLUMNS)}")
    sources, seen = [], set()
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{manifest}:{lineno}"
        if len(row) != len(COLUMNS):
            raise RebuildError(f"{where}: {len(row)} columns, expected {len(COLUMNS)}")
        rec = dict(zip(COLUMNS, row))
        if not _SHA.fullmatch(rec["commit"]):
            raise RebuildError(f"{where}: commit {rec['commit']!r} is not 40 lower-case hex digits")
        if rec["source_repo"].count("/") != 1:
            raise RebuildError(f"{where}: source_repo {rec['source_repo']!r} is not owner/name")
        d = Path(rec["dir"])
        if d.is_absolute() or ".." in d.parts or not rec["dir"]:
            raise RebuildError(f"{where}: dir {rec['dir']!r} must be a relative path inside the pool")
        if rec["dir"] in seen:
            raise RebuildError(f"{where}: dir {rec['dir']!r} listed twice")
        seen.add(rec["dir"])
        try:
            frames, gt_lines = int(rec["frames"]), int(rec["gt_lines"])
            cut = int(rec["truncated_to"]) if rec["truncated_to"].strip() else None
        except ValueError:
            raise RebuildError(f"{where}: frames, gt_lines and truncated_to must be whole numbers") from None
        if cut is not None and cut <= 0:
            raise RebuildError(f"{where}: truncated_to must be positive")
        sources.append(Source(rec["dir"], rec["source_repo"], rec["source_path"].strip("/"),
                              rec["commit"], frames, gt_lines, cut))
    return sources


def find_git_dir(mirrors: Path, repo: str) -> Path:
    """The git directory of `repo` (owner/name) under `mirrors`, as /work/.mirror lays them out."""
    base = mirrors / repo.replace("/", "+")
    for cand in (base / "repo" / ".git", base / "repo", base):
        if (cand / "HEAD").is_file() and (cand / "objects").is_dir():
            return cand
    raise RebuildError(f"{repo}: no mirror at {base} (fetch github:{repo} first)")


def _git(git_dir: Path, *args: str, stdin: Optional[bytes] = None) -> bytes:
    proc = subprocess.run(["git", f"--git-dir={git_dir}", *args], input=stdin,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise RebuildError(f"{git_dir}: git {' '.join(args[:2])} failed: "
                           f"{proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _list_files(git_dir: Path, src: Source) -> list[tuple[str, str]]:
    """(path relative to source_path, blob id) of the regular files below the source folder."""
    check = subprocess.run(["git", f"--git-dir={git_dir}", "cat-file", "-e", f"{src.commit}^{{commit}}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if check.returncode != 0:
        raise RebuildError(f"{src.repo}: commit {src.commit} is not in the mirror {git_dir} "
                           f"(the snapshot is older or newer than the manifest)")
    out = _git(git_dir, "ls-tree", "-r", "-z", "--full-tree", src.commit, "--", src.path + "/")
    files = []
    for entry in filter(None, out.split(b"\0")):
        meta, path = entry.split(b"\t", 1)
        mode, kind, sha = meta.decode().split()
        rel = path.decode()[len(src.path) + 1:]
        if kind != "blob" or mode == "120000" or Path(rel).name.lower() in JUNK_NAMES:
            continue
        files.append((rel, sha))
    if not files:
        raise RebuildError(f"{src.repo}: no files under {src.path}/ at commit {src.commit}")
    return files


def _select(src: Source, files: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drop the frames past `truncated_to`; check the frame count against the manifest."""
    frames = sorted((f for f in files if f[0].lower().endswith(IMAGE_EXTS)), key=lambda f: _natural_key(f[0]))
    keep = frames if src.truncated_to is None else frames[:src.truncated_to]
    if len(keep) != src.frames:
        raise RebuildError(f"{src.repo}: {src.path}/ at {src.commit[:12]} gives {len(keep)} frames, "
                           f"the manifest row {src.dir} says {src.frames}")
    dropped = {f[0] for f in frames[len(keep):]}
    return [f for f in files if f[0] not in dropped]


def _cut_lines(data: bytes, n: int) -> bytes:
    """The first n lines of `data`, line endings as they are."""
    pos = 0
    for _ in range(n):
        nl = data.find(b"\n", pos)
        if nl < 0:
            return data
        pos = nl + 1
    return data[:pos]


def _read_blobs(git_dir: Path, shas: list[str]) -> dict[str, bytes]:
    """The contents of the given blobs, with one `git cat-file --batch`."""
    out = _git(git_dir, "cat-file", "--batch", stdin="".join(s + "\n" for s in shas).encode())
    blobs, pos = {}, 0
    for sha in shas:
        nl = out.index(b"\n", pos)
        header = out[pos:nl].decode().split()
        if len(header) != 3:
            raise RebuildError(f"{git_dir}: blob {sha} is missing ({' '.join(header)})")
        size = int(header[2])
        blobs[sha] = out[nl + 1:nl + 1 + size]
        pos = nl + 1 + size + 1
    return blobs


def rebuild_one(src: Source, mirrors: Path, out: Path) -> str:
    """Write one manifest row into out/<dir>/; returns a one-line summary."""
    git_dir = find_git_dir(mirrors, src.repo)
    files = _select(src, _list_files(git_dir, src))
    dest = out / src.dir
    if dest.exists() and any(dest.iterdir()):
        raise RebuildError(f"{dest}: already exists and is not empty (rebuild into a fresh folder)")
    blobs = _read_blobs(git_dir, sorted({sha for _, sha in files}))
    gt_lines = 0
    for rel, sha in files:
        data = blobs[sha]
        if _GT_NAME.fullmatch(Path(rel).name):
            if src.truncated_to is not None:
                data = _cut_lines(data, src.truncated_to)
            gt_lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    if gt_lines != src.gt_lines:
        raise RebuildError(f"{src.repo}: {src.path}/groundtruth at {src.commit[:12]} gives {gt_lines} "
                           f"lines, the manifest row {src.dir} says {src.gt_lines}")
    return f"{src.dir}: {src.frames} frames, {gt_lines} gt lines from {src.repo}@{src.commit[:12]}:{src.path}"


def rebuild(manifest: Path, mirrors: Path, out: Path) -> list[str]:
    """Write every sequence of `manifest` into out/<dir>/ from the git mirrors under `mirrors`.

    Returns one summary line per sequence. Raises RebuildError naming the manifest line,
    repository or file when a row is malformed, a mirror or commit is missing, or the copy does
    not give the frame and ground-truth counts the manifest records.
    """
    sources = read_manifest(Path(manifest))
    mirrors, out = Path(mirrors), Path(out)
    if not mirrors.is_dir():
        raise RebuildError(f"{mirrors}: the mirrors folder does not exist")
    return [rebuild_one(src, mirrors, out) for src in sources]


# ----------------------------------------------------------------------------------------------
# The training manifest shipped beside a model: where every domain it was trained on came from

TRAINING_COLUMNS = ("sequence", "benchmark", "source_repo", "source_path", "commit", "frames",
                    "frames_trained", "truncated_to", "pool_dir")


def read_sources(path: Path) -> list[dict]:
    """Rows of a pool manifest, in either layout: this project's (`commit` column) or
    ../shared/pool/MANIFEST.tsv's (`source_path` ending in @COMMIT)."""
    path = Path(path)
    try:
        rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines(), delimiter="\t"))
    except OSError as e:
        raise RebuildError(f"{path}: cannot read the manifest ({e.strerror})") from None
    out = []
    for lineno, r in enumerate(rows, start=2):
        if not r.get("dir") or not r.get("source_repo"):
            raise RebuildError(f"{path}:{lineno}: a row needs dir and source_repo")
        src, commit = r.get("source_path", ""), r.get("commit") or ""
        if not commit and "@" in src:
            src, commit = src.rsplit("@", 1)
        frames = r.get("frames", "")
        out.append({"dir": r["dir"], "benchmark": r.get("benchmark", ""), "source_repo": r["source_repo"],
                    "source_path": src, "commit": commit, "frames": int(frames) if frames.isdigit() else None,
                    "truncated_to": (r.get("truncated_to") or "").strip()})
    return out


def training_manifest(domains: list[str], sources: list[Path], val_fraction: float) -> list[dict]:
    """One row per trained domain: its source (from the pool manifests `sources`, matched by the
    last part of `dir`, case-insensitive; `Name-2` also matches a folder `Name` with two targets)
    and the frames trained on (the first 1 - val_fraction, as pretrain/domains.py splits them).
    A domain found in no manifest is an error naming it: a model must not ship with a gap."""
    import math

    by_name: dict[str, dict] = {}
    for path in sources:
        for row in read_sources(path):
            by_name.setdefault(Path(row["dir"]).name.lower(), row)
    rows, unknown = [], []
    for name in domains:
        key = name.lower()
        row = by_name.get(key) or by_name.get(re.sub(r"[-_.]?\d+$", "", key))
        if row is None:
            unknown.append(name)
            continue
        n = row["frames"]
        trained = None if n is None else n - int(math.floor(n * val_fraction + 1e-9))
        rows.append({"sequence": name, "benchmark": row["benchmark"], "source_repo": row["source_repo"],
                     "source_path": row["source_path"], "commit": row["commit"], "frames": n,
                     "frames_trained": trained, "truncated_to": row["truncated_to"], "pool_dir": row["dir"]})
    if unknown:
        raise RebuildError(f"{len(unknown)} trained domain(s) in none of the manifests "
                           f"{', '.join(map(str, sources))}: {', '.join(unknown)}")
    return rows


def manifest_text(rows: list[dict]) -> str:
    lines = ["\t".join(TRAINING_COLUMNS)]
    for r in rows:
        lines.append("\t".join("" if r[c] is None else str(r[c]) for c in TRAINING_COLUMNS))
    return "\n".join(lines) + "\n"


def add_parser(sub) -> None:
    """`mdnet-data pool-rebuild` (tools/data/cli.py registers it)."""
    p = sub.add_parser("pool-rebuild", help="rebuild the extra real pool from its manifest and git snapshots",
                       description=__doc__.split("\n\n")[0] + ". Writes every manifest row's sequence, "
                       "unchanged bytes, into OUT/<dir>/; exit status 1 naming the row, repository or file "
                       "when a mirror or commit is missing or a count differs from the manifest.")
    p.add_argument("--manifest", type=Path, default=Path("cluster/configs/pool-sources.tsv"),
                   help="the manifest (default: cluster/configs/pool-sources.tsv)")
    p.add_argument("--mirrors", type=Path, default=Path("/work/.mirror"),
                   help="folder of fetched git snapshots, OWNER+NAME/repo (default: /work/.mirror)")
    p.add_argument("--out", type=Path, required=True, help="pool root to write (a fresh folder)")
    p.set_defaults(func=_cmd)


def _cmd(args, out=sys.stdout) -> int:
    try:
        lines = rebuild(args.manifest, args.mirrors, args.out)
    except RebuildError as e:
        print(f"mdnet-data pool-rebuild: {e}", file=sys.stderr)
        return 1
    for line in lines:
        print(line, file=out)
    print(f"{len(lines)} sequences written under {args.out}", file=out)
    return 0
