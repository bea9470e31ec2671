"""The self-contained HTML page of `attnkit attention`: one file, no network, the weights embedded as JSON.

The page (template: attention_page.html) has `<select id="map">` (one option per map, by name), `<select id="layer">`
("layer 1".."layer L") and `<select id="head">` ("head 1".."head H", then "mean of heads"); a `<table id="heatmap">`
whose `tbody` rows start with a `th.query-label` and whose `thead` holds `th.key-label`s, each cell a `td` with
`data-weight` (4 decimals) and a title "query → key: 0.1234"; and `#weights`, the strip of `.key-token` chips (each
with `data-weight`) of the query hovered in the heatmap, the first query until then.
"""

from __future__ import annotations

import json
from importlib.resources import files

import numpy as np


def render_page(data: dict) -> str:
    """The whole HTML document for `data` ({"model", "text", "target", "prediction", "maps": [{"name", "kind",
    "queries", "keys", "weights": [layer][head][query][key]}]}). Weights travel as integers in units of 1e-4,
    which keeps 6 layers x 12 heads x 80 x 80 near 2 MB."""
    maps = [
        {**m, "weights": np.rint(np.asarray(m["weights"], dtype=float) * 1e4).astype(int).tolist()}
        for m in data["maps"]
    ]
    text = json.dumps({**data, "maps": maps}, ensure_ascii=False, separators=(",", ":"))
    # JSON inside <script>: no token may close the element or open a comment
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    template = files("attnkit.apps").joinpath("attention_page.html").read_text(encoding="utf-8")
    return template.replace("{{DATA}}", text)
