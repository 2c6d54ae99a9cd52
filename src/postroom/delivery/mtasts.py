"""MTA-STS for outbound mail (RFC 8461): a destination that publishes a policy gets its
mail only over verified TLS, and only at the MX hosts the policy names.

    _mta-sts.DOMAIN TXT "v=STSv1; id=..."     the policy exists (its id says when it changed)
    https://mta-sts.DOMAIN/.well-known/mta-sts.txt
        version: STSv1
        mode: enforce | testing | none
        mx: mail.example.com          (one line each; "*.example.com" matches one label)
        max_age: 604800

Only MX routes are concerned (a ``[host]`` route names its host itself). ``enforce``: the
MX hosts not named are dropped, and the others must present a certificate valid for their
own name (``Policy.mx_names``: TLS mode ``verify`` against the MX host); none left is a
temporary failure naming the policy, so the mail waits in the queue (RFC 8461 5.1).
``testing``: delivered as usual, and the mail log says what enforce would have refused.

The policy is fetched over HTTPS with a verified certificate (``[mta_sts] ca_file``, else
the system's CAs), no redirects, at most 64 KiB, and cached (``[mta_sts] cache``) for its
``max_age``; the TXT id is looked up at most every ``RECHECK`` seconds per domain (also
for the many domains without a policy: one DNS query per destination and five minutes,
not per message), and a new id fetches the policy again. A
policy that cannot be fetched while an unexpired one is cached keeps the cached one; with
none cached the destination is treated as having no policy (RFC 8461 section 5).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from dataclasses import asdict, dataclass

from postroom import maillog
from postroom.delivery.mx import Destination, MxResolver
from postroom.delivery.smtp.connect import mx_matches
from postroom.errors import DeliveryError
from postroom.safeio import atomic_replace
from postroom.site import Site

log = logging.getLogger("postroom.delivery.mtasts")
MAX_POLICY = 65536
MAX_AGE_LIMIT = 31557600  # RFC 8461 3.2: at most a year
RECHECK = 300.0           # seconds between TXT lookups for one domain


@dataclass(frozen=True, slots=True)
class StsPolicy:
    domain: str
    id: str
    mode: str              # enforce | testing | none
    mx: tuple[str, ...]
    max_age: int
    fetched: float

    def expired(self, now: float) -> bool:
        return now >= self.fetched + self.max_age

    def matches(self, host: str) -> bool:
        """Does MX host ``host`` match one of the policy's ``mx`` patterns?"""
        return mx_matches(host, self.mx)


def parse_policy(domain: str, policy_id: str, text: str, now: float) -> StsPolicy:
    """The policy file's fields; ValueError names what is wrong."""
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), []).append(value.strip())
    if fields.get("version") != ["STSv1"]:
        raise ValueError("version is not STSv1")
    mode = (fields.get("mode") or [""])[0].lower()
    if mode not in ("enforce", "testing", "none"):
        raise ValueError(f"mode {mode!r} is not enforce, testing or none")
    try:
        max_age = min(int((fields.get("max_age") or [""])[0]), MAX_AGE_LIMIT)
    except ValueError:
        raise ValueError("max_age is not a number") from None
    mx = tuple(fields.get("mx", []))
    if mode != "none" and not mx:
        raise ValueError("no mx lines")
    return StsPolicy(domain, policy_id, mode, mx, max_age, now)


def txt_id(records: list[str]) -> str | None:
    """The id of the one ``v=STSv1`` record; None when there is none (or several)."""
    found = [r for r in records if r.replace(" ", "").lower().startswith("v=stsv1;")]
    if len(found) != 1:
        return None
    tags = dict(t.strip().partition("=")[::2] for t in found[0].split(";") if "=" in t)
    return tags.get("id", "").strip() or None


class MtaSts:
    """The policies of the destinations this process sends to."""

    def __init__(self, site: Site, resolver: MxResolver) -> None:
        p = site.profile.mta_sts
        self.resolver = resolver
        self.cache_path = site.path(p.cache)
        self.port = p.https_port
        self.timeout = site.profile.delivery.connect_timeout
        self.ca_file = site.path(p.ca_file) if p.ca_file else None
        self._context: ssl.SSLContext | None = None
        self._cache: dict[str, StsPolicy] = self._load()
        self._checked: dict[str, tuple[float, StsPolicy | None]] = {}  # monotonic time

    def _load(self) -> dict[str, StsPolicy]:
        try:
            raw = json.loads(self.cache_path.read_text())
            return {d: StsPolicy(**{**v, "mx": tuple(v["mx"])}) for d, v in raw.items()}
        except (OSError, ValueError, TypeError, KeyError):
            return {}

    def _save(self) -> None:
        data = {d: asdict(p) for d, p in self._cache.items()}
        try:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_replace(self.cache_path, json.dumps(data, indent=1).encode(), mode=0o644)
        except OSError as e:
            log.warning("cannot write the MTA-STS cache %s: %s", self.cache_path, e)

    @property
    def context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = ssl.create_default_context(
                cafile=str(self.ca_file) if self.ca_file else None)
        return self._context

    async def policy(self, domain: str) -> StsPolicy | None:
        """The policy in force for ``domain`` now, or None."""
        seen = self._checked.get(domain)
        if seen is not None and time.monotonic() - seen[0] < RECHECK and (
                seen[1] is None or not seen[1].expired(time.time())):
            return seen[1]
        found = await self._lookup(domain)
        if len(self._checked) > 10000:
            self._checked.clear()
        self._checked[domain] = (time.monotonic(), found)
        return found

    async def _lookup(self, domain: str) -> StsPolicy | None:
        now = time.time()
        cached = self._cache.get(domain)
        if cached is not None and cached.expired(now):
            cached = None
        policy_id = txt_id(await self.resolver.txt(f"_mta-sts.{domain}"))
        if policy_id is None or (cached is not None and cached.id == policy_id):
            return cached
        try:
            text = await self._fetch(domain)
            fresh = parse_policy(domain, policy_id, text, now)
        except (OSError, ValueError, ssl.SSLError) as e:
            maillog.line(f"MTA-STS: cannot fetch the policy of {domain}: {e}"
                         + ("; using the cached one" if cached else ""))
            return cached
        self._cache[domain] = fresh
        await asyncio.to_thread(self._save)
        return fresh

    async def _fetch(self, domain: str) -> str:
        host = f"mta-sts.{domain}"
        try:
            (target,) = await self.resolver.targets(Destination(host, None, False))
        except DeliveryError as e:
            raise OSError(f"{host}: {e.text}") from None
        last: OSError = OSError(f"no address for {host}")
        for ip in target.addresses:
            try:
                async with asyncio.timeout(self.timeout):
                    return await self._get(ip, host)
            except TimeoutError:
                last = OSError(f"timed out fetching https://{host}/")
            except OSError as e:
                last = e
        raise last

    async def _get(self, ip: str, host: str) -> str:
        reader, writer = await asyncio.open_connection(ip, self.port, ssl=self.context,
                                                       server_hostname=host)
        try:
            writer.write(f"GET /.well-known/mta-sts.txt HTTP/1.0\r\nHost: {host}\r\n"
                         "Connection: close\r\n\r\n".encode())
            await writer.drain()
            raw = await reader.read(MAX_POLICY + 4096)
            while len(raw) <= MAX_POLICY + 4096:
                more = await reader.read(MAX_POLICY)
                if not more:
                    break
                raw += more
        finally:
            writer.close()
        head, sep, body = raw.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0].split()
        if not sep or len(status) < 2 or status[1] != b"200":
            raise OSError(f"https://{host}/.well-known/mta-sts.txt answered "
                          f"{b' '.join(status[1:]).decode('latin-1') or 'nothing'}")
        if len(body) > MAX_POLICY:
            raise OSError(f"the policy at https://{host}/ is larger than {MAX_POLICY} bytes")
        return body.decode("utf-8", "replace")

    def testing_note(self, policy: StsPolicy, hosts: list[str], queue_id: str) -> None:
        """``testing`` mode: say which MX hosts enforce would refuse (mail goes anyway)."""
        outside = [h for h in hosts if not policy.matches(h)]
        if outside:
            maillog.line(f"{queue_id}: MTA-STS testing: {policy.domain}: MX "
                         f"{', '.join(outside)} not in the policy (mx: "
                         f"{', '.join(policy.mx)}); delivered anyway")
