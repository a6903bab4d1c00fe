"""The two pictures of a training run: a confusion matrix and a grid of misclassified digits.

Drawn with Pillow (already a core dependency) rather than matplotlib.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, n: int = 10) -> np.ndarray:
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def draw_confusion_matrix(matrix: np.ndarray, path: Path, title: str) -> None:
    """Rows are true digits, columns predicted; off-diagonal cells are shaded by count."""
    cell, margin = 56, 90
    n = len(matrix)
    img = Image.new("RGB", (margin + n * cell + 20, margin + n * cell + 20), "white")
    draw = ImageDraw.Draw(img)
    font, small = _font(18), _font(14)
    draw.text((10, 8), title, fill="black", font=small)
    draw.text((margin + n * cell // 2 - 40, 32), "predicted", fill="black", font=small)
    draw.text((8, margin + n * cell // 2), "true", fill="black", font=small)
    worst = max(1, int((matrix - np.diag(np.diag(matrix))).max()))
    for i in range(n):
        draw.text((margin - 24, margin + i * cell + cell // 3), str(i), fill="black", font=font)
        draw.text((margin + i * cell + cell // 3, margin - 28), str(i), fill="black", font=font)
        for j in range(n):
            value = int(matrix[i, j])
            if i == j:
                colour = (200, 230, 200)
            else:
                shade = int(255 - 200 * value / worst) if value else 255
                colour = (255, shade, shade)
            box = (margin + j * cell, margin + i * cell, margin + (j + 1) * cell, margin + (i + 1) * cell)
            draw.rectangle(box, fill=colour, outline=(180, 180, 180))
            draw.text((box[0] + 6, box[1] + cell // 3), str(value), fill="black", font=small)
    img.save(path)


def draw_misclassified(
    images: np.ndarray, labels: np.ndarray, predicted: np.ndarray, path: Path, limit: int = 100
) -> int:
    """Up to ``limit`` wrong validation digits, each captioned "true->predicted"; returns the count drawn."""
    wrong = np.flatnonzero(labels != predicted)[:limit]
    cols, scale, caption = 10, 3, 18
    rows = max(1, -(-len(wrong) // cols))
    tile = 28 * scale
    img = Image.new("RGB", (cols * tile, rows * (tile + caption)), "white")
    draw = ImageDraw.Draw(img)
    font = _font(14)
    for k, i in enumerate(wrong):
        x, y = (k % cols) * tile, (k // cols) * (tile + caption)
        digit = Image.fromarray(images[i]).resize((tile, tile), Image.Resampling.NEAREST)
        img.paste(digit.convert("RGB"), (x, y))
        draw.text((x + 4, y + tile + 1), f"{labels[i]}->{predicted[i]}", fill="black", font=font)
    if len(wrong) == 0:
        draw.text((10, 10), "no misclassified digits", fill="black", font=font)
    img.save(path)
    return len(wrong)
