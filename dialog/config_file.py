"""Reading YAML config files with line numbers, and turning validation failures into clear errors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)
Loc = Sequence[str | int]

MAX_PROBLEMS_SHOWN = 10


class FlowConfigError(ValueError):
    """A flow or knowledge file is wrong; the message names the file, the key and the problem."""

    def __init__(self, file: Path | str, problems: list[ConfigProblem]) -> None:
        self.file = str(file)
        self.problems = problems
        lines = [p.describe(self.file) for p in problems[:MAX_PROBLEMS_SHOWN]]
        if len(problems) > MAX_PROBLEMS_SHOWN:
            lines.append(f"... and {len(problems) - MAX_PROBLEMS_SHOWN} more problems")
        super().__init__("\n".join(lines))

    @property
    def key(self) -> str:
        """Dotted key path of the first problem (empty when the whole file is at fault)."""
        return self.problems[0].key if self.problems else ""

    @property
    def line(self) -> int | None:
        return self.problems[0].line if self.problems else None


@dataclass(frozen=True)
class ConfigProblem:
    key: str
    message: str
    line: int | None = None

    def describe(self, file: str) -> str:
        where = f"{file}:{self.line}" if self.line else file
        key = self.key or "(top level)"
        return f"{where}: {key}: {self.message}"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: with plain YAML the second one silently wins."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first at line {seen[key]})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def key_path(loc: Loc) -> str:
    """`("intents", "balance", "examples", 0)` -> `intents.balance.examples[0]`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class YamlDocument:
    """A parsed YAML file that still knows where each value came from."""

    path: Path
    data: Any
    root: yaml.Node | None

    def line_of(self, loc: Loc) -> int | None:
        """Line (1-based) of the deepest node that `loc` reaches."""
        node = self.root
        if node is None:
            return None
        line = node.start_mark.line + 1
        for part in loc:
            found = _child_node(node, part)
            if found is None:
                break
            line, node = found[0].start_mark.line + 1, found[1]
        return line

    def problem(self, loc: Loc, message: str) -> ConfigProblem:
        return ConfigProblem(key=key_path(loc), message=message, line=self.line_of(loc))

    def error(self, loc: Loc, message: str) -> FlowConfigError:
        return FlowConfigError(self.path, [self.problem(loc, message)])

    def validate(self, model: type[ModelT]) -> ModelT:
        """Validate the whole document against `model`, or raise FlowConfigError listing every problem."""
        if not isinstance(self.data, dict):
            kind = "nothing" if self.data is None else type(self.data).__name__
            raise self.error((), f"expected a mapping of keys at the top of the file, found {kind}")
        try:
            return model.model_validate(self.data)
        except ValidationError as exc:
            problems = sorted((self._problem_from(err) for err in exc.errors()), key=lambda p: p.line or 0)
            raise FlowConfigError(self.path, problems) from None

    def _problem_from(self, err: Any) -> ConfigProblem:
        loc = _data_loc(self.data, tuple(err["loc"]))
        kind = err["type"]
        if kind == "extra_forbidden":
            message = "unknown key (check the spelling; the keys are listed in docs/DIALOG.md)"
        elif kind == "missing":
            message = "required key is missing"
        elif kind in ("union_tag_not_found", "union_tag_invalid"):
            ctx = err.get("ctx", {})
            discriminator = str(ctx.get("discriminator", "")).strip("'")
            if kind == "union_tag_not_found":
                message = f"required key {discriminator!r} is missing"
            else:
                loc = (*loc, discriminator)
                message = f"{ctx.get('tag')!r} is not a known {discriminator} (use one of {ctx.get('expected_tags')})"
        else:
            message = str(err["msg"])
            if "input" in err and kind not in ("missing",):
                message += f" (got {_short(err['input'])})"
            if isinstance(err.get("input"), bool):
                message += "; YAML reads yes/no/on/off as true/false, put the text in quotes"
        return self.problem(loc, message)


def read_yaml(path: Path | str) -> YamlDocument:
    """Parse one YAML file; syntax errors, duplicate keys and empty files raise FlowConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FlowConfigError(path, [ConfigProblem("", f"cannot read the file: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise FlowConfigError(path, [ConfigProblem("", f"not UTF-8 text: {exc.reason}")]) from None
    loader = _StrictLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark is not None else None
        raise FlowConfigError(path, [ConfigProblem("", f"invalid YAML: {problem}", line)]) from None
    finally:
        loader.dispose()
    if data is None:
        raise FlowConfigError(path, [ConfigProblem("", "the file is empty")])
    return YamlDocument(path=path, data=data, root=root)


def _child_node(node: yaml.Node, part: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    """(node to point at, node to descend into): a mapping's key line reads best in messages."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if str(key_node.value) == str(part):
                return key_node, value_node
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return node.value[part], node.value[part]
    return None


def _data_loc(data: Any, loc: tuple[Any, ...]) -> tuple[str | int, ...]:
    """Map pydantic's error location onto keys that exist in the file.

    Pydantic inserts its own steps (union tags, `[key]` for dict keys, validator names); a step
    is kept only when it is found in the data, or when it is the last one (a missing key).
    """
    out: list[str | int] = []
    current = data
    for i, part in enumerate(loc):
        if isinstance(current, dict):
            match = next((k for k in current if str(k) == str(part)), None)
            if match is not None:
                out.append(str(match))
                current = current[match]
                continue
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            out.append(part)
            current = current[part]
            continue
        if i == len(loc) - 1 and isinstance(part, str | int) and part != "[key]":
            out.append(part)
    return tuple(out)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
