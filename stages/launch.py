"""Several GPUs under DVC: with COMPCLIP_TORCHRUN set (e.g. "--standalone --nproc-per-node 4"), a training
stage re-executes itself under torchrun, so dvc.yaml's command stays `python -m stages.train <method>` and
the lock does not depend on the machine. The variable is execution-only: the gathered loss gives every
process count the same gradient (infra/distributed.md), so it is not a param."""

import os
import shlex
import shutil
import sys

ENV = "COMPCLIP_TORCHRUN"


def maybe_torchrun(module: str, args: list[str]) -> None:
    """Replace this process with `torchrun $COMPCLIP_TORCHRUN -m module args` unless already a torchrun rank."""
    launcher_args = os.environ.get(ENV, "").strip()
    if not launcher_args or "RANK" in os.environ:
        return
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    cmd = [torchrun, *shlex.split(launcher_args), "-m", module, *args]
    print(f"{ENV}: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    os.execv(cmd[0], cmd)
