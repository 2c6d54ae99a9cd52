"""The site: its home directory (``home``), its profile ``SITE/postroom.toml`` (``profile``)
and reading the one into the other (``load``).

    load(dir)       -> Site       the home and a good profile, or ConfigError
    open_home(dir)  -> SiteHome   the home alone when the profile is broken (a Site if good)

The names other modules use are the ones below; the rest lives in the submodules.
"""

from postroom.site.home import Site, SiteHome
from postroom.site.load import load, open_home
from postroom.site.profile import Listener, RelayHost

__all__ = ["Listener", "RelayHost", "Site", "SiteHome", "load", "open_home"]
