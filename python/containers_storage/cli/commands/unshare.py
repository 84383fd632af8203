"""``containers-storage unshare``: run a command in the rootless user namespace."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["run"]


def run(ctx: Context) -> int:
    """Enter the namespace (podman's pause process, else a new one), then run the command
    (``$SHELL`` by default) as a child with the store's roots in the environment."""
    from ... import unshare

    if not unshare.is_rootless():
        print("please use unshare with rootless", file=sys.stderr)
        return 1
    argv = list(ctx.args)
    if not argv:
        shell = os.environ.get("SHELL", "")
        if not shell:
            print("no command specified and no $SHELL specified", file=sys.stderr)
            return 1
        argv = [shell]
    from .. import main as cli

    if cli._AS_COMMAND:
        unshare.maybe_reexec()
    elif not os.environ.get(unshare.USERNS_ENV):
        return unshare.run_in_namespace(argv)
    from ...options import StoreOptions

    env = dict(os.environ)
    try:
        opts = StoreOptions.default()
        env["CONTAINERS_GRAPHROOT"] = ctx.text("graph") or opts.graph_root
        env["CONTAINERS_RUNROOT"] = ctx.text("run") or opts.run_root
    except OSError:
        pass
    try:
        return subprocess.run(argv, env=env, check=False).returncode
    except OSError as e:
        print(f"containers-storage: {e}", file=sys.stderr)
        return 127
