"""Every `streamwallet …` command line the operator documentation quotes (docs/**/*.md: in
shell blocks and in inline code) parses with the real CLI parser, so a renamed command or
flag fails the suite instead of leaving a runbook that tells an operator something that
no longer exists. Placeholders (`<account-id>`, `$KEY`, `$(date +%s)`) stand for one word."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from streamwallet.cli import build_parser
from tests.promtool import ROOT

DOCS = ROOT / "docs"
FENCE = re.compile(r"^[ \t]*```[a-z]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)  # also inside list items
INLINE = re.compile(r"`([^`\n]*(?:\n[^`\n]*)?)`")  # an inline span may wrap onto a second line
# `streamwallet ` at the start of a command: the line's start, after whitespace, `--` (kubectl
# exec … -- streamwallet) or an environment assignment; never inside a name (…-streamwallet-query).
COMMAND = re.compile(r"(?:^|(?<=\s))streamwallet (?=[a-z-])")
PLACEHOLDER = re.compile(r"<[^<>\s][^<>]*>|\$\([^)]*\)|\$\{?[A-Za-z_]+\}?")
SHELL_ENDS = frozenset({"|", "||", "&&", ";", ">", ">>", "2>", "&"})
COMMANDS_QUOTED_MIN = 40  # the docs quote at least this many; fewer means the extraction broke


def quoted_commands(text: str) -> list[str]:
    """The `streamwallet …` command lines in a Markdown text's code blocks and inline code."""
    found: list[str] = []
    blocks = [block.replace("\\\n", " ") for block in FENCE.findall(text)]
    prose = FENCE.sub("", text)
    lines = [line for block in blocks for line in block.splitlines()]
    lines += [" ".join(span.split()) for span in INLINE.findall(prose)]
    for line in lines:
        match = COMMAND.search(line)
        if match is not None:
            found.append(line[match.start() :])
    return found


def arguments_of(command: str) -> list[str]:
    """The command's words after `streamwallet`, up to the end of the shell command."""
    lexer = shlex.shlex(PLACEHOLDER.sub("PLACEHOLDER", command), posix=True, punctuation_chars="|&;>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    words: list[str] = []
    for word in lexer:
        if word in SHELL_ENDS:
            break
        words.append(word)
    return words[1:]


def parse_error(parser: argparse.ArgumentParser, arguments: list[str]) -> str | None:
    """None if the arguments parse (or ask for --help), else what argparse said."""
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(arguments)
        except SystemExit as exit_:
            return None if exit_.code == 0 else errors.getvalue().strip().splitlines()[-1]
    return None


def documented_commands() -> list[tuple[Path, str]]:
    return [(page, command) for page in sorted(DOCS.rglob("*.md")) for command in quoted_commands(page.read_text())]


def test_every_command_line_quoted_in_the_docs_parses() -> None:
    parser = build_parser()
    commands = documented_commands()
    assert len(commands) >= COMMANDS_QUOTED_MIN, f"only {len(commands)} command lines found in docs/"
    failures = [
        f"{page.relative_to(ROOT)}: {command!r}: {error}"
        for page, command in commands
        if (error := parse_error(parser, arguments_of(command))) is not None
    ]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    "text",
    [
        "```sh\nstreamwallet tail events --no-such-flag\n```\n",
        "Run `streamwallet deadletter redrive --reasons UNDECODABLE` after the fix.\n",
        "```sh\nkubectl exec statefulset/x-streamwallet-query -- streamwallet rebuild-view\n```\n",
        "```sh\nstreamwallet account show <account-id> \\\n  --events many | jq .\n```\n",
        "1. Create it:\n\n   ```sh\n   X=1 streamwallet topics craete\n   ```\n",
    ],
)
def test_a_renamed_command_or_flag_is_caught(text: str) -> None:
    """The check can fail: each of these lines is found and refused by the parser."""
    commands = quoted_commands(text)
    assert len(commands) == 1
    assert parse_error(build_parser(), arguments_of(commands[0])) is not None


def test_the_extraction_takes_shell_and_placeholders_apart() -> None:
    text = (
        "```sh\nSTREAMWALLET_X=1 streamwallet tail deadletter --from-beginning --no-follow --json "
        "| jq -r .reason   # count\nkubectl get pods -l app=x-streamwallet-worker\n```\n"
        "then `streamwallet account show <account-id>\n  --events 20` and `streamwallet_sink_lag_events`.\n"
    )
    assert [arguments_of(command) for command in quoted_commands(text)] == [
        ["tail", "deadletter", "--from-beginning", "--no-follow", "--json"],
        ["account", "show", "PLACEHOLDER", "--events", "20"],
    ]
