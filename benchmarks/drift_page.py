"""The drift index page at 1280 px: every table cell shows its whole text (scrollWidth <= clientWidth, inside its card).

Renders the index from representative summaries (every level, the longest feature names, an unmonitored
model) or from `--drift-dir` (a real reports_dir/drift), opens it in headless Chromium (Debian's
`chromium`, installed with apt-get if missing) and reads, after layout, every `td`/`th` whose content is
wider than its box. The measurement runs in the page itself (a script appended to a copy of the page)
and comes back through `--dump-dom`, so no driver library is needed. A screenshot is saved next to the
results.

`.venv/bin/python benchmarks/drift_page.py [--drift-dir DIR] [--width 1280]`; exits 1 when a cell is cut
or the page is wider than the window.
Writes benchmarks/results/drift-page.json and drift-page.png.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.drift import read_summaries, render_index  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--hide-scrollbars",
]
PROBE = """<script>
window.addEventListener('load', () => {
  const cut = [];
  const cells = document.querySelectorAll('td, th');
  cells.forEach((c) => {
    // cut: the cell's content is wider than the cell, or the cell sticks out of its card (a table wider
    // than its card is clipped by the next card even when every cell holds its own text)
    const r = c.getBoundingClientRect();
    const card = c.closest('.card');
    const box = card ? card.getBoundingClientRect() : {left: 0, right: window.innerWidth};
    if (c.scrollWidth > c.clientWidth || r.right > box.right + 0.5 || r.left < box.left - 0.5)
      cut.push({text: c.textContent.trim(), scroll: c.scrollWidth, client: c.clientWidth,
                right: Math.round(r.right), card_right: Math.round(box.right)});
  });
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify({cells: cells.length, cut: cut, page: document.documentElement.scrollWidth, viewport: window.innerWidth});
  document.body.appendChild(pre);
});
</script>"""
LONG = [
    "days_since_order_history_view",
    "bought_category_views_7d",
    "engagement_rate_baseline",
    "max_category_views_7d",
    "engagements_since_order",
    "prediction",
]


def sample_summaries() -> list[dict]:
    """One summary per level and model, with the longest column names the feature definitions have."""
    out = []
    for i, (model, level) in enumerate(
        [("churn", "ok"), ("days_to_next", "warning"), ("repurchase", "drift"), ("value", "ok")]
    ):
        cols = [
            {
                "column": name,
                "role": "prediction" if name == "prediction" else "feature",
                "effect": 0.45 - 0.06 * j,
                "level": ["drift", "warning", "ok"][min(j, 2)] if level != "ok" else "ok",
            }
            for j, name in enumerate(LONG)
        ]
        out.append(
            {
                "model": model,
                "model_version": str(10 + i),
                "as_of": "2025-07-01T00:00:00+00:00",
                "status": level,
                "reasons": [
                    f"[{level}] feature {LONG[1]}: effect 0.450 on zero share (hurdle_wasserstein, noise floor 0.090)"
                ]
                if level != "ok"
                else [],
                "notes": ["reference = the champion's features at 2025-06-24 … 2025-06-30"],
                "reference_rows": 5000,
                "current_rows": 4321,
                "performance": {"auc": 0.7412, "test_auc": 0.7531, "auc_diff": -0.0119}
                if model == "churn"
                else {},
                "columns": cols,
                "_dir": f"{model}/20250701T000000Z",
            }
        )
    return out


def ensure_chromium() -> str:
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if found:
        return found
    subprocess.run(["apt-get", "update"], check=True)
    subprocess.run(["apt-get", "install", "-y", "chromium"], check=True)
    return CHROMIUM


def measure(page: str, width: int, out_png: Path | None) -> dict:
    chromium = ensure_chromium()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.html"
        path.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
        profile = f"--user-data-dir={tmp}/profile"
        size = f"--window-size={width},1600"
        dom = subprocess.run(
            [chromium, *FLAGS, profile, size, "--virtual-time-budget=3000", "--dump-dom", path.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        if out_png is not None:
            shot = Path(tmp) / "shot.png"
            subprocess.run(
                [chromium, *FLAGS, profile, size, f"--screenshot={shot}", path.as_uri()],
                capture_output=True,
                timeout=120,
                check=True,
            )
            shutil.copyfile(shot, out_png)
    m = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    if not m:
        raise RuntimeError("the probe did not run: no <pre id=probe> in Chromium's DOM")
    import html

    return json.loads(html.unescape(m.group(1)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drift-dir", type=Path, default=None)
    ap.add_argument("--width", type=int, default=1280)
    args = ap.parse_args()
    summaries = read_summaries(args.drift_dir) if args.drift_dir else sample_summaries()
    page = render_index(
        summaries,
        pd.Timestamp("2025-07-01", tz="UTC"),
        {"offer": "no @champion for rebuy-offer: no offer policy has passed the promotion gate yet"},
    )
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    result = measure(page, args.width, out / "drift-page.png")
    result["width"] = args.width
    result["source"] = str(args.drift_dir) if args.drift_dir else "sample summaries"
    (out / "drift-page.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"{result['cells']} cells at {args.width} px, {len(result['cut'])} cut: {result['cut'][:5]}")
    sys.exit(1 if result["cut"] or result["page"] > args.width else 0)


if __name__ == "__main__":
    main()
