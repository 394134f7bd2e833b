"""`netshift export gateway-api`: Routes (from the cluster or from files) as Gateway API objects.

YAML on stdout, the table of what was not translated on stderr. The exit status is non-zero only
when the input cannot be read (a file, the YAML, a Route that does not parse, the API server).
"""
from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

import pydantic
import yaml

from netshift.models import route as route_model

from .translate import Note, Options, export

SUFFIXES = (".yaml", ".yml", ".json")


class InputError(Exception):
    """Input that cannot be read."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("export", help="export Routes in another API's form")
    kinds = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    g = kinds.add_parser(
        "gateway-api", help="Routes as Gateway API v1.6 objects (YAML on stdout, untranslated parts on stderr)",
        description="Print the admitted Routes as one Gateway plus HTTPRoutes/TLSRoutes, Secrets, ConfigMaps, "
                    "BackendTLSPolicies and ReferenceGrants (YAML on stdout). What cannot be translated is "
                    "listed on stderr and in the netshift.io/not-translated annotation of each object. "
                    "See docs/gateway-api.md.")
    g.add_argument("-f", "--filename", action="append", metavar="PATH",
                   help="read Routes (and the Services they name) from a file, a directory (*.yaml, *.yml, "
                        "*.json) or - for stdin; repeatable. Unset: from the cluster ($KUBECONFIG)")
    g.add_argument("-n", "--namespace", help="only this namespace (cluster); the namespace of objects "
                                             "without one (files; default: default)")
    defaults = Options()
    g.add_argument("--gateway-class", default=defaults.gateway_class,
                   help=f"gatewayClassName of the Gateway (default {defaults.gateway_class})")
    g.add_argument("--gateway", default=f"{defaults.gateway_namespace}/{defaults.gateway_name}", metavar="NS/NAME",
                   help=f"the Gateway to create (default {defaults.gateway_namespace}/{defaults.gateway_name})")
    g.add_argument("--router-name", default=defaults.router_name,
                   help=f"router name whose admission is exported (default {defaults.router_name})")
    g.add_argument("--domain", default=defaults.domain,
                   help=f"router domain of spec.subdomain and generated hosts (default {defaults.domain})")
    g.add_argument("--default-certificate", default=defaults.default_certificate, metavar="SECRET",
                   help="Secret in the Gateway's namespace for TLS routes without a certificate "
                        f"(default {defaults.default_certificate})")
    g.set_defaults(func=run)


def options(args: argparse.Namespace) -> Options:
    ns, slash, name = args.gateway.rpartition("/")
    if not slash or not ns or not name:
        raise SystemExit(f"netshift: --gateway must be NAMESPACE/NAME, not {args.gateway!r}")
    return Options(gateway_name=name, gateway_namespace=ns, gateway_class=args.gateway_class,
                   router_name=args.router_name, domain=args.domain, default_certificate=args.default_certificate)


def run(args: argparse.Namespace) -> int:
    opts = options(args)
    try:
        objs = list(read_files(args.filename, sys.stdin)) if args.filename else read_cluster(args.namespace)
        routes, services = parse(objs, args.namespace or "default")
    except InputError as exc:
        print(f"netshift: {exc}", file=sys.stderr)
        return 1
    result = export(routes, services, opts)
    yaml.safe_dump_all(list(result.objects), sys.stdout, sort_keys=False)
    print(table(result.notes), file=sys.stderr, end="")
    return 0


def read_files(paths: Iterable[str], stdin: TextIO) -> Iterator[dict[str, Any]]:
    for name in paths:
        if name == "-":
            yield from _documents(stdin.read(), "stdin")
            continue
        path = pathlib.Path(name)
        files = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES) if path.is_dir() else [path]
        for f in files:
            try:
                text = f.read_text()
            except OSError as exc:
                raise InputError(f"cannot read {f}: {exc.strerror}") from None
            yield from _documents(text, str(f))


def _documents(text: str, source: str) -> Iterator[dict[str, Any]]:
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: not YAML: {exc}") from None
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "List":
            yield from (i for i in doc.get("items") or [] if isinstance(i, dict))
        elif isinstance(doc, dict):
            yield doc
        elif doc is not None:
            raise InputError(f"{source}: a document is not an object")


def read_cluster(namespace: str | None) -> list[dict[str, Any]]:
    from netshift.kube import Kube, error_message, new_api_client  # the kubernetes client only here

    try:
        kube = Kube(new_api_client("export"), "export")
        services, _ = kube.list_all("Service", namespace)
        routes, _ = kube.list_all(route_model.KIND, namespace)
    except Exception as exc:  # no kubeconfig, no answer, RBAC: the input cannot be read
        raise InputError(f"cannot list Routes and Services: {error_message(exc)}") from None
    return [*({"apiVersion": "v1", "kind": "Service", **s} for s in services),
            *({"apiVersion": route_model.API_VERSION, "kind": route_model.KIND, **r} for r in routes)]


def parse(objs: Iterable[dict[str, Any]], default_namespace: str
          ) -> tuple[list[route_model.Route], dict[tuple[str, str], dict[str, Any]]]:
    """The Routes (through the one Route model) and the Services by (namespace, name)."""
    routes, services = [], {}
    for obj in objs:
        meta: dict[str, Any] = obj.get("metadata") or {}
        obj = {**obj, "metadata": {**meta, "namespace": meta.get("namespace") or default_namespace}}
        if obj.get("kind") == "Service" and obj.get("apiVersion") == "v1":
            services[(obj["metadata"]["namespace"], obj["metadata"].get("name") or "")] = obj
        elif obj.get("kind") == route_model.KIND and obj.get("apiVersion") == route_model.API_VERSION:
            try:
                routes.append(route_model.Route.from_obj(obj))
            except pydantic.ValidationError as exc:
                raise InputError(f"Route {obj['metadata'].get('name')}: {exc.errors()[0]['msg']} "
                                 f"at {'.'.join(map(str, exc.errors()[0]['loc']))}") from None
    return routes, services


def table(notes: Iterable[Note]) -> str:
    """The not-translated table (empty when everything was translated)."""
    rows = [(f"{n.namespace}/{n.route}", n.field, n.detail) for n in notes]
    if not rows:
        return ""
    header = ("ROUTE", "FIELD", "NOT TRANSLATED")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(2)]
    return "".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]}\n" for r in [header, *rows])
