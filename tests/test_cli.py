"""The ``ilo`` command: outputs, metrics, and one-line errors with exit code 2."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ilo.cli import main


def run(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    return e.value.code, out, err


BASE = ["solve", "--generator", "digiface-dcgan", "--steps", "6", "--restarts", "2", "--quiet"]


@pytest.mark.parametrize(
    "task,extra",
    [
        ("inpaint", ["--observed", "0.2"]),
        ("inpaint", ["--box", "16,16,48,40"]),
        ("superres", ["--factor", "4"]),
        ("denoise", ["--sigma", "25"]),
        ("cs", ["--measurements", "0.05"]),
    ],
)
def test_solve_writes_everything(tmp_path, capsys, task, extra):
    out = tmp_path / "run"
    code, stdout, err = run(BASE + ["--task", task, "--method", "ilo", "--truth-seed", "3", "--out", str(out)] + extra, capsys)
    assert code == 0, err
    for name in ["reconstruction.png", "observation.png", "config.json", "metrics.json", "truth.png", "comparison.png"]:
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    for key in ["task", "method", "measurement_mse", "true_mse", "psnr", "steps", "seconds"]:
        assert key in m
    assert m["task"] == task and m["method"] == "ilo"
    assert 0 < m["true_mse"] < 1 and m["psnr"] > 0
    cfg = json.loads((out / "config.json").read_text())
    # the self-tuned ILO's steps: its CSGM stage (the CSGM method at the whole budget, --steps 6, or
    # for super-resolution ILO's own stage), then the rounds
    sel = cfg["solver"]["selection"]
    first = 6 if sel["csgm"] == "method" else cfg["solver"]["csgm"]["steps"]
    assert sel["csgm"] == ("challenge" if task == "superres" or "--box" in extra else "method")  # a box: box_csgm
    rounds = sum(r["steps"] for r in cfg["solver"]["rounds"]) if sel.get("rounds_run", True) else 0
    assert sel.get("rounds_run", True) == (task != "denoise")  # SURE's "classical" rule: no round is a candidate
    assert sel["csgm_steps"] == first and m["steps"] == first + rounds
    restarts = 1 if task == "superres" else 2  # super-resolution's own CSGM stage: half the restarts (presets)
    assert cfg["problem"]["operator"]["task"] == task and cfg["solver"]["csgm"]["restarts"] == restarts
    assert Image.open(out / "reconstruction.png").size == (64, 64)
    assert "true_mse=" in stdout
    assert not list(out.glob(".*tmp*"))


def test_solve_same_seed_same_result(tmp_path, capsys):
    args = BASE + ["--task", "inpaint", "--method", "csgm", "--truth-seed", "5", "--seed", "7"]
    run(args + ["--out", str(tmp_path / "a")], capsys)
    run(args + ["--out", str(tmp_path / "b")], capsys)
    a = np.asarray(Image.open(tmp_path / "a" / "reconstruction.png"))
    b = np.asarray(Image.open(tmp_path / "b" / "reconstruction.png"))
    assert np.array_equal(a, b)


def test_solve_from_photo_and_from_observation(tmp_path, capsys):
    from ilo.images import photo, save_image

    img = tmp_path / "face.png"
    save_image(photo("astronaut", 128), img)
    code, _, err = run(BASE + ["--task", "superres", "--factor", "4", "--image", str(img), "--out", str(tmp_path / "p")], capsys)
    assert code == 0, err
    # real use: only the low-resolution observation, no truth
    low = tmp_path / "p" / "low.png"
    Image.open(tmp_path / "p" / "truth.png").resize((16, 16), Image.BICUBIC).save(low)
    code, _, err = run(BASE + ["--task", "superres", "--factor", "4", "--observation", str(low), "--out", str(tmp_path / "o")], capsys)
    assert code == 0, err
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert "true_mse" not in m and m["measurement_mse"] < 0.1
    assert not (tmp_path / "o" / "truth.png").exists()


def test_mask_image(tmp_path, capsys):
    mask = np.zeros((64, 64), np.uint8)
    mask[::3, ::3] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    code, _, err = run(BASE + ["--task", "inpaint", "--mask", str(tmp_path / "mask.png"), "--truth-seed", "1", "--out", str(tmp_path / "m")], capsys)
    assert code == 0, err
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["problem"]["operator"]["task"] == "inpaint"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--task", "blur", "--truth-seed", "1"], "unknown task"),
        (["--task", "inpaint", "--method", "magic", "--truth-seed", "1"], "unknown method"),
        (["--task", "inpaint", "--generator", "nope", "--truth-seed", "1"], "unknown generator"),
        (["--task", "inpaint", "--observed", "1.5", "--truth-seed", "1"], "(0, 1]"),
        (["--task", "inpaint", "--observed", "0", "--truth-seed", "1"], "(0, 1]"),
        (["--task", "cs", "--measurements", "-0.1", "--truth-seed", "1"], "(0, 1]"),
        (["--task", "superres", "--factor", "3", "--truth-seed", "1"], "does not divide"),
        (["--task", "denoise", "--sigma", "-5", "--truth-seed", "1"], "sigma"),
        (["--task", "denoise", "--image", "/no/such/file.png"], "not found"),
        (["--task", "denoise", "--image", "{bad}"], "cannot read image"),
        (["--task", "inpaint", "--mask", "{smallmask}", "--truth-seed", "1"], "mask"),
        (["--task", "inpaint", "--box", "1,2,3", "--truth-seed", "1"], "--box"),
        (["--task", "inpaint", "--box", "10,10,100,20", "--truth-seed", "1"], "box"),
        (["--task", "denoise"], "exactly one of"),
        (["--task", "denoise", "--truth-seed", "1", "--image", "x.png"], "exactly one of"),
        (["--task", "superres", "--factor", "4", "--observation", "{bad_obs}"], "needs 16x16 (the generator's frame; the faces of a photograph at its own size: ilo restore)"),
        (["--task", "superres", "--factor", "64", "--truth-seed", "1"], "nothing to hold out"),
        (["--task", "denoise", "--factor", "2", "--truth-seed", "1"], "does not apply"),
        (["--task", "denoise", "--truth-seed", "x"], "truth-seed"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path, capsys, args, message):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "small.png")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "obs.png")
    subst = {"{bad}": str(bad), "{smallmask}": str(tmp_path / "small.png"), "{bad_obs}": str(tmp_path / "obs.png")}
    args = [subst.get(a, a) for a in args]
    out = tmp_path / "out"
    code, _, err = run(BASE + args + ["--out", str(out)], capsys)
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert message in lines[0] and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())  # nothing half-written


def test_unwritable_output(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    code, _, err = run(BASE + ["--task", "denoise", "--truth-seed", "1", "--out", str(f / "sub")], capsys)
    assert code == 2 and ("cannot write" in err or "not a directory" in err)


def test_console_script_exit_code(tmp_path):
    """The installed entry point really exits with 2 and prints one line."""
    p = subprocess.run([sys.executable, "-m", "ilo", "solve", "--task", "nope", "--truth-seed", "1", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "unknown task" in p.stderr
    # `python -m ilo` has every subcommand, bench included (it registers itself after the CLI loads)
    p = subprocess.run([sys.executable, "-m", "ilo", "bench", "sna", "--steps", "0", "--out", str(tmp_path / "b")],
                       capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.strip() == "ilo: error: --steps must be >= 1, got 0"
    assert not (tmp_path / "b").exists()


@pytest.mark.slow  # end to end with the 64-px generator: run by make test / CI
def test_demo_quick(tmp_path, capsys):
    code, out, err = run(["demo", "--out", str(tmp_path / "d"), "--steps", "4", "--faces", "1", "--quiet"], capsys)
    assert code == 0, err
    for task in ["inpaint", "superres", "denoise", "cs"]:
        assert (tmp_path / "d" / f"{task}.png").is_file()
        assert json.loads((tmp_path / "d" / f"{task}.json").read_text())["task"] == task
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    methods = {(r["task"], r["method"]) for r in summary["rows"]}  # the classical ones, CSGM and ILO per task
    assert len(summary["rows"]) == len(methods) * 3 and len(methods) > 4 * 2  # (1 face + 2 photos) each
    assert "| inpaint | ilo |" in out and "| inpaint | biharmonic |" in out
    assert summary["jobs"] >= 1 and set(summary["task_runtimes"]) == {"inpaint", "superres", "denoise", "cs"}
    processes = {w["process"] for w in summary["task_runtimes"].values()}
    assert (processes == {os.getpid()}) == (summary["jobs"] == 1) and len(processes) <= summary["jobs"]


def test_solver_seed_may_equal_the_truth_seed(tmp_path, capsys):
    """Restarts and generated truths come from different named streams (ilo.rng): a solver seed
    equal to the truth seed is accepted and does not start the solver at the true latent."""

    from ilo.generators import load_generator
    from ilo.pipeline import ProblemSpec, build_problem, run_method
    from ilo.rng import stream
    from ilo.solvers.tracking import stack_latents

    G = load_generator("digiface-dcgan")
    truth_latent = G.sample_latent(1, stream(5, "truth"))["z"]
    start = stack_latents(G, [5], 1)["z"]
    assert (start - truth_latent).abs().max() > 0.5  # unrelated draws, not the truth
    code, _, err = run(BASE + ["--task", "cs", "--truth-seed", "3", "--seed", "3", "--out", str(tmp_path / "o")], capsys)
    assert code == 0, err
    prob = build_problem(ProblemSpec("cs", measurements=0.1), G, seed=4, truth_seed=4)
    _, metrics = run_method(prob, G, "csgm", total_steps=1, restarts=1, seed=4)
    assert metrics["steps"] == 1 and metrics["true_mse"] > 1e-3  # one step from a random start: far from the truth


@pytest.mark.parametrize("task,method,extra", [("inpaint", "biharmonic", ["--observed", "0.3"]),
                                               ("superres", "bicubic", ["--factor", "4"]),
                                               ("cs", "tv-cs", ["--measurements", "0.1"])])
def test_classical_methods_from_the_command_line(tmp_path, capsys, task, method, extra):
    """A classical method runs through the same path, and beats the observation's naive reading."""
    out = tmp_path / method
    code, _, err = run(BASE + ["--task", task, "--method", method, "--truth-seed", "3", "--out", str(out)] + extra, capsys)
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    cfg = json.loads((out / "config.json").read_text())
    assert m["method"] == method and cfg["method"] == method and m["psnr"] > 15


def test_classical_method_for_another_task_is_one_line(tmp_path, capsys):
    code, _, err = run(BASE + ["--task", "denoise", "--method", "bicubic", "--truth-seed", "3", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and err.strip().count("\n") == 0 and "only solves --task superres" in err
    assert not (tmp_path / "o").exists()


def test_no_extend_runs_the_papers_ilo(tmp_path, capsys):
    """--no-extend: no selection recorded; the default records the self-tuning's candidates and choice."""
    runs = {}
    for flag in ("--extend", "--no-extend"):
        out = tmp_path / flag
        code, _, err = run(BASE + ["--task", "inpaint", "--observed", "0.3", "--truth-seed", "3", flag, "--out", str(out)], capsys)
        assert code == 0, err
        runs[flag] = json.loads((out / "config.json").read_text())["solver"]
    assert runs["--no-extend"].get("selection") is None and runs["--no-extend"].get("deviation") is None
    assert runs["--extend"]["selection"] is not None


#: modules the default solve path does not need (the other commands', the benchmarks', heavy optional ones)
NOT_FOR_SOLVE = ("ilo.cli.batch", "ilo.cli.bench", "ilo.cli.demo", "ilo.cli.generate", "ilo.cli.restore", "ilo.bench",
                 "ilo.faces", "scipy", "skimage", "matplotlib", "ray", "torch._dynamo")


def _loaded_after(args: list[str], watch: tuple[str, ...]) -> list[str]:
    """The modules of ``watch`` that ``ilo ARGS`` imports, run in a fresh interpreter."""
    code = ("import sys\nfrom ilo.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            f"print([m for m in {list(watch)!r} if m in sys.modules])")
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return eval(p.stdout.strip().splitlines()[-1])


def test_solve_imports_only_what_it_uses(tmp_path):
    args = ["solve", "--task", "inpaint", "--truth-seed", "1", "--steps", "1", "--restarts", "1", "--no-extend", "--quiet",
            "--out", str(tmp_path / "o")]
    assert _loaded_after(args, NOT_FOR_SOLVE + ("ilo.solvers",)) == ["ilo.solvers"]  # the check sees what it imports


@pytest.mark.parametrize("args", [["--help"], ["solve", "--help"]])
def test_help_imports_no_command_module_and_no_torch(args):
    loaded = _loaded_after(args, NOT_FOR_SOLVE + ("ilo.cli.solve", "ilo.pipeline", "ilo.solvers", "torch"))
    assert loaded == (["ilo.cli.solve"] if args[0] == "solve" else [])


def test_help_lists_every_command_as_its_own_help_says():
    import click

    from ilo.cli import COMMANDS, command_group

    group = command_group()
    ctx = click.Context(group)
    for name, (_, _, summary) in COMMANDS.items():
        real = group.get_command(ctx, name)
        for limit in (45, 200):
            assert click.Command(name, help=summary).get_short_help_str(limit) == real.get_short_help_str(limit), name
    assert set(group.list_commands(ctx)) == set(COMMANDS) | {"generators"}
