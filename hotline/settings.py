"""Settings: one YAML file validated at start-up; a bad file stops the process with a clear error."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(Exception):
    """A configuration file is wrong: names the file, the key and the problem."""

    def __init__(self, file: str | Path, key: str, problem: str, line: int | None = None) -> None:
        self.file, self.key, self.problem, self.line = str(file), key, problem, line
        where = f"{self.file}:{line}" if line else self.file
        super().__init__(f"{where}: {key}: {problem}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SipSettings(_Strict):
    # asyncio: the project's own SIP stack (hundreds of calls); pjsua2: PJSIP's, for small sites (4 calls).
    backend: Literal["asyncio", "pjsua2"] = "asyncio"
    host: str = "127.0.0.1"
    port: int = Field(5080, ge=0, le=65535)
    max_calls: int = Field(200, ge=1, le=10000)
    rtp_port_min: int = Field(20000, ge=1024, le=65535)
    rtp_port_max: int = Field(40000, ge=1024, le=65535)

    @model_validator(mode="after")
    def _backend_limits(self) -> SipSettings:
        if self.rtp_port_min >= self.rtp_port_max:
            raise ValueError("rtp_port_min must be below rtp_port_max")
        if self.backend == "pjsua2" and self.max_calls > 4:
            raise ValueError("the pjsua2 backend holds at most 4 calls (see docs/PJSUA2.md); set max_calls: 4")
        return self


class DatabaseSettings(_Strict):
    url: str | None = None


class AsrSettings(_Strict):
    backend: str = "whisper"
    model_path: str | None = None
    threads: int = Field(2, ge=1, le=64)


class EndpointingSettings(_Strict):
    silence_ms: int = Field(700, ge=100, le=5000)
    pre_roll_ms: int = Field(300, ge=0, le=2000)
    max_utterance_s: float = Field(15.0, gt=0, le=120)
    no_input_s: float = Field(6.0, gt=0, le=120)


class TtsSettings(_Strict):
    backend: str = "espeak"


class DialogSettings(_Strict):
    flow: str = "flows/bank.yaml"


class AgentSettings(_Strict):
    name: str = Field(min_length=1, max_length=64)
    uri: str
    skills: dict[str, int] = {}  # e.g. {zh: 2, cards: 1, vip: 1}; levels 1 = basic, higher = better

    @field_validator("uri")
    @classmethod
    def _sip_uri(cls, v: str) -> str:
        if not v.startswith(("sip:", "sips:")):
            raise ValueError("must be a SIP URI such as sip:anna@127.0.0.1:5090")
        return v


class QueueSettings(_Strict):
    name: str = Field(min_length=1, max_length=64)
    max_wait_s: float = Field(600, gt=0)
    ring_timeout_s: float = Field(20, gt=0, le=120)
    strategy: Literal["longest_idle", "round_robin", "fewest_calls", "skills_weighted"] = "longest_idle"
    needs: dict[str, int] = {}  # skills every agent of this queue must have
    wrap_up_s: float = Field(5.0, ge=0, le=3600)  # after a call, before the agent is offered another
    hold_prompt: dict[str, str] = {"en": "All our agents are busy. Please stay on the line."}
    connect_prompt: dict[str, str] = {"en": "Connecting you to an agent now."}
    agents: list[AgentSettings] = []


class RoutingSettings(_Strict):
    # An agent who misses a ring is "not ready" for this long, then offered calls again.
    not_ready_after_no_answer_s: float = Field(30.0, ge=0, le=86400)


class Settings(_Strict):
    node_name: str = "worker-1"
    sip: SipSettings = SipSettings()
    data_dir: str = "var"
    database: DatabaseSettings = DatabaseSettings()
    asr: AsrSettings = AsrSettings()
    endpointing: EndpointingSettings = EndpointingSettings()
    tts: TtsSettings = TtsSettings()
    dialog: DialogSettings = DialogSettings()
    routing: RoutingSettings = RoutingSettings()
    queues: list[QueueSettings] = Field(default_factory=lambda: [QueueSettings(name="general")])
    # Where this file was read from: relative paths in it are resolved against its folder.
    config_dir: str = "."

    @field_validator("queues")
    @classmethod
    def _unique_queue_names(cls, v: list[QueueSettings]) -> list[QueueSettings]:
        names = [q.name for q in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"queue names must be unique; repeated: {', '.join(dupes)}")
        if not v:
            raise ValueError("at least one queue is needed (calls for a person go there)")
        return v

    @property
    def database_url(self) -> str:
        env = os.environ.get("HOTLINE_DATABASE_URL")
        if env:
            return env
        if self.database.url:
            return self.database.url
        return f"sqlite:///{Path(self.data_dir).resolve() / 'hotline.db'}"

    @property
    def recordings_dir(self) -> Path:
        return Path(self.data_dir).resolve() / "recordings"

    @property
    def flow_path(self) -> Path:
        return (Path(self.config_dir) / self.dialog.flow).resolve()


DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "server.yaml"


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Reads and validates the server settings; raises ConfigError naming file, key and problem."""
    path = Path(path) if path else DEFAULT_CONFIG
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "(file)", "not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "(file)", f"cannot be read: {exc}") from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise ConfigError(path, "(syntax)", str(getattr(exc, "problem", exc)), line) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, "(top level)", "must be a mapping of settings, e.g. 'sip: {port: 5080}'")
    data = {**data, **overrides, "config_dir": str(path.resolve().parent)}
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ConfigError(path, key, err["msg"], _line_of(node, err["loc"])) from None


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of a key path in the YAML document, as far as the path exists."""
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == part), None)
            key_node = next((k for k, v in node.value if k.value == part), None)
            if key_node is None:
                break
            line, node = key_node.start_mark.line + 1, match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
