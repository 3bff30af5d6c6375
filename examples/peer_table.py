"""The "peer call -> odenets call -> lines changed" table of docs/coming_from_peers.md, read off
the ported peer examples: each line a port changes carries the peer's original after
``# peer:``.

    python examples/peer_table.py          # prints the markdown table
"""
from __future__ import annotations

import re
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent
PORTS = {"ode_demo.py": "torchdiffeq `examples/ode_demo.py`",
         "odenet_mnist.py": "torchdiffeq `examples/odenet_mnist.py`",
         "latent_sde.py": "torchsde `examples/latent_sde.py`"}
MARK = re.compile(r"^(?P<ours>.*?)\s*# peer: (?P<peer>.*)$")


def changes(path: Path) -> list[tuple[str, str]]:
    """(peer line, odenets line) for every changed line of a port."""
    out = []
    for line in path.read_text().splitlines():
        match = MARK.match(line)
        if match:
            out.append((match["peer"].strip(), match["ours"].strip()))
    return out


def peer_source(path: Path) -> str:
    """The peer's original: every changed line put back."""
    lines = []
    for line in path.read_text().splitlines():
        match = MARK.match(line)
        indent = line[:len(line) - len(line.lstrip())]
        lines.append(indent + match["peer"].strip() if match else line)
    return "\n".join(lines) + "\n"


def table() -> str:
    rows = ["| peer example | peer call | odenets call | lines changed |", "|---|---|---|---|"]
    for name, title in PORTS.items():
        diff = changes(EXAMPLES / name)
        for i, (peer, ours) in enumerate(diff):
            rows.append(f"| {title if i == 0 else ''} | `{peer}` | `{ours}` | "
                        f"{len(diff) if i == 0 else ''} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(table(), end="")
