"""# Regenerate a paper figure and read its manifest

Every figure of `paper_figures` is built in two stages: *compute* (cached under a cache folder, keyed by the
settings) and *plot*.  `build_figures` (the function behind `mvm figures`) writes the PNG and PDF files and a
`manifest.json` that says what each figure was computed from: settings, seeds, the records it read, the package
version and git commit, and timings.  This tutorial builds the quickest theory-only figure, the stability regions
of SGD, heavy-ball and Nesterov momentum, then reads its manifest.

The same from the command line:

```bash
mvm figures --list
mvm figures --quick --only fig_stability_regions --out results/figures
```
"""

# %%
# The figure ids, in catalogue order (`mvm figures --list`).
import json
import os
import tempfile
from pathlib import Path

from paper_figures import available_figures, build_figures

print(available_figures())

# %%
# Build one figure at the quick (CPU) scale into a scratch folder.  A second build with the same cache folder
# would re-plot from the cache instead of computing again (`computed` in the manifest says which happened).
out = Path(os.environ.get("MVM_TUTORIAL_OUT", tempfile.mkdtemp(prefix="mvm_tutorial_")))
outcomes = build_figures(
    ["fig_stability_regions"], scale="quick", out=out / "figures", cache_dir=out / "cache", progress=False
)
for outcome in outcomes:
    print(outcome.figure_id, "->", outcome.files, f"(computed: {outcome.computed})")

# %%
# The manifest: one entry per figure, plus the environment of the build.
manifest = json.loads((out / "figures" / "manifest.json").read_text())
print("created:", manifest["created"], "scale:", manifest["scale"])
print("environment:", json.dumps(manifest["environment"], indent=1))
entry = manifest["figures"][0]
print("title:", entry["title"])
print("settings:", entry["settings"])
print("summary:", json.dumps(entry["summary"], indent=1)[:800])

# %%
# The figure itself (the docs build shows the files listed in `DOCS_IMAGES`).
DOCS_IMAGES = [out / "figures" / "fig_stability_regions.png"]
