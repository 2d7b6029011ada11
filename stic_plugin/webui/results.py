"""What a ``stic-cli`` run of the STIC data tab wrote, for the tab to show: the summary numbers
(``NAME.stats.json``), the lengths plot (``NAME.lengths.png``, pref) and a preview of the first records as
HTML, with the images inline (so the web UI serves no file from the data folder)."""

import base64
import html
import io
import json
from pathlib import Path

from ..data.output import ShardedOutput
from .locales import message

PREVIEW_RECORDS = 4
THUMBNAIL_PIXELS = 224
TEXT_STYLE = "white-space:pre-wrap;max-height:10em;overflow:auto"
IMAGE_STYLE = "width:160px;height:auto;image-rendering:pixelated;border:1px solid #8884"


def summary(folder: str, name: str) -> dict | None:
    path = ShardedOutput(folder, name).stats_path
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def lengths_plot(folder: str, name: str):
    """The response-lengths plot as a PIL image, or None when the command draws none."""
    path = ShardedOutput(folder, name).dataset_dir / f"{name}.lengths.png"
    if not path.is_file():
        return None
    from PIL import Image

    with Image.open(path) as image:
        return image.copy()


def first_records(folder: str, name: str, count: int = PREVIEW_RECORDS) -> list[dict]:
    records = []
    for record in ShardedOutput(folder, name).records():
        records.append(record)
        if len(records) == count:
            break
    return records


def thumbnail(image) -> str:
    """An <img> holding a small JPEG copy of a PIL image."""
    copy = image.convert("RGB")
    copy.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
    buffer = io.BytesIO()
    copy.save(buffer, format="JPEG", quality=85)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img class="stic-image" style="{IMAGE_STYLE}" src="data:image/jpeg;base64,{data}">'


def _open_image(folder: str, path: str):
    """The image a record names (relative paths start from the dataset folder, as in training), or None."""
    from PIL import Image

    full = Path(folder).absolute() / path  # an absolute path stays itself
    try:
        with Image.open(full) as image:
            image.load()
            return image.copy()
    except (OSError, ValueError):
        return None


def _image_cell(folder: str, paths: list[str]) -> str:
    cells = []
    for path in paths:
        image = _open_image(folder, path)
        shown = thumbnail(image) if image is not None else f"<i>{html.escape(path)}</i>"
        cells.append(f'{shown}<div style="font-size:0.8em">{html.escape(Path(path).name)}</div>')
    return "".join(cells)


def _text(value) -> str:
    return f'<div style="{TEXT_STYLE}">{html.escape("" if value is None else str(value))}</div>'


def _negative(folder: str, record: dict, lang: str) -> str:
    """What the rejected description was written from: a corrupted image (which corruption, and the image as
    the model saw it), or a hallucination prompt on the clean image."""
    meta = record.get("stic", {})
    if meta.get("negative") == "corruption":
        params = corruption_parameters(meta.get("corruption", ""), meta.get("corruption_params"))
        shown = ", ".join(f"{key} {_parameter(value)}" for key, value in params.items())
        corrupted = ""
        image = _open_image(folder, (record.get("images") or [""])[0])
        if image is not None:
            from ..method.corruption import apply_corruption

            try:
                corrupted = thumbnail(apply_corruption(image, meta["corruption"], params))
            except (KeyError, ValueError):
                corrupted = ""
        label = message("negative_corruption", lang, corruption=meta.get("corruption", ""), params=shown)
        return f'<div class="stic-negative"><b>{html.escape(label)}</b></div>{corrupted}'
    label = message("negative_hallucination", lang)
    return f'<div class="stic-negative"><b>{html.escape(label)}</b> {html.escape(meta.get("bad_prompt", ""))}</div>'


def corruption_parameters(name: str, recorded) -> dict:
    """A pair's corruption parameters as ``apply_corruption`` takes them, only those of its corruption: from the
    record's object (``corruption_record``: every key, neutral where unused, the order as "hue,brightness"),
    or from the JSON string that older outputs hold."""
    if isinstance(recorded, str):
        try:
            recorded = json.loads(recorded or "{}")
        except ValueError:
            recorded = {}
    params = dict(recorded) if isinstance(recorded, dict) else {}
    if isinstance(params.get("order"), str):
        params["order"] = [step for step in params["order"].split(",") if step]
    used = {"low_resolution": ("shorter_side",), "color_jitter": ("brightness", "hue", "order")}.get(name)
    return params if used is None else {key: params[key] for key in used if key in params}


def _parameter(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):  # color_jitter's order of adjustments
        return " then ".join(map(str, value))
    return str(value)


def _first_user_turn(record: dict) -> str:
    return next((m["content"] for m in record.get("messages", []) if m.get("role") == "user"), "")


def _first_answer(record: dict) -> str:
    return next((m["content"] for m in record.get("messages", []) if m.get("role") == "assistant"), "")


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f'<th style="text-align:left">{html.escape(h)}</th>' for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td style="vertical-align:top">{cell}</td>' for cell in row) + "</tr>" for row in rows
    )
    return f'<table class="stic-records" style="width:100%"><tr>{head}</tr>{body}</table>'


def records_html(action: str, folder: str, name: str, lang: str = "en") -> str:
    """The first records of a run's output as an HTML table, per action:

    pref: the image, the chosen and the rejected description, and what the rejected one was written from;
    infuse: the image and the infused first user turn, with its answer; dar: question, description,
    prediction and reference."""
    records = first_records(folder, name)
    if not records:
        return f"<p>{html.escape(message('no_records', lang))}</p>"
    column = lambda key: message(f"column_{key}", lang)  # noqa: E731
    if action == "pref":
        headers = [column("image"), column("chosen"), column("rejected")]
        rows = [
            [
                _image_cell(folder, record.get("images", [])),
                _text(record["chosen"]["content"]),
                _negative(folder, record, lang) + _text(record["rejected"]["content"]),
            ]
            for record in records
        ]
    elif action == "infuse":
        headers = [column("image"), column("first_turn"), column("answer")]
        rows = [
            [
                _image_cell(folder, record.get("images", [])),
                _text(_first_user_turn(record)),
                _text(_first_answer(record)),
            ]
            for record in records
        ]
    else:
        headers = [column("question"), column("description"), column("prediction"), column("reference")]
        rows = [
            [_text(record.get(key)) for key in ("question", "description", "prediction", "reference")]
            for record in records
        ]
    return _table(headers, rows)
