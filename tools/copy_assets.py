"""Copy the front-end files the UI uses from node_modules into web/ui/static/vendor (run by `make assets`)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE = ROOT / "node_modules"
VENDOR = ROOT / "web" / "ui" / "static" / "vendor"
FILES = {
    "bpmn-js/dist/bpmn-navigated-viewer.production.min.js": "bpmn-js/bpmn-navigated-viewer.js",
    "bpmn-js/dist/assets/diagram-js.css": "bpmn-js/diagram-js.css",
    "bpmn-js/dist/assets/bpmn-js.css": "bpmn-js/bpmn-js.css",
    "bpmn-js/dist/assets/bpmn-font/css/bpmn.css": "bpmn-js/bpmn-font/css/bpmn.css",
    "dmn-js/dist/dmn-modeler.production.min.js": "dmn-js/dmn-modeler.js",
    "dmn-js/dist/assets/diagram-js.css": "dmn-js/diagram-js.css",
    "dmn-js/dist/assets/dmn-js-shared.css": "dmn-js/dmn-js-shared.css",
    "dmn-js/dist/assets/dmn-js-decision-table.css": "dmn-js/dmn-js-decision-table.css",
    "dmn-js/dist/assets/dmn-js-decision-table-controls.css": "dmn-js/dmn-js-decision-table-controls.css",
    "dmn-js/dist/assets/dmn-js-drd.css": "dmn-js/dmn-js-drd.css",
    "dmn-js/dist/assets/dmn-js-literal-expression.css": "dmn-js/dmn-js-literal-expression.css",
    "dmn-js/dist/assets/dmn-font/css/dmn-embedded.css": "dmn-js/dmn-font/css/dmn-embedded.css",
    "echarts/dist/echarts.min.js": "echarts/echarts.min.js",
    "axe-core/axe.min.js": "axe-core/axe.min.js",
}
DIRS = {"bpmn-js/dist/assets/bpmn-font/font": "bpmn-js/bpmn-font/font",
        "dmn-js/dist/assets/dmn-font/font": "dmn-js/dmn-font/font"}


def main() -> int:
    missing = [src for src in [*FILES, *DIRS] if not (NODE / src).exists()]
    if missing:
        print(f"missing in node_modules (run npm ci): {', '.join(missing)}", file=sys.stderr)
        return 1
    for src, dst in FILES.items():
        target = VENDOR / dst
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(NODE / src, target)
    for src, dst in DIRS.items():
        shutil.copytree(NODE / src, VENDOR / dst, dirs_exist_ok=True)
    (VENDOR / ".stamp").write_text("\n".join(sorted(FILES)) + "\n", encoding="utf-8")
    print(f"copied {len(FILES)} files and {len(DIRS)} folders into {VENDOR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
