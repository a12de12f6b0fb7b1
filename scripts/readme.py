"""Write README.md from nbs/index.ipynb without Quarto: markdown cells as they are, code cells fenced.

`python scripts/readme.py --check` exits 1 if README.md is out of date (CI runs it)."""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def render(nb_path: Path) -> str:
    cells = json.loads(nb_path.read_text())["cells"]
    parts = []
    for cell in cells:
        src = "".join(cell["source"]).strip()
        if not src or src.startswith("#| hide"): continue
        parts.append(src if cell["cell_type"] == "markdown" else f"```python\n{src}\n```")
    body = "\n\n".join(parts)
    note = "<!-- generated from nbs/index.ipynb by scripts/readme.py: edit the notebook, not this file -->\n\n"
    return note + body + "\n"

if __name__ == "__main__":
    text, readme = render(ROOT/"nbs"/"index.ipynb"), ROOT/"README.md"
    if "--check" in sys.argv:
        if not readme.exists() or readme.read_text() != text:
            sys.exit("README.md is out of date with nbs/index.ipynb: run python scripts/readme.py")
    else:
        readme.write_text(text)
