"""The HTTP service: a Starlette (ASGI) application over one ``Datastream``.

``create_app(ds, token=...)`` builds it (:mod:`.app`); ``datastream serve`` runs it with
uvicorn. One module per job: :mod:`.auth` (the token, for every endpoint), :mod:`.limits`
(request bodies, gzip), :mod:`.errors` (JSON errors, library exceptions to statuses),
:mod:`.read_api` with :mod:`.query_params`, :mod:`.tag_filters`, :mod:`.pagination`,
:mod:`.resources` and :mod:`.datapoints_json` (the django-datastream compatible reads),
:mod:`.write_api` with :mod:`.json_points` (the writes), :mod:`.ingest` (group commit of
concurrent writes), :mod:`.openapi` (``/openapi.json``), :mod:`.pages` (the chart page) and
:mod:`.server` (uvicorn on a socket). starlette and uvicorn come with the ``http`` extra and
are imported only here: ``import datastream`` never loads them. The user guide is
docs/guide/http.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.applications import Starlette


def create_app(*args: Any, **kwargs: Any) -> Starlette:
    """The ASGI application (see :func:`datastream.http.app.create_app`)."""
    from .app import create_app as build

    return build(*args, **kwargs)
