"""One way to make a matplotlib figure: pyplot-free, on its own Agg canvas.

No global backend switch and no pyplot state, so figures can be drawn from a background thread (plots are, during
training) and nothing has to be closed afterwards. matplotlib is imported when a figure is made, so importing the
modules that plot stays cheap.
"""

from __future__ import annotations


def new_figure(figsize: tuple[float, float], layout: str = "tight"):
    """A ``matplotlib.figure.Figure`` with an Agg canvas attached; ``layout`` is ``"tight"`` or ``"constrained"``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, **{f"{layout}_layout": True})
    FigureCanvasAgg(fig)
    return fig
