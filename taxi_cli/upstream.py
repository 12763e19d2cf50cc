"""Which version of a release asset a file is, and whether the host now serves another.

A download records the asset's ETag and Last-Modified in the verified file's sidecar
(`taxi_cli.extract`, trusted while the sidecar still describes the file); the size is
the file's own (downloads use identity encoding, so the asset's length is the file's).
A plan asks the host for each done month's current version (`versions`: a
HEAD per month, concurrent, one answer per month for the run) and compares it with the
version the ledger recorded (`Upstream.change_from`). A month the host does not answer
for is "unknown", never "changed": drift detection must not reload on a network blip.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from taxi_cli.catalog import Partition, taxi_url
from taxi_cli.config import Settings
from taxi_cli.model import LedgerRow, Upstream

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("taxi_cli.upstream")

WORKERS = 8  # HEADs in flight: the release host answers each in ~100 ms
_FIRST = threading.Lock()


def of_ledger(entry: LedgerRow) -> Upstream | None:
    """The upstream version a ledger row says was loaded, if it says."""
    return Upstream.from_json(entry.detail.get("upstream"))


def head(
    client: httpx.Client, url: str, unreachable: threading.Event | None = None
) -> Upstream | None:
    """The asset's current version: HEAD (following the host's redirect), else a GET of
    its first byte (signed storage URLs may refuse HEAD); None when it does not answer.

    `unreachable` is set when the host cannot be connected to, and then no more months
    are asked (each would wait for the same connect timeout)."""
    import httpx

    if unreachable is not None and unreachable.is_set():
        return None
    try:
        response = client.head(url, follow_redirects=True)
        if response.status_code in (403, 405):
            with client.stream(
                "GET", url, headers={"Range": "bytes=0-0"}, follow_redirects=True
            ) as response:
                return _version(response)
        return _version(response)
    except httpx.HTTPError as exc:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout) and unreachable:
            with _FIRST:  # concurrent HEADs fail together: say it once
                first = not unreachable.is_set()
                unreachable.set()
            if first:
                log.warning("cannot reach %s to compare versions: %s", url, exc)
            return None
        log.warning("cannot ask %s for its version: %s", url, exc)
        return None


def _version(response: httpx.Response) -> Upstream | None:
    if response.status_code not in (200, 206):
        log.warning("version of %s: HTTP %s", response.url, response.status_code)
        return None
    headers = response.headers
    size: int | None = None
    total = headers.get("Content-Range", "").rpartition("/")[2]
    length = headers.get("Content-Length", "")
    if response.status_code == 206 and total.isdigit():
        size = int(total)
    elif response.status_code == 200 and length.isdigit():
        size = int(length)
    return Upstream(size, headers.get("ETag"), headers.get("Last-Modified"))


def versions(
    cfg: Settings, partitions: Iterable[Partition], client: httpx.Client | None = None
) -> dict[tuple[str, str], Upstream | None]:
    """The current upstream version of each partition, asked concurrently, once each."""
    wanted = list(dict.fromkeys((p.taxi.name, p.month) for p in partitions))
    by_key = {(p.taxi.name, p.month): p for p in partitions}
    if not wanted:
        return {}
    from taxi_cli.download import make_client

    own = client is None
    http = client or make_client(cfg)
    unreachable = threading.Event()
    try:
        with ThreadPoolExecutor(max_workers=min(WORKERS, len(wanted))) as pool:
            urls = [taxi_url(cfg.source_url, by_key[k].taxi, k[1]) for k in wanted]
            answers = pool.map(lambda url: head(http, url, unreachable), urls)
            return dict(zip(wanted, answers, strict=True))
    finally:
        if own:
            http.close()


def changes(
    ledger: Mapping[tuple[str, str], Upstream],
    current: Mapping[tuple[str, str], Upstream | None],
) -> dict[tuple[str, str], str]:
    """(taxi, month) -> `size a -> b` for every month whose asset is another now."""
    found: dict[tuple[str, str], str] = {}
    for key, before in ledger.items():
        now = current.get(key)
        if now is None:
            continue
        change = now.change_from(before)
        if change is not None:
            found[key] = change
    return found


def as_detail(upstream: Upstream) -> dict[str, Any]:
    return {"upstream": upstream.as_json()}
