"""The settings model: YAML validated by Pydantic, every problem reported as `<yaml.path>: <message>`."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from storyloom.domain.durations import cron_every, format_duration, parse_duration
from storyloom.domain.egress import DEFAULT_EGRESS, EgressPolicy
from storyloom.domain.expiry import DEFAULT_RESOLVE_TIMEOUT
from storyloom.domain.faults import FaultSpec

MAX_DURATION = timedelta(days=365)
"""No timer, timeout or window of the config is longer: a longer one is a typo, not a setting."""


def _duration(value: Any) -> timedelta:
    delta = value if isinstance(value, timedelta) else parse_duration(value)
    if delta > MAX_DURATION:
        raise ValueError(f"{format_duration(delta)} is too long: the most is {format_duration(MAX_DURATION)}")
    return delta


def _positive(delta: timedelta) -> timedelta:
    if delta <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return delta


Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    PlainSerializer(format_duration, return_type=str),
]
PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
"""A timeout, an age or a window: zero would make it fire at once or never wait."""


DEFAULT_PUBLIC_URL = "http://127.0.0.1:8700"


class ConfigError(Exception):
    """A config that cannot be used; `problems` are the `config check` lines."""

    def __init__(self, problems: list[str]) -> None:
        problems = [_one_line(problem) for problem in problems]
        super().__init__("\n".join(problems))
        self.problems = problems


def _one_line(text: str) -> str:
    """A problem quotes what the file says; escape control characters so each problem stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


class LLMConfig(_Model):
    provider: Literal["offline", "openai"] = "offline"
    base_url: str = "http://127.0.0.1:11434/v1"
    model: str = "gpt-4o-mini"
    api_key_env: str = "OPENAI_API_KEY"
    timeout: PositiveDuration = timedelta(seconds=60)
    max_retries: int = Field(default=3, ge=0, le=10)
    faults: list[FaultSpec] = Field(default_factory=list)
    offline_lore_status: Literal["ready", "planned", "missing"] = (
        "ready"  # offline provider: lore needs' status
    )


class CritiqueConfig(_Model):
    enabled: bool = True
    max_total: int = Field(default=6, ge=0)
    max_per_step: int = Field(default=2, ge=0)
    max_tokens: int = Field(default=8000, ge=0)


class QuotaConfig(_Model):
    max_iterations: int | None = Field(default=None, ge=1)
    max_queued_jobs: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)


class QuotasConfig(_Model):
    per_planner: dict[str, QuotaConfig] = Field(default_factory=dict)
    per_persona: QuotaConfig = Field(default_factory=QuotaConfig)


class PipelineConfig(_Model):
    max_phase_attempts: int = Field(default=3, ge=1, le=20)
    phase_timeout: PositiveDuration = timedelta(minutes=10)
    scenes_per_chapter: int = Field(default=2, ge=1, le=20)
    chapters: int = Field(default=3, ge=1, le=50)
    critique: CritiqueConfig = Field(default_factory=CritiqueConfig)
    quotas: QuotasConfig = Field(default_factory=QuotasConfig)
    concurrency: int = Field(default=8, ge=1, le=256)
    # phases a provider's queue may start per second (0 = unlimited; 0.5 = one every two seconds)
    provider_rate_limits: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    lore_sla: PositiveDuration = timedelta(minutes=45)
    auto_resume_after: PositiveDuration = timedelta(minutes=60)
    max_premise_chars: int = Field(default=20_000, ge=100)
    retry_backoff: Duration = timedelta(milliseconds=200)


class LatencySlo(_Model):
    objective: float = Field(default=0.95, gt=0, lt=1)
    threshold: PositiveDuration = timedelta(minutes=2)


class QueueAgeSlo(_Model):
    threshold: PositiveDuration = timedelta(minutes=15)


class RatioSlo(_Model):
    objective: float = Field(gt=0, lt=1)


class SloConfig(_Model):
    phase_latency: LatencySlo = Field(default_factory=LatencySlo)
    queue_age: QueueAgeSlo = Field(default_factory=QueueAgeSlo)
    critique_pass: RatioSlo = Field(default_factory=lambda: RatioSlo(objective=0.90))
    delivery_success: RatioSlo = Field(default_factory=lambda: RatioSlo(objective=0.99))


class HealthConfig(_Model):
    evaluate_every: Duration = timedelta(seconds=30)
    stale_in_progress: PositiveDuration = timedelta(hours=2)
    obligation_aging: PositiveDuration = timedelta(hours=12)
    worldbible_stale: PositiveDuration = timedelta(hours=6)
    recent_failure_window: PositiveDuration = timedelta(hours=24)
    flapping_threshold: int = Field(default=3, ge=2)
    slo: SloConfig = Field(default_factory=SloConfig)

    @field_validator("evaluate_every")
    @classmethod
    def _schedulable(cls, every: timedelta) -> timedelta:
        """The evaluation is a DBOS scheduled workflow: its interval must be a cron schedule."""
        cron_every(every)
        return every


class EgressConfig(_Model):
    """Link-local and metadata addresses are always refused; the defaults come from `DEFAULT_EGRESS`."""

    allow_loopback: bool = DEFAULT_EGRESS.allow_loopback
    allow_private: bool = DEFAULT_EGRESS.allow_private

    def policy(self) -> EgressPolicy:
        return EgressPolicy(allow_loopback=self.allow_loopback, allow_private=self.allow_private)


class RetryConfig(_Model):
    schedule: list[Duration] = Field(
        default_factory=lambda: [parse_duration(d) for d in ("0s", "5s", "30s", "2m", "10m", "30m", "1h")],
        min_length=1,
    )
    max_age: PositiveDuration = timedelta(hours=24)


class ReceiverConfig(_Model):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
    type: Literal["webhook", "slack", "pagerduty", "alertmanager_webhook"] = "webhook"
    url: str
    secret_env: str | None = None
    secret_file: str | None = None
    routing_key: str | None = None
    send_resolved: bool = True
    timeout: PositiveDuration = timedelta(seconds=10)
    max_per_second: float = Field(default=0, ge=0)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    headers: dict[str, str] = Field(default_factory=dict)


class RouteConfig(_Model):
    receiver: str | None = None
    matchers: list[str] = Field(default_factory=list)
    group_by: list[str] | None = None
    group_wait: Duration | None = None
    group_interval: PositiveDuration | None = None
    repeat_interval: PositiveDuration | None = None
    continue_: bool = Field(default=False, alias="continue")
    routes: list[RouteConfig] = Field(default_factory=list)


class InhibitRuleConfig(_Model):
    source_matchers: list[str] = Field(min_length=1)
    target_matchers: list[str] = Field(min_length=1)
    equal: list[str] = Field(default_factory=list)


class SloThresholdConfig(_Model):
    matchers: list[str] = Field(min_length=1)
    threshold: PositiveDuration


class AlertingConfig(_Model):
    source: str = "storyloom"
    egress: EgressConfig = Field(default_factory=EgressConfig)
    receivers: list[ReceiverConfig] = Field(default_factory=list)
    route: RouteConfig | None = None
    inhibit_rules: list[InhibitRuleConfig] = Field(default_factory=list)
    slo_thresholds: list[SloThresholdConfig] = Field(default_factory=list)
    max_alerts_per_notification: int = Field(default=100, ge=1, le=10_000)
    resolve_timeout: Duration = DEFAULT_RESOLVE_TIMEOUT  # an ingested alert without endsAt ends after this

    @field_validator("resolve_timeout")
    @classmethod
    def _positive_timeout(cls, timeout: timedelta) -> timedelta:
        if timeout <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return timeout


class DatabaseConfig(_Model):
    """PostgreSQL connections of each process (SQLite ignores both)."""

    pool_size: int = Field(default=10, ge=1, le=200)
    statement_timeout: Duration = timedelta(seconds=60)  # 0s: no limit


class ClusterConfig(_Model):
    """Worker liveness: how often each worker beats, and how long a silent one waits before a takeover."""

    heartbeat_every: PositiveDuration = timedelta(seconds=3)
    takeover_after: Duration = timedelta(seconds=15)
    drain_timeout: Duration = timedelta(minutes=2)  # SIGTERM: how long phases in flight may take to finish

    @field_validator("takeover_after")
    @classmethod
    def _beats_fit_in_the_window(cls, v: timedelta, info: ValidationInfo) -> timedelta:
        beat = info.data.get("heartbeat_every")
        if beat is not None and v < 3 * beat:
            raise ValueError(
                f"must be at least 3 times heartbeat_every ({format_duration(3 * beat)}), so one late beat is not a takeover"
            )
        return v


class FailedAuthConfig(_Model):
    """Per client: `burst` failed sign-ins or bearer tokens, one more back every `refill_every`."""

    burst: int = Field(default=10, ge=1, le=10_000)
    refill_every: Duration = timedelta(seconds=6)
    max_clients: int = Field(default=10_000, ge=1, le=1_000_000)

    @field_validator("refill_every")
    @classmethod
    def _positive(cls, every: timedelta) -> timedelta:
        if every <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return every


class SecurityConfig(_Model):
    session_ttl: Duration = timedelta(hours=12)
    failed_auth: FailedAuthConfig = Field(default_factory=FailedAuthConfig)

    @field_validator("session_ttl")
    @classmethod
    def _session_length(cls, ttl: timedelta) -> timedelta:
        if not timedelta(minutes=1) <= ttl <= timedelta(days=30):
            raise ValueError("must be between 1m and 30d")
        return ttl


class LimitsConfig(_Model):
    """What the API accepts at its door: 413 past `max_body_bytes`, 422 naming the field past the others."""

    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_alerts_per_request: int = Field(default=1000, ge=1, le=100_000)
    max_labels_per_alert: int = Field(default=64, ge=1, le=1000)
    max_label_name_length: int = Field(default=128, ge=16, le=1024)
    max_label_value_length: int = Field(default=2048, ge=16, le=1024 * 1024)
    max_annotation_value_length: int = Field(default=16 * 1024, ge=16, le=1024 * 1024)
    max_matchers_per_silence: int = Field(default=50, ge=1, le=1000)


class Config(_Model):
    environment: str = "pre-alpha"
    public_url: str = DEFAULT_PUBLIC_URL
    database_url: str | None = None
    demo_receiver: bool = False
    metrics_require_token: bool = False
    llm: LLMConfig = Field(default_factory=LLMConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    alerting: AlertingConfig = Field(default_factory=AlertingConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")


def data_dir() -> Path:
    return Path(os.environ.get("STORYLOOM_DATA_DIR", "./var"))


def database_url(config: Config) -> str:
    """`STORYLOOM_DATABASE_URL` wins over the config; the default is a SQLite file in the data dir."""
    url = os.environ.get("STORYLOOM_DATABASE_URL") or config.database_url
    return url or f"sqlite:///{(data_dir() / 'storyloom.db').resolve()}"


_PLAIN_KEY = re.compile(r"[\w:.-]+")


def _loc(parts: tuple[int | str, ...]) -> str:
    """`alerting.receivers[0].url`; a key that is empty or holds spaces or symbols is quoted: `['a b']`."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(str(part)):
            out += ("." if out else "") + str(part)
        else:
            out += f"[{str(part)!r}]"
    return out or "(root)"


def _pydantic_problems(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if p not in ("function-after", "function-before"))
        loc = tuple("continue" if p == "continue_" else p for p in loc)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against docs/reference/config.md)"
        problems.append(f"{_loc(loc)}: {msg}")
    return problems


def parse_config(data: Any) -> Config:
    """Validate a parsed YAML document's settings; raises ConfigError listing every problem.

    The alerting section's cross-checks (receivers, routes, secrets) are `runtime.load_checked_config`'s.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(["(root): the config must be a YAML mapping"])
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_pydantic_problems(err)) from None


def load_config(path: str | Path | None) -> Config:
    """Read and validate a config file's settings (or the defaults when `path` is None)."""
    if path is None:
        return parse_config({})
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError([f"(file): cannot read {path}: {exc.strerror or exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            [f"(file): {path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}"]
        ) from None
    return parse_config(_relative_to(data, path.parent))


def _relative_to(data: Any, folder: Path) -> Any:
    """`secret_file` paths in a config file are relative to that file, not to the working directory."""
    receivers = (
        data.get("alerting", {}).get("receivers")
        if isinstance(data, dict) and isinstance(data.get("alerting"), dict)
        else None
    )
    for receiver in receivers if isinstance(receivers, list) else []:
        secret_file = receiver.get("secret_file") if isinstance(receiver, dict) else None
        if not isinstance(secret_file, str) or not secret_file or "\0" in secret_file:
            continue  # not a path: validation says so
        if not Path(secret_file).is_absolute():
            receiver["secret_file"] = str((folder / secret_file).resolve())
    return data
