"""The profile's operations sections: ``[backup]``, ``[check]``, ``[alerts]``, ``[export]``
(what ``serve`` does on a schedule, and what ``postroom check`` looks at).

Kept apart from ``profile.py`` (the mail path's keys); each section is one field of
``Profile``. The sections follow the same rules: strict types, durations as ``"5m"``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from postroom.site.duration import Duration


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class BackupSection(_Section):
    dest: str = Field("", description="directory that holds the generations; empty: serve "
                      "takes no backups (postroom backup DEST still works)")
    every: Duration = Field(86400.0, description="how often serve takes a backup")
    keep: int = Field(7, ge=1, le=1000, description="generations kept by pruning")
    max_shrink: float = Field(50.0, ge=0, le=100, description="a backup this many percent "
                              "smaller than the last is kept but not promoted")
    to: list[str] = Field(default_factory=list, description="mirrors each scheduled backup "
                          "is pushed to with rsync: rsync://HOST[:PORT]/MODULE/PATH or HOST:PATH")

    @field_validator("every")
    @classmethod
    def _every(cls, v: float) -> float:
        if v < 60:
            raise ValueError(f"{v:g} seconds is too often for a backup; write e.g. 6h or 1d")
        return v


class CheckSection(_Section):
    deliverable: list[str] = Field(default_factory=list,
                                   description="addresses postroom check expects to be taken")
    undeliverable: list[str] = Field(default_factory=list, description="made-up addresses "
                                     "that must be refused (the site is not taking all mail)")
    names: list[str] = Field(default_factory=list, description="service names whose A/AAAA "
                             "must point at this host; empty: site.hostname and host_names")
    mx_domains: list[str] = Field(default_factory=list, description="domains whose MX should "
                                  "name this host; empty: site.domains")
    submission_name: str = Field("", description="the name in the submission certificate; "
                                 "empty: site.hostname")
    cert_days: int = Field(14, ge=0, description="warn when the certificate expires sooner")


class AlertsSection(_Section):
    every: Duration = Field(300.0, description="how often serve looks; 0 turns alerts off")
    deferred_age: Duration = Field(3600.0, description="alert when the oldest deferred "
                                   "message has waited longer")
    deferred_count: int = Field(100, ge=1, description="alert when more messages are deferred")
    period: Duration = Field(86400.0, description="mail the postmaster about one trouble at "
                             "most once in this time (it is logged at every look)")
    to: str = Field("", description="who is mailed; empty: site.postmaster")


class ExportSection(_Section):
    every: Duration = Field(3600.0, description="how often serve writes the address export "
                            "(also at start, after a reload and when lists change); 0: never")
    max_shrink: float = Field(10.0, ge=0, le=100, description="keep the old export when the "
                              "new one has this many percent fewer addresses")
