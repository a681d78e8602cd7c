"""Split files as people write them: encodings, byte-order marks, stray bytes, compressed or binary
files, and paths written as URIs. A line that cannot be read is dropped and counted as bad_csv_line
(``file:line``); a file that is not text stops with one line naming it.

Every split file is written here byte for byte; the one video is a real mp4.
"""

import codecs
import gzip
import io
import os
import zipfile

import numpy as np
import pytest
from iopath.common.file_io import PathHandler

import stica_slowfast.data  # noqa: F401  (registers the datasets)
from stica_slowfast.config import get_cfg
from stica_slowfast.engine.entry import main
from stica_slowfast.data.bad_input import TooManyBadVideosError
from stica_slowfast.data.datasets import (
    BadLineError,
    Hmdb51,
    Kinetics,
    read_hmdb51_split,
    read_kinetics_csv,
    read_ucf101_split,
)
from stica_slowfast.synthetic import write_video
from stica_slowfast.utils.io import PathManager

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

GOOD = "a.mp4 0\nsub/b.mp4 1\nvidéo.mp4 2\n"  # UTF-8, a non-ASCII name included


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    """videos/a.mp4: 8 grey frames at 25 fps, no audio."""
    root = tmp_path_factory.mktemp("split_files") / "videos"
    root.mkdir()
    write_video(str(root / "a.mp4"), np.full((8, 32, 32, 3), 100, np.uint8), fps=25)
    return root


def make_cfg(data_dir, **cfg_values):
    """A config whose Kinetics test split is read from ``data_dir``, with tiny clips and crops."""
    cfg = get_cfg()
    cfg.DATA.PATH_TO_DATA_DIR = str(data_dir)
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE, cfg.DATA.TARGET_FPS = 2, 1, 25
    cfg.DATA.TEST_CROP_SIZE = 16
    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = 1, 1
    cfg.MODEL.NUM_CLASSES = 3
    for key, value in cfg_values.items():
        group, name = key.split(".")
        cfg[group][name] = value
    return cfg


def read(path, prefix="/data"):
    """(items, bad-line messages) of a Kinetics csv."""
    bad = []
    items = read_kinetics_csv(str(path), prefix=prefix, num_classes=3, on_bad_line=bad.append)
    return items, bad


def expected(prefix="/data"):
    return [(f"{prefix}/a.mp4", 0), (f"{prefix}/sub/b.mp4", 1), (f"{prefix}/vidéo.mp4", 2)]


# ---------------------------------------------------------------------------------------------- #
# Encodings and byte-order marks
# ---------------------------------------------------------------------------------------------- #
def test_undecodable_and_nul_lines_are_counted_bad_lines_and_limited(tmp_path):
    # Windows line ends; line 2 holds a Latin-1 "é" (0xe9), line 4 a NUL byte inside the path.
    data = b"a.mp4 0\r\ncaf\xe9.mp4 1\r\nsub/b.mp4 1\r\nc\x00d.mp4 2\r\nvid\xc3\xa9o.mp4 2\r\n"
    (tmp_path / "test.csv").write_bytes(data)
    path = tmp_path / "test.csv"
    ds = Kinetics(make_cfg(tmp_path, **{"DATA_LOADER.MAX_BAD_FRACTION": 0.5}), "test")
    assert ds.items == expected(str(tmp_path))
    assert ds.bad_lines == [
        f"{path}:2: byte 0xe9 at column 4 is not valid UTF-8 (re-save the file as UTF-8)",
        f"{path}:4: NUL byte at column 2 (no path can hold one)"]
    # Counted against DATA_LOADER.MAX_BAD_FRACTION like any bad line: 2 of 5 lines > 0.3.
    with pytest.raises(TooManyBadVideosError,
                       match=rf"2 of the 5 lines .*bad_csv_line: 2.*{path}:2: byte 0xe9"):
        Kinetics(make_cfg(tmp_path, **{"DATA_LOADER.MAX_BAD_FRACTION": 0.3}), "test")
    # Without a handler the reader raises at the first one, naming file and line.
    with pytest.raises(BadLineError, match=f"^{path}:2: byte 0xe9"):
        read_kinetics_csv(str(path), prefix="", num_classes=3)


def test_utf8_byte_order_marks_are_not_part_of_a_path(tmp_path):
    # Excel's "CSV UTF-8" starts with a BOM; `cat a.csv b.csv` puts the second file's BOM mid-file.
    bom = codecs.BOM_UTF8
    (tmp_path / "k.csv").write_bytes(bom + b"a.mp4 0\n" + bom + "sub/b.mp4 1\nvidéo.mp4 2\n".encode())
    assert read(tmp_path / "k.csv") == (expected(), [])
    # classInd.txt is strict: a BOM before "1" must not make its first line malformed.
    (tmp_path / "classInd.txt").write_bytes(bom + b"1 Archery\r\n2 Bowling\r\n")
    (tmp_path / "testlist01.txt").write_bytes(bom + b"Archery/x.avi\r\nBowling/y.avi\r\n")
    assert read_ucf101_split(str(tmp_path), "test", split_id=1, prefix="/u", num_classes=2) == [
        ("/u/Archery/x.avi", 0), ("/u/Bowling/y.avi", 1)]


@pytest.mark.parametrize("codec,bom", [("utf-16-le", codecs.BOM_UTF16_LE),
                                       ("utf-16-be", codecs.BOM_UTF16_BE),
                                       ("utf-32-le", codecs.BOM_UTF32_LE)])
def test_utf16_and_utf32_with_a_byte_order_mark_are_read(tmp_path, codec, bom):
    # PowerShell 5's `>` and Notepad's "Unicode" write UTF-16 LE with a BOM and CRLF line ends.
    (tmp_path / "k.csv").write_bytes(bom + GOOD.replace("\n", "\r\n").encode(codec))
    assert read(tmp_path / "k.csv") == (expected(), [])


def test_a_bad_utf16_unit_spoils_only_its_line(tmp_path):
    # A lone high surrogate (0xd800) in line 2.
    data = codecs.BOM_UTF16_LE + "a.mp4 0\n".encode("utf-16-le") + b"x\x00\x00\xd8 \x001\x00\n\x00"
    (tmp_path / "k.csv").write_bytes(data + "sub/b.mp4 1\n".encode("utf-16-le"))
    items, bad = read(tmp_path / "k.csv")
    assert items == expected()[:2]
    assert bad == [f"{tmp_path / 'k.csv'}:2: bytes 0x00 0xd8 at column 2 are not valid UTF-16 "
                   f"(re-save the file as UTF-8)"]


def _zip(text):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("train.csv", text)
    return buffer.getvalue()


NOT_TEXT = {
    "gzip": (lambda: gzip.compress(GOOD.encode()), "gzip-compressed data (decompress it first"),
    "zip": (lambda: _zip(GOOD), "a zip archive"),
    "utf16_without_bom": (lambda: GOOD.encode("utf-16-le"),
                          "UTF-16 text without a byte-order mark (32 of its first 64 bytes are NUL)"),
    "binary": (lambda: bytes(range(256)) * 4 + bytes(512),
               "binary data (516 of its first 1536 bytes are NUL)"),
}


@pytest.mark.parametrize("kind", sorted(NOT_TEXT))
def test_a_file_that_is_not_text_is_one_line_naming_it(tmp_path, kind):
    make, what = NOT_TEXT[kind]
    (tmp_path / "k.csv").write_bytes(make())
    with pytest.raises(ValueError) as err:
        read(tmp_path / "k.csv")
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'k.csv'}: not a text file: it looks like {what}"), message
    assert "\n" not in message


def test_a_split_file_that_cannot_be_used_stops_run_net_with_one_line(tmp_path, capsys):
    (tmp_path / "train.csv").write_bytes(gzip.compress(b"a.mp4 0\n"))
    with pytest.raises(SystemExit) as stopped:
        main(["--cfg", os.path.join(REPO, "configs", "demo", "rho_byol_tiny.yaml"), "DATA.PATH_TO_DATA_DIR",
              str(tmp_path), "OUTPUT_DIR", str(tmp_path / "out"), "TENSORBOARD.ENABLE", "False"])
    assert stopped.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {tmp_path / 'train.csv'}: not a text file: it looks like gzip"), err[-3:]


def test_a_video_given_as_split_file_is_named_as_one(tmp_path, video_dir):
    # HMDB-51 reads every *_test_split1.txt: one of them is an mp4 renamed by mistake.
    name = tmp_path / "archery_test_split1.txt"
    name.write_bytes((video_dir / "a.mp4").read_bytes())
    with pytest.raises(ValueError, match=f"^{name}: not a text file: it looks like an MP4/MOV video"):
        read_hmdb51_split(str(tmp_path), "train", split_id=1, prefix="", num_classes=1)


# ---------------------------------------------------------------------------------------------- #
# Paths: file:// URIs and schemes served by iopath
# ---------------------------------------------------------------------------------------------- #
def test_file_uris_name_local_files(tmp_path, video_dir):
    spaced = tmp_path / "my videos"
    spaced.mkdir()
    (spaced / "a b.mp4").write_bytes((video_dir / "a.mp4").read_bytes())
    (spaced / "50%20off.mp4").write_bytes((video_dir / "a.mp4").read_bytes())  # a literal "%20"
    lines = [
        f"{(spaced / 'a b.mp4').as_uri()} 0",  # percent-encoded, as Path.as_uri writes it
        f"file://localhost{spaced / 'a b.mp4'} 1",
        f"file://{spaced / '50%20off.mp4'} 2",  # written by hand: only the undecoded name exists
        "file://server/share/a.mp4 0",  # another host: a bad line
        "rel.mp4 1",  # relative to PATH_TO_DATA_DIR, itself a file URI
    ]
    (tmp_path / "test.csv").write_text("\n".join(lines) + "\n")
    ds = Kinetics(make_cfg(tmp_path.as_uri(), **{"DATA_LOADER.MAX_BAD_FRACTION": 0.5}), "test")
    assert ds.items == [(str(spaced / "a b.mp4"), 0), (str(spaced / "a b.mp4"), 1),
                        (str(spaced / "50%20off.mp4"), 2), (str(tmp_path / "rel.mp4"), 1)]
    assert ds.bad_lines == [f"{tmp_path.as_uri()}/test.csv:4: file URI 'file://server/share/a.mp4' "
                            f"names host 'server'; only local files (file:///path) can be read"]
    for i in range(3):  # each decodes (test split: a failure would mark the sample invalid)
        sample = ds[i]
        assert sample["valid"] and sample["skipped"] == 0 and sample["video"][0].shape[1:] == (2, 16, 16)


def test_hmdb_directory_given_as_file_uri(tmp_path):
    (tmp_path / "brush_hair_test_split1.txt").write_text("x.avi 1\ny.avi 2\n")
    assert read_hmdb51_split(tmp_path.as_uri(), "train", split_id=1, prefix="/h", num_classes=1) == [
        ("/h/brush_hair/x.avi", 0)]


class DirHandler(PathHandler):
    """An iopath handler serving ``PREFIX<rel>`` from a local directory (as a remote store would)."""

    PREFIX = "stica-split-test://"

    def __init__(self, root):
        super().__init__()
        self.root = str(root)

    def _local(self, path):
        return os.path.join(self.root, path[len(self.PREFIX):])

    def _get_supported_prefixes(self):
        return [self.PREFIX]

    def _get_local_path(self, path, force=False, **kwargs):
        return self._local(path)

    def _open(self, path, mode="r", buffering=-1, **kwargs):
        return open(self._local(path), mode, buffering)

    def _exists(self, path, **kwargs):
        return os.path.exists(self._local(path))

    def _isfile(self, path, **kwargs):
        return os.path.isfile(self._local(path))

    def _isdir(self, path, **kwargs):
        return os.path.isdir(self._local(path))

    def _ls(self, path, **kwargs):
        return os.listdir(self._local(path))


@pytest.fixture
def served(tmp_path):
    """``tmp_path`` served by :class:`DirHandler` from the global PathManager for one test."""
    PathManager.register_handler(DirHandler(tmp_path))
    yield DirHandler.PREFIX
    PathManager._path_handlers.pop(DirHandler.PREFIX)  # iopath has no public unregister


def test_paths_of_a_registered_iopath_scheme_are_kept_and_decode(tmp_path, video_dir, served):
    os.symlink(video_dir, tmp_path / "videos")
    lines = f"a.mp4 1\n{served}videos/a.mp4 2\n"  # relative to DATA.PATH_PREFIX, and a full URI
    (tmp_path / "test.csv").write_bytes(codecs.BOM_UTF8 + lines.encode())
    cfg = make_cfg(f"{served}.", **{"DATA.PATH_PREFIX": f"{served}videos"})
    ds = Kinetics(cfg, "test")
    assert ds.items == [(f"{served}videos/a.mp4", 1), (f"{served}videos/a.mp4", 2)] and ds.bad_lines == []
    sample = ds[1]
    assert sample["valid"] and sample["skipped"] == 0 and sample["label"] == 2


def test_hmdb_split_through_a_registered_scheme(tmp_path, served):
    (tmp_path / "kick_test_split2.txt").write_bytes(b"x.avi 2\ny\xff.avi 2\n")
    bad = []
    items = read_hmdb51_split(served, "test", split_id=2, prefix=f"{served}v", num_classes=1,
                              on_bad_line=bad.append)
    assert items == [(f"{served}v/kick/x.avi", 0)]
    assert bad == [f"{served}kick_test_split2.txt:2: byte 0xff at column 2 is not valid UTF-8 "
                   f"(re-save the file as UTF-8)"]


def test_hmdb_dataset_keeps_counting_bad_lines(tmp_path):
    (tmp_path / "kick_test_split1.txt").write_bytes(b"x.avi 2\ny\xff.avi 2\nz.avi 2\n")
    cfg = make_cfg(tmp_path, **{"DATA_LOADER.MAX_BAD_FRACTION": 0.5, "MODEL.NUM_CLASSES": 1})
    cfg.STICA.DATA.SPLIT = 1
    ds = Hmdb51(cfg, "test")
    assert [p for p, _ in ds.items] == [str(tmp_path / "kick" / "x.avi"), str(tmp_path / "kick" / "z.avi")]
    assert len(ds.bad_lines) == 1 and ds.bad_lines[0].startswith(f"{tmp_path / 'kick_test_split1.txt'}:2: ")
