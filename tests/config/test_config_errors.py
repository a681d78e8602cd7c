"""Config errors name the problem in one line: the file (and key) at fault, for ``_BASE_`` loops, bad
``_BASE_`` entries, missing files and files that are not YAML text, as a ConfigError, which
``tools/run_net.py`` prints as ``error: ...`` with exit status 2.
"""

import codecs
import gzip
import os
import subprocess
import sys

import pytest

from stica_slowfast.config import ConfigError, load_config, load_yaml_with_base
from stica_slowfast.config.args import load_config_from_args, parse_args

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write(path, content):
    """Write text or bytes to ``path`` (parents made); returns it as a str."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return str(path)


def config_error(*files, opts=()):
    """The one-line message of the ConfigError that loading ``files`` raises."""
    with pytest.raises(ConfigError) as err:
        load_config(list(files), list(opts))
    message = str(err.value)
    assert "\n" not in message, message
    return message


# ---------------------------------------------------------------------------------------------- #
# _BASE_
# ---------------------------------------------------------------------------------------------- #
def test_base_loop_names_the_file_and_the_chain(tmp_path):
    a = write(tmp_path / "a.yaml", "_BASE_: sub/b.yaml\nSOLVER:\n  BASE_LR: 0.1\n")
    b = write(tmp_path / "sub" / "b.yaml", "_BASE_: [c.yaml]\n")
    write(tmp_path / "sub" / "c.yaml", "_BASE_: ./../a.yaml\n")  # a.yaml spelled another way
    # Named: the file whose _BASE_ closes the loop; the chain relative to the first file's directory.
    assert config_error(a) == (f"{tmp_path / 'sub' / 'c.yaml'}: _BASE_ loop: "
                               f"a.yaml -> sub/b.yaml -> sub/c.yaml -> a.yaml")
    assert config_error(b) == f"{tmp_path / 'a.yaml'}: _BASE_ loop: b.yaml -> c.yaml -> ../a.yaml -> b.yaml"


def test_base_naming_its_own_file(tmp_path):
    same = write(tmp_path / "same.yaml", "_BASE_: same.yaml\n")
    assert config_error(same) == f"{same}: _BASE_ loop: same.yaml -> same.yaml"
    # Through a symbolic link: still the same file.
    os.symlink(tmp_path / "same.yaml", tmp_path / "link.yaml")
    linked = write(tmp_path / "other.yaml", "_BASE_: [link.yaml]\n")
    write(tmp_path / "same.yaml", "_BASE_: other.yaml\n")
    assert config_error(linked) == (f"{tmp_path / 'link.yaml'}: _BASE_ loop: "
                                    f"other.yaml -> link.yaml -> other.yaml")


def test_a_base_shared_twice_is_no_loop(tmp_path):
    write(tmp_path / "root.yaml", "SOLVER:\n  BASE_LR: 0.3\n  MAX_EPOCH: 2\n")
    write(tmp_path / "x.yaml", "_BASE_: root.yaml\nSOLVER:\n  MAX_EPOCH: 4\n")
    write(tmp_path / "y.yaml", "_BASE_: root.yaml\n")
    leaf = write(tmp_path / "leaf.yaml", "_BASE_: [x.yaml, y.yaml]\n")
    # y's copy of root comes last: its MAX_EPOCH wins over x's, as the merge order says.
    assert load_yaml_with_base(leaf) == {"SOLVER": {"BASE_LR": 0.3, "MAX_EPOCH": 2}}


@pytest.mark.parametrize("value,why", [
    ("3", "_BASE_ must be a file name or a list of file names, got int 3"),
    ("{a: b.yaml}", "_BASE_ must be a file name or a list of file names, got dict {'a': 'b.yaml'}"),
    ("[ok.yaml, 2.5]", "_BASE_ entry 2 of 2 must be a file name, got float 2.5"),
    ("[ok.yaml, [x.yaml]]", "_BASE_ entry 2 of 2 must be a file name, got list ['x.yaml']"),
    ("''", "_BASE_ must be a file name, got str ''"),
])
def test_base_entries_that_are_not_file_names(tmp_path, value, why):
    write(tmp_path / "ok.yaml", "SOLVER:\n  BASE_LR: 0.3\n")
    path = write(tmp_path / "bad.yaml", f"_BASE_: {value}\n")
    assert config_error(path) == f"{path}: {why}"


def test_missing_files(tmp_path):
    missing = str(tmp_path / "nope.yaml")
    assert config_error(missing) == f"{missing}: config file not found"
    leaf = write(tmp_path / "sub" / "leaf.yaml", "_BASE_: ../base/gone.yaml\n")
    assert config_error(leaf) == f"{leaf}: _BASE_ file not found: {tmp_path / 'base' / 'gone.yaml'}"
    assert config_error(str(tmp_path)) == f"{tmp_path}: cannot read the config file: Is a directory"


def test_a_key_is_named_with_the_file_that_sets_it(tmp_path):
    write(tmp_path / "base.yaml", "SOLVER:\n  BASE_LRR: 0.1\n")
    write(tmp_path / "typed.yaml", "TRAIN:\n  BATCH_SIZE: many\n")
    leaf = write(tmp_path / "leaf.yaml", "_BASE_: [base.yaml]\nTRAIN:\n  ENABLE: true\n")
    assert config_error(leaf) == (f"unknown config key SOLVER.BASE_LRR ({tmp_path / 'base.yaml'}); "
                                  f"did you mean SOLVER.BASE_LR?")
    leaf = write(tmp_path / "leaf2.yaml", "_BASE_: typed.yaml\nSOLVER:\n  BASE_LR: 0.2\n")
    assert "TRAIN.BATCH_SIZE expects int" in config_error(leaf)
    assert config_error(leaf).endswith(f"({tmp_path / 'typed.yaml'})")


# ---------------------------------------------------------------------------------------------- #
# Files that are not YAML text
# ---------------------------------------------------------------------------------------------- #
def test_files_that_are_not_text(tmp_path):
    packed = write(tmp_path / "packed.yaml", gzip.compress(b"SOLVER:\n  BASE_LR: 0.1\n"))
    assert config_error(packed) == (f"{packed}: not a YAML text file: it looks like gzip-compressed data "
                                    f"(decompress it first, e.g. with gunzip)")
    binary = write(tmp_path / "weights.yaml", bytes(64) + bytes(range(1, 200)))
    assert config_error(binary) == (f"{binary}: not a YAML text file: it looks like binary data "
                                    f"(64 of its first 263 bytes are NUL)")
    latin1 = write(tmp_path / "latin1.yaml", b"SOLVER:\n  BASE_LR: 0.1  # caf\xe9\n")
    assert config_error(latin1) == (f"{latin1}:2: byte 0xe9 at column 22 is not valid UTF-8; "
                                    f"a config file is UTF-8 text")


@pytest.mark.parametrize("bom,codec", [(codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le")])
def test_text_with_a_byte_order_mark_loads(tmp_path, bom, codec):
    path = write(tmp_path / "bom.yaml", bom + "SOLVER:\r\n  BASE_LR: 0.25\r\n".encode(codec))
    assert load_config([path]).SOLVER.BASE_LR == 0.25


# ---------------------------------------------------------------------------------------------- #
# Command line
# ---------------------------------------------------------------------------------------------- #
def test_first_cfg_item_is_a_file_whatever_its_name(tmp_path):
    path = write(tmp_path / "run.cfg", "SOLVER:\n  MAX_EPOCH: 3\n")
    args = parse_args(["--cfg", path, "SOLVER.BASE_LR", "0.2"])
    assert args.cfg_files == [path] and args.opts == ["SOLVER.BASE_LR", "0.2"]
    assert load_config_from_args(args).SOLVER.MAX_EPOCH == 3
    args = parse_args(["--cfg", str(tmp_path / "typo.cgf"), "SOLVER.BASE_LR", "0.2"])
    with pytest.raises(ConfigError, match=f"^{tmp_path / 'typo.cgf'}: config file not found$"):
        load_config_from_args(args)


@pytest.mark.parametrize("case", ["loop", "missing"])
def test_run_net_prints_one_line_and_exits_2(tmp_path, case):
    if case == "loop":
        cfg = write(tmp_path / "a.yaml", "_BASE_: b.yaml\n")
        write(tmp_path / "b.yaml", "_BASE_: a.yaml\n")
        expected = f"error: {tmp_path / 'b.yaml'}: _BASE_ loop: a.yaml -> b.yaml -> a.yaml"
    else:
        cfg = str(tmp_path / "missing.yaml")
        expected = f"error: {cfg}: config file not found"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "run_net.py"), "--cfg", cfg],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [expected]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
