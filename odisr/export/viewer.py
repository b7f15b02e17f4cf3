"""``index.html``: a full-window Pannellum viewer of an exported tile pyramid.

The page loads ``pannellum.js`` and ``pannellum.css`` from the URLs of :attr:`ExportRequest.viewer` — the jsDelivr
CDN by default, or a local copy (``odisr export --viewer-js PATH`` copies it into ``OUT/viewer/``) — and holds the
Pannellum config inline; ``index.html?yaw=90&pitch=30&hfov=80`` opens that view. Serve the folder over HTTP
(``python -m http.server``): browsers do not let a page opened from ``file://`` load its tiles into WebGL.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path
from string import Template
from typing import Any

from odisr.export.files import write_bytes

VIEWER_DIR = "viewer"  # OUT/viewer/: the local copy of Pannellum shared by every pyramid of an export folder

_PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<link rel="stylesheet" href="$css">
<script src="$js"></script>
<style>html, body, #panorama { margin: 0; width: 100%; height: 100%; background: #000; }</style>
</head>
<body>
<div id="panorama"></div>
<script>
var config = $config;
// index.html?yaw=90&pitch=30&hfov=80 opens that view (degrees; yaw east of the panorama's centre, pitch up)
new URLSearchParams(location.search).forEach(function (value, key) {
  if (["yaw", "pitch", "hfov"].indexOf(key) >= 0) config[key] = parseFloat(value);
});
pannellum.viewer("panorama", config);
</script>
</body>
</html>
""")


def write_index(folder: Path, title: str, config: dict[str, Any], viewer: tuple[str, str]) -> Path:
    """Write ``folder/index.html`` showing the Pannellum ``config``; ``viewer`` = (js URL, css URL)."""
    js, css = viewer
    inline = json.dumps(config, indent=1).replace("</", "<\\/")  # no "</script>" inside the script element
    page = _PAGE.substitute(title=html.escape(title), js=html.escape(js), css=html.escape(css), config=inline)
    path = folder / "index.html"
    write_bytes(path, page.encode("utf-8"))
    return path


def install_viewer(out_dir: Path, js: Path, css: Path | None = None) -> tuple[str, str]:
    """Copy a local Pannellum (``pannellum.js`` and its ``pannellum.css``, by default found next to it) into
    ``out_dir/viewer/``; returns the URLs a pyramid's ``index.html`` uses for them (relative, one folder up).

    Raises:
        FileNotFoundError: either file is missing (naming it and the option to give it with).
    """
    css = css or js.with_name("pannellum.css")
    for path, option in ((js, "--viewer-js"), (css, "--viewer-css")):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file; give Pannellum's build/{path.name} with {option}")
    folder = out_dir / VIEWER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for path, name in ((js, "pannellum.js"), (css, "pannellum.css")):
        shutil.copyfile(path, folder / name)
    return f"../{VIEWER_DIR}/pannellum.js", f"../{VIEWER_DIR}/pannellum.css"
