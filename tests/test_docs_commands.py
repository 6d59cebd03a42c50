"""The commands written in README.md and docs/*.md exist as written.

For every shell command in a fenced block (```, ```bash, ```sh, ```shell, ```console) and in every
inline code span of the prose that starts with one of the project's commands (also behind
`horovodrun ...`, `/usr/bin/time`, `.venv/bin/`, `python -m pretrain.cli`), checks in-process,
against the argparse parsers the commands are built from (nothing is run):

- the command exists and so does its subcommand (mdnet-data, mdnet-bench, mdnet-eval; mdnet-eval
  without one means `score`);
- every `--option` written on that line is an option string of that (sub)command's parser, in full
  (argparse would also take an abbreviation; the docs should not rely on it).

Also: every `make X` target named in the docs is a target of the Makefile, and every relative link
or image in README.md and docs/*.md points to an existing file (and, with `#anchor`, to an existing
heading). The checkers are plain functions over text, so the tests at the end show that they fail
on a wrong option, subcommand, target or link.
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def doc_files() -> list[Path]:
    return [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))


# ----------------------------------------------------------------------------------------------
# The project's parsers, built in-process (the console scripts of pyproject.toml call these)

def _track():
    from online.cli import build_parser
    return build_parser()


def _pretrain():
    from pretrain.cli import build_parser
    return build_parser()


def _export():
    from tools.weights.export import build_parser
    return build_parser()


def _eval():
    from tools.eval.cli import build_parser
    return build_parser()


def _data():
    from tools.data.cli import build_parser
    return build_parser()


def _bench():
    from tools.bench.cli import build_parser
    return build_parser()


def _import():
    from tools.weights.mat_import import build_parser
    return build_parser()


BUILDERS = {
    "mdnet-track": _track,
    "mdnet-pretrain": _pretrain,
    "mdnet-export": _export,
    "mdnet-eval": _eval,
    "mdnet-data": _data,
    "mdnet-bench": _bench,
    "mdnet-import": _import,
}
# `python -m MODULE` forms the docs use for the same parsers.
MODULES = {
    "online.cli": "mdnet-track",
    "pretrain.cli": "mdnet-pretrain",
    "tools.weights.export": "mdnet-export",
    "tools.eval.cli": "mdnet-eval",
    "tools.data.cli": "mdnet-data",
    "tools.bench.cli": "mdnet-bench",
    "tools.weights.mat_import": "mdnet-import",
}
# The subcommand a command runs when none is named.
DEFAULT_SUBCOMMAND = {"mdnet-eval": "score"}


@lru_cache(maxsize=None)
def parser_for(command: str) -> argparse.ArgumentParser:
    return BUILDERS[command]()


def subparsers(parser: argparse.ArgumentParser) -> dict:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options(parser: argparse.ArgumentParser) -> set:
    return set(parser._option_string_actions)


# ----------------------------------------------------------------------------------------------
# Extracting commands from markdown

FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
SHELL_LANGS = {"", "bash", "sh", "shell", "console", "shell-session"}


@dataclass
class Command:
    file: str
    line: int          # 1-based line of the markdown file where the command starts
    text: str          # the command as written (continuations joined)


def split_markdown(text: str):
    """(fenced shell blocks as [(line, [lines])], prose lines [(line, text)] outside every fence)."""
    blocks, prose = [], []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            prose.append((i + 1, lines[i]))
            i += 1
            continue
        fence, lang = m.group(2), m.group(3).lower()
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        if lang in SHELL_LANGS:
            blocks.append((start + 1, body))
    return blocks, prose


def block_commands(file: str, start: int, body: list) -> list:
    """The command lines of one fenced block. A block with `$ ` prompts is a transcript: only the
    prompted lines (and their continuations) are commands, the rest is output."""
    transcript = any(line.lstrip().startswith("$ ") for line in body)
    out, i = [], 0
    while i < len(body):
        line, lineno = body[i], start + i
        i += 1
        stripped = line.strip()
        if transcript:
            if not stripped.startswith("$ "):
                continue
            stripped = stripped[2:]
        parts = [stripped]
        while parts[-1].endswith("\\") and i < len(body):
            parts[-1] = parts[-1][:-1]
            parts.append(body[i].strip())
            i += 1
        out.append(Command(file, lineno, " ".join(parts)))
    return out


INLINE = re.compile(r"(?<!`)`([^`]+)`(?!`)")


def inline_commands(file: str, prose: list) -> list:
    """Inline code spans of the prose (a span may wrap to the next line of its paragraph)."""
    out = []
    paragraph: list = []

    def flush():
        if not paragraph:
            return
        text = " ".join(t for _, t in paragraph)
        starts = []  # character offset of each line in the joined text, for line numbers
        pos = 0
        for n, t in paragraph:
            starts.append((pos, n))
            pos += len(t) + 1
        for m in INLINE.finditer(text):
            lineno = max(n for p, n in starts if p <= m.start())
            out.append(Command(file, lineno, m.group(1).strip()))
        paragraph.clear()

    for n, t in prose:
        if not t.strip():
            flush()
        else:
            paragraph.append((n, t))
    flush()
    return out


def doc_commands(path: Path) -> tuple[list, list]:
    text = path.read_text(encoding="utf-8")
    rel = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name
    blocks, prose = split_markdown(text)
    fenced = [c for start, body in blocks for c in block_commands(rel, start, body)]
    return fenced, inline_commands(rel, prose)


# ----------------------------------------------------------------------------------------------
# Checking one command line

SEGMENT_SPLIT = re.compile(r"\s(?:&&|\|\||\||;)\s|;\s*$")
ENV_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=\S*$")
OPTION = re.compile(r"(?<![\w-])(--[A-Za-z0-9][A-Za-z0-9_-]*)")
PREFIXES = {"time", "/usr/bin/time", "env", "sudo", "nohup", "srun"}
LAUNCHERS = {"horovodrun", "mpirun", "mpiexec"}


def _strip_comment(text: str) -> str:
    """Drop a trailing `# comment` (a # after whitespace, outside quotes)."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i]
    return text


def _program(token: str) -> str | None:
    name = token.rsplit("/", 1)[-1]
    return name if name in BUILDERS else None


def project_invocations(text: str) -> list:
    """(command, argument tokens) for every project command in one shell line."""
    found = []
    for segment in SEGMENT_SPLIT.split(_strip_comment(text)):
        tokens = segment.split()
        while tokens and (ENV_ASSIGN.match(tokens[0]) or tokens[0] in PREFIXES):
            tokens = tokens[1:]
        if not tokens:
            continue
        if tokens[0].rsplit("/", 1)[-1] in LAUNCHERS:
            # horovodrun's own options come first; the program is the first project command.
            for k, tok in enumerate(tokens[1:], 1):
                if _program(tok):
                    tokens = tokens[k:]
                    break
                if tok.rsplit("/", 1)[-1].startswith("python") and tokens[k + 1:k + 2] == ["-m"]:
                    tokens = tokens[k:]
                    break
            else:
                continue
        first = tokens[0].rsplit("/", 1)[-1]
        if first.startswith("python") and len(tokens) >= 3 and tokens[1] == "-m" and tokens[2] in MODULES:
            found.append((MODULES[tokens[2]], tokens[3:]))
        elif _program(tokens[0]):
            found.append((_program(tokens[0]), tokens[1:]))
    return found


def check_invocation(command: str, args: list) -> list:
    """Problems with one invocation: unknown subcommand, options its parser does not accept."""
    if not args:
        return []  # the command named in prose, e.g. `mdnet-data`
    parser = parser_for(command)
    subs = subparsers(parser)
    where, target = command, parser
    if subs:
        first = next((a.strip("[]()") for a in args if not a.startswith("-")), None)
        if first in subs:
            where, target = f"{command} {first}", subs[first]
        elif command in DEFAULT_SUBCOMMAND:
            where, target = f"{command} ({DEFAULT_SUBCOMMAND[command]})", subs[DEFAULT_SUBCOMMAND[command]]
        elif not any(a.lstrip("[") in ("-h", "--help") for a in args):
            return [f"{command}: subcommand {first!r} does not exist (known: {', '.join(subs)})"]
    accepted = options(target) | (options(parser) if target is not parser else set())
    problems = []
    for arg in args:
        for opt in OPTION.findall(arg):
            if opt not in accepted:
                problems.append(f"{where}: option {opt} is not accepted")
    return problems


def check_commands(commands: list) -> tuple[list, int]:
    """(problems as 'file:line: ...', number of project invocations checked)."""
    problems, checked = [], 0
    for c in commands:
        for command, args in project_invocations(c.text):
            checked += 1
            problems += [f"{c.file}:{c.line}: {p}   [{c.text}]" for p in check_invocation(command, args)]
    return problems, checked


# ----------------------------------------------------------------------------------------------
# make targets and links

MAKE = re.compile(r"(?:^|[\s`(;&|])make((?:\s+[^\s`;&|#]+)*)")


@lru_cache(maxsize=None)
def make_targets(makefile: Path = REPO / "Makefile") -> frozenset:
    targets = set()
    for line in makefile.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.%/$(){} -]+?)\s*::?(?!=)", line)
        if m and not line.startswith("\t"):
            targets.update(t for t in m.group(1).split() if not t.startswith((".", "$")))
    return frozenset(targets)


def check_make(commands: list, targets: frozenset) -> tuple[list, int]:
    problems, checked = [], 0
    for c in commands:
        for segment in SEGMENT_SPLIT.split(_strip_comment(c.text)):
            tokens = segment.split()
            while tokens and ENV_ASSIGN.match(tokens[0]):
                tokens = tokens[1:]
            if not tokens or tokens[0] != "make":
                continue
            for tok in tokens[1:]:
                if tok.startswith("-") or ENV_ASSIGN.match(tok):
                    continue
                checked += 1
                if tok not in targets:
                    problems.append(f"{c.file}:{c.line}: make target {tok!r} is not in the Makefile "
                                    f"(targets: {', '.join(sorted(targets))})")
    return problems, checked


LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"`|\*\*|__", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set:
    blocks_free = [t for _, t in split_markdown(path.read_text(encoding="utf-8"))[1]]
    seen: dict = {}
    out = set()
    for t in blocks_free:
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", t)
        if not m:
            continue
        s = slug(m.group(1))
        n = seen.get(s, 0)
        out.add(s if n == 0 else f"{s}-{n}")
        seen[s] = n + 1
    return out


def check_links(path: Path, text: str | None = None) -> tuple[list, int]:
    text = path.read_text(encoding="utf-8") if text is None else text
    rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    _, prose = split_markdown(text)
    problems, checked = [], 0
    for n, line in prose:
        # Inline code is not a link.
        for m in LINK.finditer(re.sub(r"`[^`]*`", "", line)):
            target = m.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
                continue
            checked += 1
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            if not dest.exists():
                problems.append(f"{rel}:{n}: link {target} -> {dest} does not exist")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                problems.append(f"{rel}:{n}: link {target}: no heading #{anchor} in {dest.name}")
    return problems, checked


# ----------------------------------------------------------------------------------------------
# The tests

def test_the_docs_exist():
    names = [p.name for p in doc_files()]
    assert "README.md" in names and len(names) > 1, names


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_fenced_commands_parse(path):
    fenced, _ = doc_commands(path)
    problems, _ = check_commands(fenced)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_inline_commands_parse(path):
    _, inline = doc_commands(path)
    problems, _ = check_commands(inline)
    assert not problems, "\n".join(problems)


def test_commands_were_found():
    """The extraction finds the commands (a broken extractor would pass every check)."""
    per_command = {name: 0 for name in BUILDERS}
    for path in doc_files():
        fenced, inline = doc_commands(path)
        for c in fenced + inline:
            for command, _ in project_invocations(c.text):
                per_command[command] += 1
    assert all(n > 0 for n in per_command.values()), per_command


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_make_targets_exist(path):
    fenced, inline = doc_commands(path)
    problems, _ = check_make(fenced + inline, make_targets())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_exist(path):
    problems, _ = check_links(path)
    assert not problems, "\n".join(problems)


def test_readme_names_make_demo_and_test():
    fenced, _ = doc_commands(REPO / "README.md")
    problems, checked = check_make(fenced, make_targets())
    texts = " ".join(c.text for c in fenced)
    assert not problems and checked >= 2 and "make demo" in texts and "make test" in texts


# The checkers catch what they are for.

BAD_DOC = """\
Some prose with `mdnet-track seq --no-such-inline` in it.

```bash
mdnet-track --weights W.h5 video.mp4 --init 1,2,3,4 --no-such-option
horovodrun -np 2 -H localhost:2 mdnet-pretrain --config c.yaml --out runs/x --resumee
mdnet-eval run ../shared/data --tracker csrt --out-dir results/ope --weight W.h5
mdnet-eval nosuchsub --gt x
mdnet-data nosuchsub ROOT
mdnet-bench track --weights random:0 --frames 30 \\
    --bogus
make no-such-target
```

```
$ mdnet-import a.mat --out b.h5 --no-such-import-option
mdnet-import: output lines of a transcript are not commands --whatever
```

```python
mdnet-track --python-blocks-are-not-shell
```

A [broken link](no/such/file.md) and ![an image](eval/missing.png) and [an anchor](#no-such-heading).
"""


@pytest.fixture
def bad_doc(tmp_path):
    p = tmp_path / "bad.md"
    p.write_text(BAD_DOC)
    return p


def test_checker_catches_wrong_options_and_subcommands(bad_doc):
    fenced, inline = doc_commands(bad_doc)
    problems, checked = check_commands(fenced + inline)
    text = "\n".join(problems)
    for expected in ("--no-such-option", "--resumee", "--weight ", "'nosuchsub'", "--bogus",
                     "--no-such-import-option", "--no-such-inline"):
        assert expected in text, (expected, text)
    assert "mdnet-data: subcommand 'nosuchsub'" in text
    assert "--whatever" not in text and "--python-blocks" not in text
    # mdnet-eval nosuchsub is taken as `score nosuchsub` (a result folder), as the command does.
    assert checked == 8, checked


def test_checker_accepts_right_commands(tmp_path):
    p = tmp_path / "good.md"
    p.write_text("```\nmdnet-eval run ../shared/data --tracker csrt --out-dir results/ope   # comment --x\n"
                 "cd /tmp && mdnet-import a.mat --out b.h5\n"
                 "OMP_NUM_THREADS=1 /usr/bin/time .venv/bin/mdnet-track seq --mode exact|fast [--seed S]\n"
                 "python -m pretrain.cli --config c.yaml\n```\n")
    fenced, _ = doc_commands(p)
    problems, checked = check_commands(fenced)
    assert not problems and checked == 4, (problems, checked)


def test_checker_catches_make_targets_and_links(bad_doc):
    fenced, _ = doc_commands(bad_doc)
    problems, _ = check_make(fenced, make_targets())
    assert any("'no-such-target'" in p for p in problems), problems
    problems, checked = check_links(bad_doc)
    assert checked == 3 and len(problems) == 3, problems
