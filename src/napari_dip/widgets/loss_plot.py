"""A small live plot for the dock: the loss (log scale, left) and PSNR (dB, right) against the iteration.

Drawn with QPainter so that the plugin needs no plotting library.
"""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

LOSS_COLOUR = QColor(255, 170, 60)
PSNR_COLOUR = QColor(90, 200, 255)


class LossPlot(QWidget):
    """Loss and PSNR curves; ``add_point`` appends, ``clear`` starts over."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.iterations: list[float] = []
        self.losses: list[float] = []
        self.psnrs: list[float | None] = []
        self.setMinimumHeight(130)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setToolTip("Loss (orange, log scale) falls as the network fits the image; PSNR against the "
                        "ground truth (blue, dB) rises, peaks, and falls once the network starts fitting "
                        "the noise.")

    def clear(self):
        self.iterations, self.losses, self.psnrs = [], [], []
        self.update()

    def add_point(self, iteration: float, loss: float, psnr: float | None = None):
        self.iterations.append(float(iteration))
        self.losses.append(float(loss))
        self.psnrs.append(None if psnr is None else float(psnr))
        self.update()

    def paintEvent(self, event):
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        text = self.palette().windowText().color()
        metrics = painter.fontMetrics()
        margin_x, margin_y = metrics.horizontalAdvance("0.000e-0") + 6, metrics.height() + 4
        area = QRectF(margin_x, margin_y, self.width() - 2 * margin_x, self.height() - 2 * margin_y)
        painter.setPen(QPen(text.darker(150) if text.lightness() > 128 else text.lighter(250), 1))
        painter.drawRect(area)
        painter.setPen(text)
        if not self.iterations:
            painter.drawText(area, Qt.AlignmentFlag.AlignCenter, "loss and PSNR appear here during a run")
            return
        x_low, x_high = 0.0, max(self.iterations[-1], 1.0)
        losses = [math.log10(v) if v > 0 and math.isfinite(v) else None for v in self.losses]
        self._curve(painter, area, losses, x_low, x_high, LOSS_COLOUR, left=True, label="loss",
                    tick=lambda v: f"{10 ** v:.2e}")
        if any(v is not None for v in self.psnrs):
            self._curve(painter, area, self.psnrs, x_low, x_high, PSNR_COLOUR, left=False, label="PSNR",
                        tick=lambda v: f"{v:.1f} dB")
        painter.setPen(text)
        bottom = area.bottom() + metrics.ascent() + 2
        painter.drawText(QPointF(area.left(), bottom), "0")
        last = f"iteration {int(self.iterations[-1])}"
        painter.drawText(QPointF(area.right() - metrics.horizontalAdvance(last), bottom), last)

    def _curve(self, painter, area, values, x_low, x_high, colour, left, label, tick):
        points = [(x, y) for x, y in zip(self.iterations, values) if y is not None]
        if not points:
            return
        y_low, y_high = min(y for _, y in points), max(y for _, y in points)
        if y_high - y_low < 1e-9:
            y_low, y_high = y_low - 0.5, y_high + 0.5

        def to_screen(x, y):
            return QPointF(area.left() + (x - x_low) / (x_high - x_low) * area.width(),
                           area.bottom() - (y - y_low) / (y_high - y_low) * area.height())

        path = QPainterPath(to_screen(*points[0]))
        for x, y in points[1:]:
            path.lineTo(to_screen(x, y))
        painter.setPen(QPen(colour, 1.6))
        painter.drawPath(path)
        metrics = painter.fontMetrics()
        current = f"{label} {tick(points[-1][1])}"
        for text, y in ((tick(y_high), area.top() + metrics.ascent() - 2), (tick(y_low), area.bottom())):
            x = area.left() - metrics.horizontalAdvance(text) - 3 if left else area.right() + 3
            painter.drawText(QPointF(x, y), text)
        x = area.left() if left else area.right() - metrics.horizontalAdvance(current)
        painter.drawText(QPointF(x, area.top() - 4), current)
