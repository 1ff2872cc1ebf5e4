"""A small live plot for the dock: the loss (log scale, left axis) and two PSNR curves (dB, one shared
right axis) against the iteration: the ground-truth-free estimate of the current iterate and, when a
ground truth is chosen, its true PSNR. A vertical line marks the iteration whose result is kept.

Drawn with QPainter so that the plugin needs no plotting library.
"""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

LOSS_COLOUR = QColor(255, 170, 60)
PSNR_COLOUR = QColor(90, 200, 255)
ESTIMATE_COLOUR = QColor(120, 220, 120)
CHOSEN_COLOUR = QColor(230, 230, 230)

TOOLTIP = ("Loss (orange, left axis, log scale) falls as the network fits the image.\n"
           "Estimated PSNR (green, dashed, right axis, dB): the quality of the current iterate judged "
           "from held-out pixels, without a ground truth; it rises, peaks and falls once the network "
           "starts fitting the noise.\n"
           "PSNR (blue, right axis, dB), when a ground truth is chosen: the true PSNR of the same "
           "iterate, on the same dB scale, to compare with the estimate.\n"
           "The vertical line marks the iteration whose result is kept (the best estimate so far).")


class LossPlot(QWidget):
    """Loss and PSNR curves; ``add_point`` appends, ``set_chosen`` moves the kept-iteration marker,
    ``clear`` starts over."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.iterations: list[float] = []
        self.losses: list[float] = []
        self.psnrs: list[float | None] = []  # true PSNR of the current iterate (ground truth chosen)
        self.estimated_psnrs: list[float | None] = []  # estimated PSNR of the current iterate
        self.chosen: tuple[float, str] | None = None  # (x position, label) of the kept iteration
        self.setMinimumHeight(130)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setToolTip(TOOLTIP)

    def clear(self):
        self.iterations, self.losses, self.psnrs, self.estimated_psnrs = [], [], [], []
        self.chosen = None
        self.update()

    def add_point(self, iteration: float, loss: float, psnr: float | None = None,
                  estimated_psnr: float | None = None):
        self.iterations.append(float(iteration))
        self.losses.append(float(loss))
        self.psnrs.append(None if psnr is None else float(psnr))
        self.estimated_psnrs.append(None if estimated_psnr is None else float(estimated_psnr))
        self.update()

    def set_chosen(self, iteration: float | None, label: str | None = None):
        """Mark the kept iteration at ``iteration`` (the plot's x) with ``label``; None removes the mark."""
        self.chosen = None if iteration is None else (float(iteration), label or f"kept: it {int(iteration)}")
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
        if self.chosen is not None:
            x_high = max(x_high, self.chosen[0])
        losses = [math.log10(v) if v > 0 and math.isfinite(v) else None for v in self.losses]
        loss_range = _value_range(losses)
        if loss_range is not None:
            self._curve(painter, area, losses, x_low, x_high, loss_range, LOSS_COLOUR)
            self._ticks(painter, area, loss_range, left=True, tick=lambda v: f"{10 ** v:.2e}", colour=text)
            last = [v for v in losses if v is not None][-1]
            self._legend(painter, area, [(f"loss {10 ** last:.2e}", LOSS_COLOUR)], left=True)

        # one dB scale for the estimate and the truth, so that they compare directly
        decibel_range = _value_range(self.psnrs + self.estimated_psnrs)
        if decibel_range is not None:
            legend = []
            for values, colour, name, dashed in ((self.estimated_psnrs, ESTIMATE_COLOUR, "est.", True),
                                                 (self.psnrs, PSNR_COLOUR, "PSNR", False)):
                if any(v is not None for v in values):
                    self._curve(painter, area, values, x_low, x_high, decibel_range, colour, dashed)
                    legend.append((f"{name} {[v for v in values if v is not None][-1]:.1f} dB", colour))
            self._ticks(painter, area, decibel_range, left=False, tick=lambda v: f"{v:.1f} dB", colour=text)
            self._legend(painter, area, legend, left=False)

        if self.chosen is not None:
            self._chosen_marker(painter, area, x_low, x_high, text)
        painter.setPen(text)
        bottom = area.bottom() + metrics.ascent() + 2
        painter.drawText(QPointF(area.left(), bottom), "0")
        last = f"iteration {int(self.iterations[-1])}"
        painter.drawText(QPointF(area.right() - metrics.horizontalAdvance(last), bottom), last)

    @staticmethod
    def _x(area, x, x_low, x_high):
        return area.left() + (x - x_low) / (x_high - x_low) * area.width()

    def _curve(self, painter, area, values, x_low, x_high, y_range, colour, dashed=False):
        y_low, y_high = y_range
        points = [QPointF(self._x(area, x, x_low, x_high),
                          area.bottom() - (y - y_low) / (y_high - y_low) * area.height())
                  for x, y in zip(self.iterations, values) if y is not None and math.isfinite(y)]
        if not points:
            return
        pen = QPen(colour, 1.6)
        if dashed:
            pen.setStyle(Qt.PenStyle.DashLine)
        painter.setPen(pen)
        if len(points) == 1:
            painter.drawEllipse(points[0], 2.0, 2.0)
            return
        path = QPainterPath(points[0])
        for point in points[1:]:
            path.lineTo(point)
        painter.drawPath(path)

    @staticmethod
    def _ticks(painter, area, y_range, left, tick, colour):
        """The axis' top and bottom values, beside the plot area."""
        metrics = painter.fontMetrics()
        painter.setPen(colour)
        y_low, y_high = y_range
        for label, y in ((tick(y_high), area.top() + metrics.ascent() - 2), (tick(y_low), area.bottom())):
            x = area.left() - metrics.horizontalAdvance(label) - 3 if left else area.right() + 3
            painter.drawText(QPointF(x, y), label)

    @staticmethod
    def _legend(painter, area, entries, left):
        """Coloured labels of the latest values above the plot area: from the left, or ending at the right."""
        metrics = painter.fontMetrics()
        gap = metrics.horizontalAdvance("  ")
        widths = [metrics.horizontalAdvance(label) for label, _ in entries]
        x = area.left() if left else area.right() - sum(widths) - gap * (len(entries) - 1)
        for (label, colour), width in zip(entries, widths):
            painter.setPen(colour)
            painter.drawText(QPointF(x, area.top() - 4), label)
            x += width + gap

    def _chosen_marker(self, painter, area, x_low, x_high, text_colour):
        x_value, label = self.chosen
        x = self._x(area, x_value, x_low, x_high)
        colour = CHOSEN_COLOUR if text_colour.lightness() > 128 else QColor(60, 60, 60)
        pen = QPen(colour, 1.0)
        pen.setStyle(Qt.PenStyle.DotLine)
        painter.setPen(pen)
        painter.drawLine(QPointF(x, area.top()), QPointF(x, area.bottom()))
        metrics = painter.fontMetrics()
        width = metrics.horizontalAdvance(label)
        # the label inside the plot, beside the line: to its right unless it would leave the plot
        label_x = x + 3 if x + 3 + width <= area.right() else x - 3 - width
        painter.setPen(colour)
        painter.drawText(QPointF(max(label_x, area.left() + 2), area.bottom() - 3), label)


def _value_range(values) -> tuple[float, float] | None:
    """(low, high) of the values that are not None, widened when flat; None when there are none."""
    present = [v for v in values if v is not None and math.isfinite(v)]
    if not present:
        return None
    low, high = min(present), max(present)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    return low, high
