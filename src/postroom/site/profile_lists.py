"""The ``[lists]`` section of the site profile: what ``serve`` does for the list engine
on a schedule (digests, held-post reminders and expiry, membership sync)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from postroom.site.duration import Duration


class ListSync(BaseModel):
    """One ``[[lists.sync]]`` entry: a list whose members ``serve`` keeps equal to a
    source, a file or the output of a shell command (one of them)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    list: str = Field(description="the list's address (or name when unambiguous)")
    file: str = Field("", description="member file, relative to the site home or absolute")
    command: str = Field("", description="shell command whose output is the member list")
    every: Duration = Field(3600.0, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> ListSync:
        if bool(self.file) == bool(self.command):
            raise ValueError(f"[[lists.sync]] for {self.list}: give file or command "
                             "(exactly one)")
        return self


class ListsSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    digest_check: Duration = Field(600.0, gt=0, description="how often serve sends the "
                                   "digests that are due (size or period reached)")
    held_check: Duration = Field(86400.0, gt=0, description="how often serve discards "
                                 "expired held posts and reminds moderators of the rest")
    sync_max_shrink: float = Field(10.0, ge=0, le=100, description="a scheduled sync that "
                                   "would remove more than this per cent of a list's members "
                                   "is refused and reported")
    sync: list[ListSync] = Field(default_factory=list)
