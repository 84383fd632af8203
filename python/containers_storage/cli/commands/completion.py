"""``completion bash|zsh|fish``: shell completion scripts generated from the command table.

They complete command names (and aliases), the global flags, each command's flags, and
files where a command or flag takes a path.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ..._strconv import go_quote
from ..output import stderr
from .table import COMMANDS, GLOBAL_FLAGS, TOP_FLAGS

if TYPE_CHECKING:
    from ..context import Context
    from ..flags import FlagSpec

__all__ = ["bash_script", "completion", "fish_script", "zsh_script"]

PROG = "containers-storage"
_FILE_FLAGS = {"file", "metadata_file"}


def _spellings(specs: tuple[FlagSpec, ...]) -> list[str]:
    return [s for spec in specs for s in spec.spellings]


def _takes_value(specs: tuple[FlagSpec, ...]) -> list[str]:
    return [s for spec in specs if spec.kind not in ("bool", "optbool") for s in spec.spellings]


def bash_script() -> str:
    """A bash completion script (``source <(containers-storage completion bash)``)."""
    names = " ".join(n for c in COMMANDS for n in c.names)
    global_flags = " ".join(_spellings(GLOBAL_FLAGS + TOP_FLAGS))
    global_values = "|".join(_takes_value(GLOBAL_FLAGS))
    cases = []
    for cmd in COMMANDS:
        flags = " ".join(_spellings(GLOBAL_FLAGS + cmd.flags))
        files = "|".join(s for f in cmd.flags if f.dest in _FILE_FLAGS for s in f.spellings)
        values = "|".join(_takes_value(cmd.flags + GLOBAL_FLAGS))
        positional = "compgen -f" if cmd.completes == "file" else "true"
        cases.append(
            f"        {'|'.join(cmd.names)})\n"
            f'            flags="{flags}"; files="{files or "-"}"; values="{values or "-"}"\n'
            f"            positional={positional!r} ;;"
        )
    body = "\n".join(cases)
    return f"""# bash completion for {PROG}
_containers_storage() {{
    local cur prev cmd="" i flags files values positional
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            {global_values or "-"}) ((i++)) ;;
            -*) ;;
            *) cmd="${{COMP_WORDS[i]}}"; break ;;
        esac
    done
    if [[ -z "$cmd" ]]; then
        case "$prev" in
            --graph|-g|--run|-R) COMPREPLY=($(compgen -d -- "$cur")); return ;;
            --storage-driver|-s) COMPREPLY=($(compgen -W "overlay vfs" -- "$cur")); return ;;
            --storage-opt) return ;;
        esac
        if [[ "$cur" == -* ]]; then
            COMPREPLY=($(compgen -W "{global_flags}" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "{names}" -- "$cur"))
        fi
        return
    fi
    case "$cmd" in
{body}
        *) return ;;
    esac
    if [[ "$prev" == @($files) ]]; then
        COMPREPLY=($(compgen -f -- "$cur")); return
    fi
    if [[ "$prev" == @($values) ]]; then
        return
    fi
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    elif [[ "$positional" != true ]]; then
        COMPREPLY=($($positional -- "$cur"))
    fi
}}
shopt -s extglob
complete -F _containers_storage {PROG}
"""


def _zsh_flag(spec: FlagSpec) -> list[str]:
    usage = spec.usage.replace("'", "'\\''").replace("[", "\\[").replace("]", "\\]")
    suffix = ""
    if spec.kind not in ("bool", "optbool"):
        action = "_files" if spec.dest in _FILE_FLAGS or spec.dest in ("graph", "run") else " "
        suffix = f":{spec.dest}:{action}"
    return [f"'{s}[{usage}]{suffix}'" for s in spec.spellings]


def zsh_script() -> str:
    """A zsh completion script (save as ``_containers-storage`` on ``$fpath``)."""
    described = "\n".join(
        f"        '{n}:{c.usage.replace(chr(39), chr(39) * 2)}'" for c in COMMANDS for n in c.names
    )
    global_args = " ".join(a for spec in GLOBAL_FLAGS + TOP_FLAGS for a in _zsh_flag(spec))
    cases = []
    for cmd in COMMANDS:
        args = " ".join(a for spec in GLOBAL_FLAGS + cmd.flags for a in _zsh_flag(spec))
        rest = "'*:file:_files'" if cmd.completes == "file" else "'*: :'"
        cases.append(f"        ({'|'.join(cmd.names)}) _arguments {args} {rest} ;;")
    body = "\n".join(cases)
    return f"""#compdef {PROG}
_containers_storage_commands() {{
    local -a commands
    commands=(
{described}
    )
    _describe -t commands 'command' commands
}}
_containers_storage() {{
    local curcontext="$curcontext" state line
    _arguments -C {global_args} '1: :_containers_storage_commands' '*:: :->args'
    case $state in
    args)
        case $words[1] in
{body}
        esac ;;
    esac
}}
_containers_storage "$@"
"""


def fish_script() -> str:
    """A fish completion script (``containers-storage completion fish | source``)."""
    lines = [f"# fish completion for {PROG}", f"complete -c {PROG} -f"]

    def flag_line(spec: FlagSpec, condition: str) -> str:
        parts = [f"complete -c {PROG} -n '{condition}'"]
        for n in spec.names:
            if not n or n.startswith("#"):
                continue
            if n.startswith("-"):
                parts.append(f"-l {n[1:]}")
            else:
                parts.append(f"-s {n}" if len(n) == 1 else f"-o {n}")
        if spec.kind not in ("bool", "optbool"):
            parts.append("-r" + (" -F" if spec.dest in _FILE_FLAGS else ""))
        usage = spec.usage.replace("'", "\\'")
        parts.append(f"-d '{usage}'")
        return " ".join(parts)

    for spec in GLOBAL_FLAGS + TOP_FLAGS:
        lines.append(flag_line(spec, "true"))
    for cmd in COMMANDS:
        usage = cmd.usage.replace("'", "\\'")
        for n in cmd.names:
            lines.append(f"complete -c {PROG} -n __fish_use_subcommand -a {n} -d '{usage}'")
        seen = f"__fish_seen_subcommand_from {' '.join(cmd.names)}"
        for spec in cmd.flags:
            lines.append(flag_line(spec, seen))
        if cmd.completes == "file":
            lines.append(f"complete -c {PROG} -n '{seen}' -F")
    return "\n".join(lines) + "\n"


def completion(ctx: Context) -> int:
    """Print the completion script for the shell named."""
    scripts = {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}
    make = scripts.get(ctx.args[0])
    if make is None:
        stderr(f"completion: unsupported shell {go_quote(ctx.args[0])} (use bash, zsh or fish)")
        return 1
    sys.stdout.write(make())
    return 0
