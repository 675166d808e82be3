"""Bad command lines and environments: one line on stderr, exit code 2, no traceback, nothing trained."""

import dataclasses
import http.server
import os
import resource
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from tests.conftest import PROJECT_ROOT
from tests.once import once_per_run
from tests.warm_cli import Result, run_many

TRAIN = [sys.executable, str(PROJECT_ROOT / "src" / "train.py")]

NEEDS_NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="asks for a GPU where there is none")

CASES = [
    (["seed=abc"], "ConfigError: seed must be an integer"),
    (["seed=1.5"], "ConfigError: seed must be an integer"),
    (["compressor=quant", "compressor.target_ratio=abc"], "target_ratio must be > 1"),
    (["compressor=quant", "compressor.bits=four"], "bits must be an integer in 2..16"),
    (["compressor=quant", "compressor.bits=0"], "bits must be an integer in 2..16"),
    (["compressor.foo=1"], "compressor.foo is not a key of this config"),
    (["+compressor.foo=1"], "unexpected keyword argument 'foo'"),
    (["compressor=nope"], "Could not find 'compressor/nope' Available options in 'compressor': big2small"),
    pytest.param(["compressor=quant", "trainer=gpu"], "ConfigError: trainer:", marks=NEEDS_NO_GPU),
    pytest.param(["compressor=quant", "trainer=ddp_gpu"], "ConfigError: trainer:", marks=NEEDS_NO_GPU),
    (["trainer.devices=0"], "ConfigError: trainer:"),
    (["compressor=quant", "store_uncompressed=maybe"], "store_uncompressed must be true or false"),
    # its downsampling leaves nothing of the digits' 8 x 8 images
    (["model=torchvision", "model.name=squeezenet1_1"], "model: squeezenet1_1 cannot take the data's inputs"),
    (["model=torchvision", "model.name=vit_b_16"], "model: vit_b_16 cannot take the data's inputs"),  # 224 x 224 only
    (["model=unet"], "task classification needs one row of class scores per input"),
    (["task=segmentation", "model=cifar_resnet20"], "task segmentation needs class scores for every pixel"),
    (["task=segmentation", "data=digits"], "task segmentation learns from masks, but data digits gives labels"),
]


def _args(args, folder):
    """The command line in `folder`: its own output root, cache and run dir unless `args` chooses them."""
    defaults = [f"paths.output_root={folder}", f"paths.cache_dir={folder / 'cache'}",
                f"hydra.run.dir={folder / 'run'}", "task.epochs=3"]
    chosen = {arg.split("=", 1)[0] for arg in args}
    return [*args, *[arg for arg in defaults if arg.split("=", 1)[0] not in chosen]]


def _env(extra=None):
    return {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(extra or {})}


def _run(args, tmp_path, env=None):
    return subprocess.run([*TRAIN, *_args(args, tmp_path)], cwd=PROJECT_ROOT, env=_env(env), capture_output=True,
                          text=True, timeout=300)


def _assert_one_line(result, text):
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and text in lines[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr + result.stdout


def _case_id(case):
    return " ".join((case.values if hasattr(case, "values") else case)[0])


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """Every command line of this module that must stop with one line, run at once (tests/warm_cli.py) and once
    per test run (tests/once.py): results = {name: (its folder, its result)}."""
    made = once_per_run(tmp_path_factory, "bad_inputs", _stop_all)
    return SimpleNamespace(results={name: (Path(folder), Result(**result))
                                    for name, (folder, result) in made["results"].items()},
                           port=made["port"], blocker=Path(made["blocker"]))


def _stop_all(root):
    blocker = root / "not-a-dir"
    blocker.write_text("a file where a dir should be")
    skipped = {_case_id(case) for case in CASES
               if any(mark.name == "skipif" and mark.args[0] for mark in getattr(case, "marks", ()))}
    lines = {_case_id(case): ([*(case.values if hasattr(case, "values") else case)[0], "logger=none"], {})
             for case in CASES if _case_id(case) not in skipped}
    lines["cache dir"] = (["logger=none", f"paths.cache_dir={blocker / 'cache'}"], {})
    lines["run dir"] = (["logger=none", f"hydra.run.dir={blocker / 'run'}"], {})
    home = root / "home"
    home.mkdir()
    lines["wandb no login"] = (["compressor=quant", "logger=wandb"], {
        "WANDB_MODE": "online", "HOME": str(home), "WANDB_API_KEY": "", "NETRC": str(root / "none")})
    port = _closed_port()
    lines["wandb no network"] = (["compressor=quant", "logger=wandb"], _online_env(home, f"http://127.0.0.1:{port}"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RefusesEveryKey)
    lines["wandb wrong key"] = (["compressor=quant", "logger=wandb"],
                                _online_env(home, f"http://127.0.0.1:{server.server_address[1]}"))
    _write_checkpoints(root)
    for name, _ in BAD_CHECKPOINTS:
        lines[name] = (["compressor=quant", "logger=none", f"model.checkpoint={root / name}"], {})
    # Base weights from a file, so that the artifact's write is reached without training first.
    lines["artifact"] = (["compressor=quant", "logger=none", f"model.checkpoint={root / 'good.safetensors'}"], {})
    folders = {name: root / f"case{index}" for index, name in enumerate(lines)}
    artifact_blocker = folders["artifact"] / "run" / "compressed.safetensors" / "a file"
    artifact_blocker.parent.mkdir(parents=True)  # a folder in the artifact's place: the write fails, as on a full disk
    artifact_blocker.write_text("x")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        results = run_many(TRAIN[1], [_args(args, folders[name]) for name, (args, _) in lines.items()],
                           root / "logs", cwd=PROJECT_ROOT, envs=[_env(env) for _, env in lines.values()])
    finally:
        server.shutdown()
    return {"results": {name: (str(folders[name]), dataclasses.asdict(result))
                        for name, result in zip(lines, results, strict=True)},
            "port": port, "blocker": str(blocker)}


@pytest.mark.parametrize("args, text", CASES, ids=[_case_id(case) for case in CASES])
def test_bad_value_is_one_line_before_any_work(args, text, stopped):
    folder, result = stopped.results[" ".join(args)]
    _assert_one_line(result, text)
    assert not (folder / "cache").exists(), "nothing may be trained before the config is known to be good"


def test_an_unwritable_cache_dir_is_named_before_training(stopped):
    _, result = stopped.results["cache dir"]
    _assert_one_line(result, f"OutputError: cannot write the cache dir {stopped.blocker / 'cache' / 'base_models'}")


def test_an_unwritable_run_dir_is_named(stopped):
    _, result = stopped.results["run dir"]
    _assert_one_line(result, "OutputError: cannot write")
    assert str(stopped.blocker) in result.stderr


def test_wandb_online_without_a_login_says_how_to_log_offline(stopped):
    _assert_one_line(stopped.results["wandb no login"][1], "W&B online needs a login")


def test_wandb_online_without_network_is_named_before_any_work(stopped):
    folder, result = stopped.results["wandb no network"]
    _assert_one_line(result, f"W&B online cannot reach 127.0.0.1:{stopped.port}")
    assert "logger.mode=offline" in result.stderr
    assert not [p for p in (folder / "cache").rglob("*") if p.is_file()], "no base model may be trained first"


class _RunsCode:
    def __reduce__(self):
        return (print, ("this must never print",))


# Bad base-model files, each with the one line it must produce.
BAD_CHECKPOINTS = [("nan.pt", "features.0.weight holds NaN or inf"),
                   ("int.pt", "classifier.weight is torch.int32, the model expects floating point"),
                   ("random.pt", "is neither a PyTorch checkpoint"),
                   ("evil.pt", "needs code to load: it refers to print, which was not run")]


def _write_checkpoints(folder):
    from big2small.models.small_cnn import SmallCNN

    state = SmallCNN().state_dict()
    nan = {k: v.clone() for k, v in state.items()}
    nan["features.0.weight"][0, 0, 0, 0] = float("nan")
    torch.save(nan, folder / "nan.pt")
    as_int = dict(state, **{"classifier.weight": state["classifier.weight"].to(torch.int32)})
    torch.save(as_int, folder / "int.pt")
    (folder / "random.pt").write_bytes(bytes(range(256)) * 4)
    torch.save({"state_dict": state, "payload": _RunsCode()}, folder / "evil.pt")
    save_file(state, str(folder / "good.safetensors"))


def test_bad_checkpoints_are_one_line_and_run_no_code(stopped):
    for name, text in BAD_CHECKPOINTS:
        _, result = stopped.results[name]
        _assert_one_line(result, text)
        assert "this must never print" not in result.stdout + result.stderr


def test_an_artifact_that_cannot_be_written_is_one_line_and_leaves_nothing_half(stopped):
    folder, result = stopped.results["artifact"]
    _assert_one_line(result, "OutputError: cannot write the artifact")
    assert (folder / "run" / "compressed.safetensors").is_dir() and not (folder / "run" / "metrics.json").exists()
    assert not list(folder.rglob("*.tmp")), "no partial file may be left behind"


def _online_env(tmp_path, url):
    proxies = {name: "" for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")}
    return {**proxies, "WANDB_MODE": "online", "HOME": str(tmp_path), "WANDB_API_KEY": "k" * 40,
            "WANDB_BASE_URL": url, "NETRC": str(tmp_path / "none")}


def _closed_port() -> int:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _RefusesEveryKey(http.server.BaseHTTPRequestHandler):
    """A W&B server that answers every request as W&B does a wrong API key."""

    def _refuse(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b'{"errors": [{"message": "user is not logged in"}]}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _refuse

    def log_message(self, *args):
        pass


def test_wandb_online_with_a_wrong_key_is_one_line_with_the_offline_fallback(stopped):
    _, result = stopped.results["wandb wrong key"]
    _assert_one_line(result, "W&B could not start an online run (user is not logged in)")
    assert "logger.mode=offline" in result.stderr


def test_a_full_disk_is_named_and_leaves_no_partial_file(tmp_path):
    """A file size limit makes every write past 20 kB fail as a full disk does: here the base-model cache."""
    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    environment = {**os.environ, "WANDB_MODE": "offline"}
    result = subprocess.run([*TRAIN, "compressor=quant", "logger=none", "task.epochs=1",
                             f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}"],
                            cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True, timeout=300,
                            preexec_fn=limit_file_size)
    _assert_one_line(result, f"OutputError: cannot write the base-model cache {tmp_path / 'cache' / 'base_models'}")
    assert "File too large" in result.stderr
    assert not list(tmp_path.rglob("*.tmp")), "no partial file may be left behind"
