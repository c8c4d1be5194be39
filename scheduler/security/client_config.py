"""Client configuration files: where a scheduler is and how to prove who you
are, as a kubeconfig says it for kubectl. `gpupool up` and `gpupool serve`
write one for their bootstrap admin (<data-dir>/admin.yaml); `gpupool token
create --write FILE` and `gpupool certs issue-agent` write others.

    scheduler: 127.0.0.1:50051        # the API port (tokens)
    agent_endpoint: 127.0.0.1:50052   # the mutual-TLS port (certificates)
    ca_cert: /path/to/ca.crt
    token: gpp_…                      # or token_file:, or cert: + key:
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from scheduler.security.channels import ClientCredentials
from scheduler.security.pki import KeyPair

CONFIG_NAME = "admin.yaml"
USER_CONFIG = Path("~/.config/gpupool/config.yaml")


class ConfigError(ValueError):
    pass


class ClientConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scheduler: str = ""
    agent_endpoint: str = ""
    ca_cert: Path | None = None
    token: str = ""
    token_file: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    insecure: bool = False

    @classmethod
    def read(cls, path: Path) -> ClientConfig:
        try:
            document = yaml.safe_load(path.read_text()) or {}
            config = cls.model_validate(document)
        except (OSError, yaml.YAMLError, ValidationError) as exc:
            raise ConfigError(f"cannot read the client config {path}: {exc}") from exc
        # Relative paths are relative to the file, as in a kubeconfig.
        base = path.resolve().parent
        return config.model_copy(
            update={
                key: base / value
                for key in ("ca_cert", "token_file", "cert", "key")
                if isinstance(value := getattr(config, key), Path) and not value.is_absolute()
            }
        )

    def write(self, path: Path) -> None:
        """Written 0600: it holds a secret."""
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {k: str(v) for k, v in self.model_dump(exclude_defaults=True).items()}
        if self.insecure:
            document["insecure"] = True  # type: ignore[assignment]
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            yaml.safe_dump(document, file, sort_keys=False)

    def credentials(self) -> ClientCredentials:
        if self.insecure:
            return ClientCredentials(insecure=True)
        if self.ca_cert is None:
            raise ConfigError("the client config names no ca_cert (or set insecure: true)")
        token = self.token
        if not token and self.token_file is not None:
            token = self.token_file.read_text().strip()
        pair = None
        if self.cert is not None or self.key is not None:
            if self.cert is None or self.key is None:
                raise ConfigError("a client certificate needs both cert and key")
            pair = KeyPair.read(self.key, self.cert)
        return ClientCredentials(ca_pem=self.ca_cert.read_bytes(), token=token, certificate=pair)


def find_config(explicit: Path | None = None) -> ClientConfig | None:
    """The first of: the given file, ./.gpupool/admin.yaml, ~/.config/gpupool/config.yaml."""
    if explicit is not None:
        return ClientConfig.read(explicit)
    for candidate in (Path(".gpupool") / CONFIG_NAME, USER_CONFIG.expanduser()):
        if candidate.is_file():
            return ClientConfig.read(candidate)
    return None
