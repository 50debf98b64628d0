import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

import cubist
from cubist.cli import main


def test_data_writes_parquet_and_plot(tmp_path, capsys):
    out, png = tmp_path / "s.parquet", tmp_path / "s.png"
    assert main(["data", "--out", str(out), "--plot", str(png)]) == 0
    t = pq.read_table(out)
    assert t.column_names == ["x1", "x2", "label"] and t.num_rows == 49982
    X, y = cubist.make_spiral()
    np.testing.assert_array_equal(t.column("x1").to_numpy(), X[:, 0])
    np.testing.assert_array_equal(t.column("label").to_numpy(), y)
    assert t.schema.metadata[b"cubist.dataset_id"].decode() in capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _id_of(path):
    return pq.read_table(path).schema.metadata[b"cubist.dataset_id"].decode()


@pytest.mark.parametrize("flags,recipe", [([], {}), (["--turns", "1.5"], {"turns": 1.5})])
def test_data_id_is_the_dataset_id(tmp_path, capsys, flags, recipe):
    # one data set, one id: what `cubist data` writes and prints is what result rows carry
    out = tmp_path / "x.parquet"
    assert main(["data", "--out", str(out), *flags]) == 0
    did = cubist.Dataset.spiral(**recipe).id
    assert _id_of(out) == did
    assert f"dataset_id={did}" in capsys.readouterr().out


def test_data_ids_differ_between_recipes_and_splits(tmp_path):
    ids = {}
    for name, flags in {"default": [], "turns": ["--turns", "1.5"], "offset": ["--offset", "10"],
                        "between": ["--split", "between"]}.items():
        out = tmp_path / f"{name}.parquet"
        assert main(["data", "--out", str(out), "--seed", "0", *flags]) == 0
        ids[name] = _id_of(out)
    assert len(set(ids.values())) == len(ids)
    from cubist.data import DataConfig
    Xb, yb = cubist.make_heldout("between")
    assert ids["between"] == DataConfig("spiral").split_id(Xb, yb, "between")


def test_data_recipe_flags(tmp_path):
    out = tmp_path / "n.parquet"
    assert main(["data", "--out", str(out), "--noise-std", "0.5", "--seed", "2", "--split", "noisy"]) == 0
    X, _ = cubist.make_heldout("noisy", noise_std=0.5, seed=2)
    np.testing.assert_array_equal(pq.read_table(out).column("x2").to_numpy(), X[:, 1])


@pytest.mark.parametrize("argv,needle", [
    (["data", "--out", "x.parquet", "--bogus"], "unrecognized arguments"),
    (["data", "--out", "x.parquet", "--noise-std", "-1"], "noise_std must be >= 0"),
    (["data", "--out", "/nonexistent-dir/x.parquet"], "cannot write"),
    (["data", "--out", "x.parquet", "--turns", "abc"], "invalid float value"),
    (["nosuchcommand"], "invalid choice"),
    (["data", "--out", "afile/x.parquet"], "cannot write"),
    (["data", "--out", "."], "Is a directory"),
])
def test_bad_input_one_line_exit_2(tmp_path, capsys, argv, needle):
    os.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a directory")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_unwritable_path(tmp_path, capsys):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        if os.access(d, os.W_OK):
            pytest.skip("running as a user that can write anywhere")
        assert main(["data", "--out", str(d / "x.parquet")]) == 2
        assert "permission denied" in capsys.readouterr().err
    finally:
        d.chmod(0o700)


def test_console_script_version_and_help():
    exe = os.path.join(os.path.dirname(sys.executable), "cubist")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "cubist.cli"]
    v = subprocess.run(cmd + ["--version"], capture_output=True, text=True)
    assert v.returncode == 0 and v.stdout.strip() == f"cubist-audit {cubist.__version__}"
    h = subprocess.run(cmd + ["--help"], capture_output=True, text=True)
    assert h.returncode == 0 and "data" in h.stdout
    bad = subprocess.run(cmd + ["data"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_help_lists_every_command_without_importing_torch():
    # `cubist --help` must stay cheap: listing the commands imports none of their modules.
    code = ("import sys; from cubist.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', sorted(m for m in ('torch', 'numba', 'pandas', 'search', 'pruners') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
    from cubist.cli import COMMANDS
    for name in COMMANDS:
        assert name in out.stdout


def test_lazy_parser_matches_full_parser():
    # The help shown by the lazy listing is the help each module registers, and naming a command
    # builds exactly that command's full parser.
    from cubist.cli import COMMANDS, build_parser
    full = build_parser()
    sub = next(a for a in full._actions if a.dest == "command")
    helps = {c.dest: c.help for c in sub._choices_actions}
    assert helps == {name: text for name, (_, text) in COMMANDS.items()}
    for name in COMMANDS:
        lazy = build_parser([name, "--help"])
        lazy_sub = next(a for a in lazy._actions if a.dest == "command")
        assert lazy_sub.choices[name].format_help() == sub.choices[name].format_help()
    with pytest.raises(cubist.cli.CubistError, match="invalid choice"):
        build_parser(["nonsense"]).parse_args(["nonsense"])
