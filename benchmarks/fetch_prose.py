"""Unlabelled English prose for the transfer-set benchmark, from Debian packages.

    python benchmarks/fetch_prose.py              # -> runs/prose/prose.txt (one text per line)

Fetches with ``apt-get download`` (no hub, no repo copy: the output is git-ignored and never
shipped) and extracts:

* ``r-cran-janeaustenr``: Jane Austen's six novels (the package's R lazy-load database: each
  object is a zlib-compressed, XDR-serialised character vector of lines, read here directly);
* ``dict-gcide``: the quotations in the 1913 Webster (indented blocks ending in ``--Author.``);
* ``fortunes``: the fortune cookies (``%``-separated), the plain-prose files only.

Paragraphs are split into sentences; texts of 3-60 words are kept, duplicates dropped.
"""
from __future__ import annotations

import argparse
import gzip
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("r-cran-janeaustenr", "dict-gcide", "fortunes")
# fortune files that are prose (not ascii-art, code, riddles with answers on other lines)
FORTUNES = ("wisdom", "literature", "people", "work", "love", "fortunes", "humorists", "men-women",
            "pets", "food", "politics", "platitudes", "education", "science", "art")
_SENTENCE = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z])")


def _unpack(work: Path) -> Path:
    subprocess.run(["apt-get", "download", *PACKAGES], cwd=work, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = work / "root"
    for deb in work.glob("*.deb"):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def _r_strings(blob: bytes) -> list[str]:
    """The character vector in one XDR-serialised R object (format 2 or 3)."""
    if blob[:2] != b"X\n":
        return []
    i = 2
    version = struct.unpack(">i", blob[i:i + 4])[0]
    i += 12
    if version == 3:
        i += 4 + struct.unpack(">i", blob[i:i + 4])[0]  # native encoding name
    flags, n = struct.unpack(">Ii", blob[i:i + 8])
    i += 8
    if flags & 0xFF != 16:  # not a STRSXP
        return []
    out = []
    for _ in range(n):
        size = struct.unpack(">i", blob[i + 4:i + 8])[0]
        i += 8
        if size >= 0:
            out.append(blob[i:i + size].decode("utf-8", "replace"))
            i += size
    return out


def austen(root: Path) -> Iterator[str]:
    rdb = next(root.rglob("janeaustenr/data/Rdata.rdb")).read_bytes()
    pos = 0
    while pos < len(rdb):
        d = zlib.decompressobj()
        lines = _r_strings(d.decompress(rdb[pos + 4:]))
        pos = len(rdb) - len(d.unused_data)
        para: list[str] = []
        for line in [*lines, ""]:
            if line.strip():
                para.append(line.strip())
            elif para:
                yield " ".join(para).replace("_", "")
                para = []


def gcide(root: Path) -> Iterator[str]:
    with gzip.open(next(root.rglob("gcide.dict.dz"))) as fh:  # dictzip is gzip
        text = fh.read().decode("utf-8", "replace")
    block: list[str] = []
    for line in text.splitlines():
        if line.startswith(" " * 10) and not line.strip().startswith("["):
            block.append(line.strip())
            if re.search(r"--[A-Z][\w. ]*\.?$", line):
                quote = re.sub(r"\s*--[A-Z][\w. ]*\.?$", "", " ".join(block))
                if not re.search(r"[\[\]{}\\]", quote):  # markup, pronunciations
                    yield quote
                block = []
        else:
            block = []


def fortunes(root: Path) -> Iterator[str]:
    folder = next(root.rglob("games/fortunes"))
    for name in FORTUNES:
        f = folder / name
        if f.is_file():
            for cookie in f.read_text("utf-8", "replace").split("\n%\n"):
                body = re.split(r"\n\s*--", cookie)[0]  # drop the attribution
                yield " ".join(body.split())


def sentences(paragraphs: Iterator[str]) -> Iterator[str]:
    for p in paragraphs:
        for s in _SENTENCE.split(p):
            s = " ".join(s.split())
            if 3 <= len(s.split()) <= 60 and "\t" not in s:
                yield s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "prose" / "prose.txt")
    args = ap.parse_args(argv)
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        sys.exit("error: needs apt-get and dpkg-deb (a Debian or Ubuntu machine)")
    with tempfile.TemporaryDirectory() as tmp:
        root = _unpack(Path(tmp))
        seen: set[str] = set()
        counts = {}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        part = args.out.with_suffix(".part")
        with open(part, "w", encoding="utf-8") as fh:
            for name, source in (("austen", austen), ("gcide", gcide), ("fortunes", fortunes)):
                rows = words = 0
                for s in sentences(source(root)):
                    if s not in seen:
                        seen.add(s)
                        fh.write(s + "\n")
                        rows, words = rows + 1, words + len(s.split())
                counts[name] = (rows, words)
        part.replace(args.out)
    for name, (rows, words) in counts.items():
        print(f"{name:9s} {rows:8,d} texts {words:10,d} words")
    print(f"wrote {args.out}: {sum(r for r, _ in counts.values()):,} texts,"
          f" {sum(w for _, w in counts.values()):,} words")
    return 0


if __name__ == "__main__":
    sys.exit(main())
