"""Many command lines of one CLI, each in its own process, for the price of one interpreter start-up.

Most of a short CLI run (a bad argument, a bad file) is spent importing torch, Lightning and Hydra. One
subprocess imports them once and then forks a child per command line; each child runs the script as `__main__`
with its own argv, environment, working directory and stdout/stderr files, and exits with the script's exit
code, exactly as `python src/train.py ...` would. Where fork is not available, each command line gets a plain
subprocess instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# Runs in the subprocess: argv[1] = the script, stdin = the jobs as JSON, stdout = their exit codes as JSON.
_DRIVER = r"""
import json, os, runpy, sys, traceback
script, jobs = sys.argv[1], json.load(sys.stdin)
import hydra, lightning, torch, big2small.pipeline, big2small.evaluation  # noqa: F401 - imported once, for all
codes = []
for job in jobs:
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for fd, name in ((1, "stdout"), (2, "stderr")):
                os.dup2(os.open(job[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
            os.environ.clear()
            os.environ.update(job["env"])
            os.chdir(job["cwd"])
            sys.argv = [script, *job["args"]]
            try:
                runpy.run_path(script, run_name="__main__")
                code = 0
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            except BaseException:
                traceback.print_exc()
        finally:
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(code)
    codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
print(json.dumps(codes))
"""


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_many(script: Path, command_lines: list[list[str]], folder: Path, *, cwd: Path,
             envs: list[dict[str, str]] | None = None, timeout: float = 600) -> list[Result]:
    """Run `python script *args` for each args in command_lines; stdout and stderr are kept under `folder`."""
    envs = envs or [dict(os.environ)] * len(command_lines)
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [{"args": args, "env": env, "cwd": str(cwd), "stdout": str(folder / f"{index}.out"),
             "stderr": str(folder / f"{index}.err")} for index, (args, env) in enumerate(zip(command_lines, envs, strict=True))]
    if hasattr(os, "fork"):
        done = subprocess.run([sys.executable, "-c", _DRIVER, str(script)], input=json.dumps(jobs), cwd=cwd,
                              capture_output=True, text=True, timeout=timeout, env=envs[0])
        if done.returncode != 0:
            raise RuntimeError(f"the CLI driver failed: {done.stderr[-3000:]}")
        codes = json.loads(done.stdout.strip().splitlines()[-1])
    else:
        codes = []
        for job in jobs:
            with open(job["stdout"], "w") as out, open(job["stderr"], "w") as err:
                codes.append(subprocess.run([sys.executable, str(script), *job["args"]], cwd=cwd, env=job["env"],
                                            stdout=out, stderr=err, timeout=timeout).returncode)
    return [Result(code, Path(job["stdout"]).read_text(), Path(job["stderr"]).read_text())
            for code, job in zip(codes, jobs, strict=True)]
