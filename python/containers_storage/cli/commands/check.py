"""``check``: find damage in the store and, with ``--repair``, mend it (Go 1.48's command).

Exit status 1 when damage remains: found and not repaired, not repairable (read-only
stores), a repair step failed, or damaged containers kept for want of ``--force``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..output import emit_json, error_text, stderr, stdout

if TYPE_CHECKING:
    from ...check import CheckReport
    from ..context import Context

__all__ = ["run"]

_TITLES = {
    "Layers": "layer",
    "ROLayers": "read-only layer",
    "Images": "image",
    "ROImages": "read-only image",
    "Containers": "container",
}


def _print(report: CheckReport) -> None:
    for name, problems in report.sections():
        for key, found in problems.items():
            stdout(f"{_TITLES[name]} {key}:")
            for p in found:
                stdout(f" {p}")


def run(ctx: Context) -> int:
    """Check the store, print what was found, repair with ``--repair``/``--force``."""
    force = ctx.flag("force")
    repair = ctx.flag("repair") or force
    store = ctx.store
    try:
        report = store.check(quick=ctx.flag("quick"))
    except Exception as e:
        stderr(f"{ctx.name}: {error_text(e)}")
        return 1
    if ctx.json:
        emit_json(report.to_json())
    else:
        _print(report)
    if not repair:
        if report:
            stderr(f"{ctx.name}: {report.summary()}")
            return 1
        return 0
    errs = store.repair(report, remove_containers=force)
    if errs:
        if ctx.json:
            emit_json([str(e) for e in errs])
        else:
            for err in errs:
                stderr(error_text(err))
        return 1
    if report.ro_layers or report.ro_images or (not force and report.containers):
        what = (
            f"{len(report.ro_layers)} read-only layer errors, "
            f"{len(report.ro_images)} read-only image errors"
        )
        if not force:
            what += f", {len(report.containers)} container errors"
        stderr(f"{ctx.name}: {what}")
        return 1
    return 0
