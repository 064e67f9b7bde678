"""The catalog as the SQL engine offers it: one view per dataset (and its `__rejects`
view), pointing at exactly the objects of its current manifest, seen through a reader's
grants. The same snapshot answers `GET /v1/catalog` and the metrics (`catalog_views`).

Before each query the views ask the Dagster instance for the versions published since the
last they took in (one indexed query of its public API, empty while nothing changed), so a
dataset materialized a moment ago is queryable on the next request.

What is known is an immutable snapshot, replaced as a whole (copy on write): a query takes
the snapshot once, so it sees each dataset at exactly one version and reports which, and a
refresh never waits for running queries (nor they for it).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import dagster as dg

from lakehouse.auth.grants import Principal, Privilege
from lakehouse.duck import sql_identifier, sql_string
from lakehouse.errors import InvalidInput
from lakehouse.formats.csv.convert import REJECT_SCHEMA
from lakehouse.manifest import Manifest
from lakehouse.names import REJECTS_SUFFIX
from lakehouse.publish.catalog import latest_published, manifest_at, published_since
from lakehouse.runtime.compat import event_log_high_water
from lakehouse.store import layout

AUDIT_VIEW = "_audit"
# The `<name>__rejects` view's columns, as the conversion writes them.
REJECT_COLUMNS: list[tuple[str, str]] = list(REJECT_SCHEMA)


@dataclass(frozen=True)
class CatalogSnapshot:
    """What the engine knows of the catalog at one moment; replaced, never changed.
    `seen`: the event log's storage id of the last version it took in (None: nothing yet)."""

    manifests: Mapping[str, Manifest] = field(default_factory=dict)
    views: Mapping[str, str] = field(default_factory=dict)  # view name -> CREATE VIEW
    seen: int | None = None
    audit_view: str = ""  # the `_audit` view's CREATE VIEW, offered to admins only

    @cached_property
    def views_with_audit(self) -> Mapping[str, str]:
        return {**self.views, AUDIT_VIEW: self.audit_view}


@dataclass(frozen=True)
class Pins:
    """Earlier versions a query reads (`as_of`: dataset -> version). A query's own pins
    must each be read by it: a pin on another dataset (a name mistaken for the one meant)
    would otherwise be ignored, and the dataset meant read at its current version, unsaid.
    A Postgres session's pins (`SET lakehouse.as_of`) hold for every statement after, each
    of which reads what it reads (`session`)."""

    versions: Mapping[str, int]
    session: bool = False

    def check_read(self, views: frozenset[str]) -> None:
        """400 if a query's own pin names a dataset none of `views` reads."""
        if self.session or not self.versions:
            return
        read = {dataset_of(view) for view in views}
        unread = sorted(name for name in self.versions if name.lower() not in read)
        if unread:
            raise InvalidInput(
                f"as_of pins {', '.join(map(repr, unread))}, which the query does not read: "
                "pin only datasets the query reads (GET /v1/catalog lists them)"
            )


def dataset_of(view: str) -> str:
    """The dataset a view name reads (`sales` for `sales__rejects`), lower-cased as the
    guard compares names."""
    return view.lower().removesuffix(REJECTS_SUFFIX)


def rejects_view(name: str) -> str:
    return f"{name}{REJECTS_SUFFIX}"


def view_statements(manifest: Manifest, bucket_url: str) -> dict[str, str]:
    """The dataset's view, and its `<name>__rejects` view of the rows that did not parse."""
    if not manifest.columns:
        return {}  # every ingest so far failed: there is nothing to query yet
    columns = [(c.name, c.type) for c in manifest.columns]
    mixed = any(o.schema_fingerprint for o in manifest.objects)
    keys = [o.key for o in manifest.objects]
    return {
        manifest.name: _view(manifest.name, keys, columns, bucket_url, conform=mixed),
        rejects_view(manifest.name): _view(
            rejects_view(manifest.name),
            [r.key for r in manifest.rejects],
            REJECT_COLUMNS,
            bucket_url,
        ),
    }


def _view(
    name: str,
    keys: list[str],
    columns: list[tuple[str, str]],
    bucket_url: str,
    *,
    conform: bool = False,
) -> str:
    """A view over the objects at `keys`; `conform`: some were written before the columns
    evolved (fewer, or narrower ones), so each column is read by name and cast."""
    if not keys:
        # No objects (a header-only file, no rejects): still a view with its columns.
        typed = ", ".join(f"CAST(NULL AS {t}) AS {sql_identifier(n)}" for n, t in columns)
        body = f"SELECT {typed} WHERE false"
    elif conform:
        urls = ", ".join(sql_string(f"{bucket_url}/{key}") for key in keys)
        typed = ", ".join(
            f"CAST({sql_identifier(n)} AS {t}) AS {sql_identifier(n)}" for n, t in columns
        )
        body = f"SELECT {typed} FROM read_parquet([{urls}], union_by_name = true)"
    else:
        urls = ", ".join(sql_string(f"{bucket_url}/{key}") for key in keys)
        body = f"SELECT * FROM read_parquet([{urls}])"
    return f"CREATE OR REPLACE VIEW {sql_identifier(name)} AS {body}"


# Each instance's views, by bucket (see `catalog_views`).
_views: weakref.WeakKeyDictionary[dg.DagsterInstance, dict[str, CatalogViews]] = (
    weakref.WeakKeyDictionary()
)
_views_lock = threading.Lock()


def catalog_views(instance: dg.DagsterInstance, bucket: str) -> CatalogViews:
    """This process's views of `instance`'s catalog: one kept current for the queries,
    the catalog's listing and the metrics alike (while nothing is published, a look costs
    the event log's high-water mark, not a read per dataset)."""
    with _views_lock:
        per_bucket = _views.setdefault(instance, {})
        if bucket not in per_bucket:
            per_bucket[bucket] = CatalogViews(instance, bucket)
        return per_bucket[bucket]


class CatalogViews:
    """The views of the catalog, kept current, as each reader may see them."""

    def __init__(self, instance: dg.DagsterInstance, bucket: str) -> None:
        self.instance = instance
        self.bucket_url = layout.url(bucket, "").rstrip("/")
        audit = sql_string(layout.audit_glob(bucket))
        self._refreshing = threading.Lock()
        self._catalog = CatalogSnapshot(
            audit_view=f"CREATE OR REPLACE VIEW {AUDIT_VIEW} AS SELECT * FROM read_parquet("
            f"{audit}, union_by_name = true, hive_partitioning = false)"
        )
        # The event log's high-water mark when the catalog was last looked at. Kept beside
        # the snapshot, not in it: a mark that moved with no new version (any run's events
        # move it) keeps the snapshot, and with it the guard's remembered verdicts.
        self._marker: int | None = None
        # The views each grant sees of the current snapshot (see `_granted_views`).
        self._granted: dict[tuple[str, ...], Mapping[str, str]] = {}
        self._granted_catalog: CatalogSnapshot | None = None

    def for_query(
        self, reader: Principal, as_of: Mapping[str, int]
    ) -> tuple[Mapping[str, Manifest], Mapping[str, str]]:
        """The manifests and the view definitions a query of `reader` may use, with the
        earlier versions in `as_of` in place of the current ones (403 for a dataset outside
        the reader's grants, before anything is looked up)."""
        for name in as_of:
            reader.require(Privilege.READ, name)
        catalog = self.refresh()
        pinned = self._pinned(as_of)
        manifests: Mapping[str, Manifest] = catalog.manifests
        definitions: Mapping[str, str] = self._granted_views(catalog, reader)
        if pinned:
            manifests = dict(manifests) | pinned
            definitions = dict(definitions)
            for manifest in pinned.values():
                if not manifest.columns:  # else the current version's view would answer
                    raise InvalidInput(
                        f"version {manifest.version} of {manifest.name!r} has nothing to read: "
                        "every ingest up to it failed, so it has no columns yet; "
                        f"GET /v1/catalog/{manifest.name}/versions lists the versions"
                    )
                definitions |= view_statements(manifest, self.bucket_url)
        return manifests, definitions

    def refresh(self) -> CatalogSnapshot:
        """The catalog as it is now: the versions published since the last look are taken
        in. While nothing was logged at all (the event log's high-water mark, one cheap
        query), that is all; else one indexed query for new versions."""
        marker = event_log_high_water(self.instance)  # before the read, so nothing slips by
        with self._refreshing:  # refreshes wait for one another, never for queries
            catalog = self._catalog
            if catalog.seen is not None and marker == self._marker:
                return catalog
            if catalog.seen is None:
                new = latest_published(self.instance)
            else:
                new = published_since(self.instance, catalog.seen)
            self._marker = marker
            if not new and catalog.seen is not None:
                return catalog
            manifests = dict(catalog.manifests)
            views = dict(catalog.views)
            for published in new:  # oldest first; a dataset's versions only grow
                current = manifests.get(published.manifest.name)
                if current is None or current.version < published.manifest.version:
                    manifests[published.manifest.name] = published.manifest
                    views |= view_statements(published.manifest, self.bucket_url)
            seen = max([catalog.seen or 0, *(p.storage_id for p in new)])
            self._catalog = CatalogSnapshot(manifests, views, seen, catalog.audit_view)
            return self._catalog

    def _granted_views(self, catalog: CatalogSnapshot, reader: Principal) -> Mapping[str, str]:
        """The views of `catalog` that `reader` may read (admins: and the audit trail),
        remembered per snapshot and grant."""
        if reader.is_admin:
            return catalog.views_with_audit
        with self._refreshing:
            if self._granted_catalog is not catalog:
                self._granted, self._granted_catalog = {}, catalog
            views = self._granted.get(reader.datasets)
            if views is None:
                views = self._granted[reader.datasets] = {
                    name: view
                    for name, view in catalog.views.items()
                    if reader.granted(dataset_of(name))
                }
        return views

    def _pinned(self, as_of: Mapping[str, int]) -> dict[str, Manifest]:
        """The manifests of the earlier versions asked for, by dataset."""
        pinned: dict[str, Manifest] = {}
        for name, version in as_of.items():
            match = manifest_at(self.instance, name, version)
            if match is None:
                raise InvalidInput(
                    f"dataset {name!r} has no version {version}: "
                    f"GET /v1/catalog/{name}/versions lists them"
                )
            pinned[name] = match
        return pinned
