"""`mmctr models`: list the registered CTR models and where their defaults live."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return sub.add_parser(
        "models",
        help="list the CTR models",
        description="List the registered CTR models (the names `mmctr train --model` takes) and the "
        "YAML file holding each one's default configuration.",
    )


def run(args: argparse.Namespace) -> int:
    from mmctr.config import default_config_path
    from mmctr.models import MODELS

    for name, cls in MODELS.items():
        doc = (
            (cls.__module__ and __import__(cls.__module__, fromlist=["_"]).__doc__ or "")
            .strip()
            .split("\n")[0]
        )
        print(f"{name:16s} {doc}\n{'':16s} defaults: {default_config_path(name)}")
    return 0
