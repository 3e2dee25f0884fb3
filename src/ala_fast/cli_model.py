"""CLI commands that need a trained model (train, predict, evaluate, info)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    return None
