"""Configuration: ``evidence.toml`` and ``EVIDENCE_*`` variables, validated in one place.

Precedence, highest first: command-line options, environment variables, the TOML file,
defaults. Nested settings use a double underscore in variables (``EVIDENCE_S3__ACCESS_KEY``
sets ``[s3] access_key``).
"""

from __future__ import annotations

import getpass
import os
import socket
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from evidence_store.errors import EvidenceError

CONFIG_FILE = "evidence.toml"
ENV_PREFIX = "EVIDENCE_"
_config_path: ContextVar[Path | None] = ContextVar("evidence_config_path", default=None)


class ConfigError(EvidenceError):
    """A setting that is missing, unknown or invalid; the message names it."""


def _default_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class S3Settings(BaseModel):
    """Credentials and Object Lock settings for an ``s3://`` store."""

    model_config = ConfigDict(extra="forbid")

    access_key: SecretStr | None = Field(
        default=None, description="falls back to MINIO_ACCESS_KEY / AWS_ACCESS_KEY_ID"
    )
    secret_key: SecretStr | None = Field(
        default=None, description="falls back to MINIO_SECRET_KEY / AWS_SECRET_ACCESS_KEY"
    )
    retention_mode: Literal["COMPLIANCE", "GOVERNANCE", "NONE"] = Field(
        default="GOVERNANCE",
        description="Object Lock mode for new objects; COMPLIANCE in production",
    )
    retention_days: int = Field(
        default=3650, ge=1, le=36500, description="retention of new objects, in days"
    )
    legal_hold: bool = Field(default=False, description="put a legal hold on every new object")


class StoreSettings(BaseModel):
    """How the object store checks what it writes (``[store]``)."""

    model_config = ConfigDict(extra="forbid")

    verify_on_write: bool = Field(
        default=False,
        description="re-read and re-hash every new object after writing it; off by default: "
        "the local store hashes the bytes as it writes them (a re-read at once would read the "
        "page cache back), S3 compares the server's checksum of what it received",
    )


class TsaAuthConfig(BaseModel):
    """Credentials for one TSA (``[timestamps.tsa_auth."https://tsa.example/tsr"]``)."""

    model_config = ConfigDict(extra="forbid")

    username: str | None = Field(default=None, description="HTTP Basic user name")
    password: SecretStr | None = Field(default=None, description="HTTP Basic password")
    client_cert: Path | None = Field(default=None, description="TLS client certificate (PEM)")
    client_key: Path | None = Field(
        default=None, description="its private key (PEM), unless in client_cert"
    )
    ca_file: Path | None = Field(
        default=None, description="CA of the TSA's HTTPS server certificate, if not the system's"
    )

    @model_validator(mode="after")
    def _complete(self) -> TsaAuthConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key needs client_cert")
        for name in ("client_cert", "client_key", "ca_file"):
            path = getattr(self, name)
            if path is not None and not path.expanduser().is_file():
                raise ValueError(f"{name} file {path} does not exist")
        return self


class TimestampConfig(BaseModel):
    """RFC 3161 Time-Stamping Authorities: asked in order after each snapshot is archived."""

    model_config = ConfigDict(extra="forbid")

    tsa_urls: list[str] = Field(default_factory=list, description="TSA URLs, tried in order")
    trust_anchors: list[Path] = Field(
        default_factory=list, description="PEM files of the CAs trusted to issue timestamps"
    )
    timeout: float = Field(default=10.0, gt=0, le=300, description="seconds per TSA")
    tokens: int = Field(
        default=1,
        ge=1,
        le=10,
        description="tokens to keep per snapshot or Merkle root, each from a different TSA "
        "(the first that answer, in list order)",
    )
    mode: Literal["snapshot", "merkle"] = Field(
        default="snapshot",
        description="one token per snapshot, or one per run over a Merkle tree of its snapshots",
    )
    sources: dict[str, Literal["snapshot", "merkle"]] = Field(
        default_factory=dict, description="per-source mode, by source name (overrides mode)"
    )
    anchor_custody: bool = Field(
        default=True, description="timestamp the custody log's head after each run"
    )
    crls: list[Path] = Field(
        default_factory=list,
        description="CRL files (PEM or DER) of the TSAs' CAs, checked when tokens are verified",
    )
    archive_crls: bool = Field(
        default=True,
        description="after each run, fetch and archive the CRLs named in the TSA certificates",
    )
    tsa_auth: dict[str, TsaAuthConfig] = Field(
        default_factory=dict, description="credentials by TSA URL (each must be in tsa_urls)"
    )

    @field_validator("tsa_urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"not an http(s) URL: {url!r}")
            if "@" in url.split("/", 3)[2]:
                # The URL is written to the index and the custody log with every token.
                raise ValueError(
                    "a TSA URL must not carry credentials (they would be recorded with every "
                    "token): put them in [timestamps.tsa_auth]"
                )
        return value

    @model_validator(mode="after")
    def _auth_names_known_tsas(self) -> TimestampConfig:
        for url, auth in self.tsa_auth.items():
            if url not in self.tsa_urls:
                raise ValueError(f"tsa_auth names {url}, which is not one of tsa_urls")
            if auth.username is not None and not url.startswith("https://"):
                raise ValueError(f"tsa_auth for {url}: a password is only ever sent over https")
        return self

    @field_validator("crls")
    @classmethod
    def _crls(cls, value: list[Path]) -> list[Path]:
        from evidence_store.timestamps.tokens import load_crls

        for path in value:
            if not path.expanduser().is_file():
                raise ValueError(f"CRL file {path} does not exist")
            try:
                load_crls(path.expanduser().read_bytes())
            except EvidenceError as exc:
                raise ValueError(f"{path}: {exc}") from None
        return value

    @field_validator("trust_anchors")
    @classmethod
    def _anchors(cls, value: list[Path]) -> list[Path]:
        for path in value:
            if not path.is_file():
                raise ValueError(f"trust anchor file {path} does not exist")
        return value


class ScheduleSettings(BaseModel):
    """The scheduler (`evidence schedule start`)."""

    model_config = ConfigDict(extra="forbid")

    misfire_grace: int = Field(
        default=3600,
        ge=1,
        description="seconds a run missed (scheduler down) may still start late, once",
    )
    shutdown_grace: float = Field(
        default=600,
        ge=0,
        description="on SIGTERM/SIGINT, seconds to let running captures finish before "
        "stopping them (they are then recorded as interrupted)",
    )
    max_parallel: int = Field(default=2, ge=1, le=64, description="runs at once (any sources)")
    distributed: bool = Field(
        default=False,
        description="enqueue each run on the shared frontier ([workers] redis_url) for "
        "`evidence worker` processes, instead of capturing it on the scheduler's machine",
    )


class WorkerSettings(BaseModel):
    """Workers sharing a run's frontier: `evidence worker`, `evidence enqueue`, `--workers N`."""

    model_config = ConfigDict(extra="forbid")

    redis_url: str | None = Field(
        default=None,
        description="the shared frontier of distributed runs, redis://host:6379/0 (a password "
        "in it is a secret: better EVIDENCE_WORKERS__REDIS_URL)",
    )
    prefix: str = Field(
        default="evidence",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="prefix of every Redis key (two installations on one Redis)",
    )
    batch: int = Field(default=20, ge=1, le=10_000, description="items a worker takes at once")
    heartbeat: float = Field(
        default=5.0, gt=0, le=300, description="seconds between a worker's signs of life"
    )
    lost_after: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="seconds without a sign of life after which a worker's items are given "
        "to the others",
    )


class AlertSettings(BaseModel):
    """Where a run that needs a person is reported (`jobs/alerts.py`)."""

    model_config = ConfigDict(extra="forbid")

    on: list[Literal["schedule", "manual"]] = Field(
        default_factory=lambda: ["schedule"],
        description="which runs alert: scheduled ones, and/or those started by hand",
    )
    webhook_url: SecretStr | None = Field(
        default=None, description="POST a JSON message here (kept secret: URLs hold tokens)"
    )
    smtp_host: str | None = Field(default=None, description="send an e-mail through this host")
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_starttls: bool = Field(default=False, description="STARTTLS before logging in")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = Field(default="dsa-evidence@localhost")
    smtp_to: list[str] = Field(default_factory=list, description="recipients")
    timeout: float = Field(default=10, gt=0, le=120, description="seconds per attempt")

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("http://", "https://")):
            raise ValueError("the webhook must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _recipients(self) -> AlertSettings:
        if self.smtp_host is not None and not self.smtp_to:
            raise ValueError("smtp_host needs smtp_to (the recipients)")
        return self


class Settings(BaseSettings):
    """Every setting the `evidence` command reads."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    data_dir: Path = Field(
        default=Path("evidence-data"), description="local state: index, objects, keys"
    )
    db_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite:///<data_dir>/index.sqlite"
    )
    store_url: str | None = Field(
        default=None,
        description="file:///path or s3://host:port/bucket; default <data_dir>/objects",
    )
    actor: str = Field(
        default_factory=_default_actor, description="who is acting, for the custody log"
    )
    verify_workers: int = Field(
        default=os.cpu_count() or 2, ge=1, le=256, description="threads hashing in parallel"
    )
    allow_private: bool = Field(
        default=False,
        description="let captures reach loopback, link-local and private addresses "
        "(fixture sites, intranets); refused by default",
    )
    store: StoreSettings = Field(default_factory=StoreSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    timestamps: TimestampConfig = Field(default_factory=TimestampConfig)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    schedule: ScheduleSettings = Field(default_factory=lambda: ScheduleSettings())
    workers: WorkerSettings = Field(default_factory=WorkerSettings)
    sources: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per-source settings by source name ([sources.NAME]; `evidence sources show`)",
    )

    @field_validator("sources")
    @classmethod
    def _sources(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if not value:
            return value
        from jobs.sources import (
            SourceError,
            configured_source,
            normalise_configured,
            validate_settings,
        )

        try:
            merged = normalise_configured(value)
            for name in merged:
                _, spec, values = configured_source(merged, name)
                validate_settings(spec, values)
        except SourceError as exc:
            raise ValueError(str(exc)) from None
        return merged

    @field_validator("db_url", "store_url")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_path.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    # -- derived values --------------------------------------------------------------------
    @property
    def data_path(self) -> Path:
        return self.data_dir.expanduser().absolute()

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_path / 'index.sqlite'}"

    @property
    def object_store_url(self) -> str:
        return self.store_url or (self.data_path / "objects").as_uri()

    @property
    def keys_dir(self) -> Path:
        return self.data_path / "keys"

    def timestamp_mode(self, source: str | None) -> str:
        """How a source's runs are timestamped: [timestamps] sources, else an explicit
        [timestamps] mode, else what the source declares (``snapshot`` or ``merkle``)."""
        if source is not None and source in self.timestamps.sources:
            return self.timestamps.sources[source]
        if source is None or "mode" in self.timestamps.model_fields_set:
            return self.timestamps.mode
        from jobs.sources import SourceError, get_source

        try:
            return get_source(source).timestamp_mode
        except SourceError:  # a name given with --source that is no registered source
            return self.timestamps.mode

    def timestamp_settings(self) -> Any:
        """The timestamping configuration as the evidence store takes it."""
        from evidence_store.timestamps.client import TsaAccess
        from evidence_store.timestamps.service import TimestampSettings

        return TimestampSettings(
            tsa_urls=tuple(self.timestamps.tsa_urls),
            trust_anchors=tuple(p.expanduser().absolute() for p in self.timestamps.trust_anchors),
            timeout=self.timestamps.timeout,
            mode=self.timestamps.mode,
            source_modes=dict(self.timestamps.sources),
            tokens=self.timestamps.tokens,
            crls=tuple(p.expanduser().absolute() for p in self.timestamps.crls),
            access={
                url: TsaAccess(
                    username=auth.username,
                    password=auth.password.get_secret_value() if auth.password else None,
                    client_cert=_absolute(auth.client_cert),
                    client_key=_absolute(auth.client_key),
                    ca_file=_absolute(auth.ca_file),
                )
                for url, auth in self.timestamps.tsa_auth.items()
            },
        )

    def store_options(self) -> dict[str, Any]:
        """Constructor options for the configured object store."""
        options: dict[str, Any] = {"verify_on_write": self.store.verify_on_write}
        if not self.object_store_url.startswith(("s3://", "minio://", "http://", "https://")):
            return options
        options |= {
            "retention_mode": None if self.s3.retention_mode == "NONE" else self.s3.retention_mode,
            "retention_days": self.s3.retention_days,
            "legal_hold": self.s3.legal_hold,
        }
        if self.s3.access_key is not None:
            options["access_key"] = self.s3.access_key.get_secret_value()
        if self.s3.secret_key is not None:
            options["secret_key"] = self.s3.secret_key.get_secret_value()
        return options

    def public_view(self) -> dict[str, Any]:
        """The effective settings with secrets and passwords hidden (for `config show`)."""
        from evidence_store.index import redact_url

        data = self.model_dump(mode="json")
        data["data_dir"] = str(self.data_path)
        data["db_url"] = redact_url(self.database_url)
        data["store_url"] = self.object_store_url
        for key in ("access_key", "secret_key"):
            data["s3"][key] = "********" if getattr(self.s3, key) is not None else None
        if self.workers.redis_url:
            data["workers"]["redis_url"] = redact_url(self.workers.redis_url)
        for url, auth in data["timestamps"]["tsa_auth"].items():
            if auth.get("password") is not None:
                data["timestamps"]["tsa_auth"][url]["password"] = "********"
        if self.sources:
            from jobs.sources import configured_source, describe

            data["sources"] = {
                name: {
                    s["name"]: s["value"]
                    for s in describe(configured_source(self.sources, name)[1], values)["settings"]
                    if s["configured"]
                }
                for name, values in self.sources.items()
            }
        return data


def _absolute(path: Path | None) -> Path | None:
    return path.expanduser().absolute() if path is not None else None


def config_file(explicit: Path | None = None) -> Path | None:
    """The TOML file in use: --config, else EVIDENCE_CONFIG, else ./evidence.toml if present."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"configuration file {explicit} does not exist")
        return explicit
    if env := os.environ.get(f"{ENV_PREFIX}CONFIG"):
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"EVIDENCE_CONFIG names {path}, which does not exist")
        return path
    default = Path(CONFIG_FILE)
    return default if default.is_file() else None


def _known_variables() -> set[str]:
    known = {f"{ENV_PREFIX}CONFIG"}
    for name, info in Settings.model_fields.items():
        known.add(f"{ENV_PREFIX}{name.upper()}")
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            known.update(
                f"{ENV_PREFIX}{name.upper()}__{sub.upper()}" for sub in annotation.model_fields
            )
    return known


def _known_source_variable(key: str) -> bool:
    from jobs.sources import SourceError, get_source

    name, _, setting = key.removeprefix(f"{ENV_PREFIX}SOURCES__").partition("__")
    try:
        spec = get_source(name.lower())
    except SourceError:
        # An entry of the file's own naming (type = ...): its keys are checked when the
        # settings are validated, with the entry's source.
        return bool(setting)
    return setting.lower() in spec.settings.model_fields


def _check_environment() -> None:
    # A misspelt variable would otherwise be ignored silently, and the archive written elsewhere.
    known = _known_variables()
    unknown = sorted(
        key
        for key in os.environ
        if key.upper().startswith(ENV_PREFIX)
        and key.upper() not in known
        and not (key.upper().startswith(f"{ENV_PREFIX}SOURCES__") and _known_source_variable(key))
    )
    if unknown:
        raise ConfigError(
            f"unknown environment variable {unknown[0]} (known: see `evidence config show`)"
        )


def _env_name(loc: tuple[Any, ...]) -> str:
    return ENV_PREFIX + "__".join(str(part) for part in loc).upper()


def load_settings(config_path: Path | None = None, **overrides: Any) -> Settings:
    """Read and validate the settings; a ConfigError names each bad key and where to fix it."""
    path = config_file(config_path)
    if path is not None:
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read configuration file {path}: {exc}") from None
    _check_environment()
    token = _config_path.set(path)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        messages = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"])
            where = f"{path} or {_env_name(error['loc'])}" if path else _env_name(error["loc"])
            if error["type"] == "extra_forbidden":
                messages.append(f"unknown setting {key!r} (in {where})")
            else:
                messages.append(f"invalid setting {key!r} (from {where}): {error['msg']}")
        raise ConfigError("; ".join(messages)) from None
    finally:
        _config_path.reset(token)
